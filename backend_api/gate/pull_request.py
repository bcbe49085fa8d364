"""Apply pull_request events: dedup, decide, write decision + outbox rows in one transaction (per batch)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from backend_api.challenges.decide import EVALUATING_ACTIONS, Plan, PrContext, decide, installation_refusal
from backend_api.challenges.tokens import hash_token, new_token
from backend_api.gate.parking import ParkingLimits, park_events
from backend_api.store import challenges, deliveries, installations, outbox, parked, pr_context, pr_decisions
from backend_api.store.db import Conn
from shared_contracts.actions import ActionType, CommentPayload, Provider, StatusPayload
from shared_contracts.events import IngestResponse, IngestStatus, PullRequestEvent
from shared_contracts.owner import InstallationStatus

EVENT_NAME: Final = "pull_request"


Planner = Callable[[PullRequestEvent, PrContext], Plan]


@dataclass(frozen=True, slots=True)
class Evaluated:
    plan: Plan
    challenge_id: int | None
    action_ids: list[int]
    action_types: list[ActionType]  # of `action_ids`, in the same order (for metrics)


async def ingest_pull_requests(
    pool: asyncpg.Pool,
    events: Sequence[PullRequestEvent],
    *,
    public_url: str,
    max_attempts: int,
    now: datetime | None = None,
    parking: ParkingLimits | None = None,
    provider: Provider = Provider.GITHUB,
    event_name: str = EVENT_NAME,
) -> list[tuple[IngestResponse, list[ActionType]]]:
    """Dedup, decide and write several deliveries in one transaction: one answer (and the types of the
    actions it enqueued) per event, in order. The deliveries must have distinct ids and be about
    distinct pull requests (`IngestBatcher` forms such batches); a failure rolls all of them back.
    Deliveries for an installation not known yet are parked (`gate/parking.py`)."""
    async with pool.acquire() as conn, conn.transaction():
        fresh_ids = await deliveries.begin_many(conn, event_name, [
            deliveries.NewDelivery(e.delivery_id, e.action, e.installation_id, e.repository.id, e.body_sha256)
            for e in events
        ], provider)
        begun = [e for e in events if e.delivery_id in fresh_ids]
        unknown = await parked.unknown_installations(conn, [e.installation_id for e in begun])
        parked_answers = await park_events(
            # Only GitHub's events can arrive before their tenant: a Bitbucket workspace is connected first.
            conn, [e for e in begun if e.installation_id in unknown], EVENT_NAME, parking or ParkingLimits()
        )
        fresh = [e for e in begun if e.installation_id not in unknown]
        evaluated = await evaluate_many(
            conn, fresh, decide, public_url=public_url, max_attempts=max_attempts, now=now, outcome_event=event_name,
            provider=provider,
        )
        seen = [e.delivery_id for e in events if e.delivery_id not in fresh_ids]
        prior = await deliveries.get_many(conn, event_name, seen, provider) if seen else {}
    by_id = {e.delivery_id: ev for e, ev in zip(fresh, evaluated, strict=True)}
    out: list[tuple[IngestResponse, list[ActionType]]] = []
    for e in events:
        ev = by_id.get(e.delivery_id)
        if e.delivery_id in parked_answers:
            out.append((parked_answers[e.delivery_id], []))
        elif ev is None:
            out.append((duplicate_response(e.delivery_id, prior.get(e.delivery_id)), []))
        else:
            out.append((response(e.delivery_id, ev.plan, ev.challenge_id, ev.action_ids), ev.action_types))
    return out


async def evaluate(
    conn: Conn,
    event: PullRequestEvent,
    planner: Planner,
    *,
    public_url: str,
    max_attempts: int,
    now: datetime | None = None,
    provider: Provider = Provider.GITHUB,
) -> tuple[Plan, int | None, list[int]]:
    """Decide about one PR and write the plan, inside the caller's transaction."""
    [done] = await evaluate_many(conn, [event], planner, public_url=public_url, max_attempts=max_attempts, now=now,
                                 provider=provider)
    return done.plan, done.challenge_id, done.action_ids


async def evaluate_many(
    conn: Conn,
    events: Sequence[PullRequestEvent],
    planner: Planner,
    *,
    public_url: str,
    max_attempts: int,
    now: datetime | None = None,
    outcome_event: str | None = None,
    provider: Provider = Provider.GITHUB,
) -> list[Evaluated]:
    """Decide about several distinct PRs and write the plans, inside the caller's transaction.

    Round trips do not grow with the batch: one lock statement, one read of the facts, one write
    (`pr_decisions.write`), plus a statement for each rarer step a plan needs. With `outcome_event`,
    each event's delivery row under that name records the decision.
    """
    if not events:
        return []
    await challenges.lock_pull_requests(conn, [(e.repository.id, e.pull_request.number) for e in events])
    facts = await pr_context.load_many(conn, [
        pr_context.PrKey(e.installation_id, e.repository.id, e.pull_request.number, e.pull_request.author.id)
        for e in events
    ])
    at = now or datetime.now(UTC)
    plans: list[Plan] = []
    writes: list[pr_decisions.DecisionWrite] = []
    for event, fact in zip(events, facts, strict=True):
        plan, write = await _decide_one(conn, event, fact, planner, public_url, at, outcome_event is not None, provider)
        plans.append(plan)
        writes.append(write)
    written = await pr_decisions.write(
        conn, writes, max_attempts=max_attempts, outcome_event=outcome_event or "", provider=provider
    )
    return [
        Evaluated(plan, w.challenge_id, w.action_ids, [t for t, _ in write.actions])
        for plan, write, w in zip(plans, writes, written, strict=True)
    ]


async def _decide_one(
    conn: Conn,
    event: PullRequestEvent,
    facts: pr_context.PrFacts,
    planner: Planner,
    public_url: str,
    now: datetime,
    record_outcome: bool,
    provider: Provider,
) -> tuple[Plan, pr_decisions.DecisionWrite]:
    """Plan one event and run the plan's rarer steps; the common writes are returned for the batch."""
    repo = event.repository
    pr = event.pull_request
    installation = facts.installation
    member = facts.repo_is_member
    if (installation is not None and not member and installation.repository_selection == "all"
            and installation.status is InstallationStatus.ACTIVE):
        # "All repositories" installations get no event when a repo is
        # created, so the first PR is what tells us it exists.
        await installations.add_repositories(conn, event.installation_id, [repo])
        member = True
    token = new_token()
    ctx = PrContext(
        installation_status=installation.status if installation else None,
        repo_is_member=member,
        settings=facts.settings,
        author_verified=facts.author_verified,
        pending_challenge_id=facts.pending_challenge_id,
        now=now,
        verify_url=f"{public_url.rstrip('/')}/verify/{token}",
        latest_challenge_status=facts.latest_challenge_status,
        pending_head_sha=facts.pending_head_sha,
    )
    plan = planner(event, ctx)
    new = challenges.NewChallenge(
        installation_id=event.installation_id, repo_id=repo.id, repo_full_name=repo.full_name,
        pr_number=pr.number, pr_id=pr.id, head_sha=pr.head_sha, author_id=pr.author.id,
        author_login=pr.author.login, deadline_at=ctx.now, token_hash=hash_token(token),
        delivery_id=event.delivery_id, provider=provider,
    )
    challenge_id = ctx.pending_challenge_id
    if plan.cancel_pending:
        challenge_id = await challenges.cancel_pending_for_pr(conn, repo.id, pr.number, "pull request closed")
        if challenge_id is not None:  # its comment and status would only land on a closed pull request
            await outbox.cancel_pending_for_challenge(conn, repo.id, pr.number, challenge_id,
                                                      "pull request closed", provider)
    if plan.resolve_pending is not None:
        challenge_id = await challenges.resolve_pending_for_pr(
            conn, repo.id, pr.number, plan.resolve_pending, plan.reason or plan.resolve_pending.lower()
        )
    if plan.record_exemption is not None:
        challenge_id = await challenges.record_exemption(conn, new, plan.record_exemption)
    if plan.move_head and challenge_id is not None and pr.head_sha:
        await challenges.move_head(conn, challenge_id, pr.head_sha)
    created = None
    if plan.create_challenge_deadline is not None:
        created = dataclasses.replace(new, deadline_at=plan.create_challenge_deadline)
        challenge_id = None
    verify_url = ctx.verify_url if created is not None else None
    # Comments first, then statuses: action ids follow this order, and so does their execution.
    actions: list[tuple[ActionType, dict[str, Any]]] = [
        (ActionType.UPSERT_PR_COMMENT, CommentPayload(marker=c.marker, body=c.body).model_dump())
        for c in plan.comments
    ]
    actions += [
        (ActionType.SET_COMMIT_STATUS,
         StatusPayload(sha=pr.head_sha, state=s.state, description=s.description, target_url=verify_url).model_dump())
        for s in plan.statuses
    ]
    outcome = None
    if record_outcome:
        record = deliveries.DeliveryRecord(
            status=plan.status, decision=plan.decision, challenge_id=challenge_id, reason=plan.reason
        )
        outcome = pr_decisions.Outcome(event.delivery_id, record)
    return plan, pr_decisions.DecisionWrite(
        installation_id=event.installation_id, repo_id=repo.id, repo_full_name=repo.full_name, pr_number=pr.number,
        challenge_id=challenge_id, new_challenge=created, actions=actions,
        # Reconciliation evaluates open pull requests missing here as if they were just opened.
        mark_decided=event.action in EVALUATING_ACTIONS and installation_refusal(ctx) is None,
        outcome=outcome,
    )


async def finish(
    conn: Conn, delivery_id: str, event_name: str, plan: Plan, challenge_id: int | None,
    provider: Provider = Provider.GITHUB,
) -> None:
    record = deliveries.DeliveryRecord(
        status=plan.status, decision=plan.decision, challenge_id=challenge_id, reason=plan.reason
    )
    await deliveries.finish(conn, delivery_id, event_name, record, provider)


def response(delivery_id: str, plan: Plan, challenge_id: int | None, action_ids: list[int]) -> IngestResponse:
    return IngestResponse(
        status=plan.status, delivery_id=delivery_id, decision=plan.decision,
        challenge_id=challenge_id, enqueued_action_ids=action_ids, reason=plan.reason,
    )


async def duplicate(
    conn: Conn, delivery_id: str, event_name: str, provider: Provider = Provider.GITHUB
) -> IngestResponse:
    return duplicate_response(delivery_id, await deliveries.get(conn, delivery_id, event_name, provider))


def duplicate_response(delivery_id: str, prior: deliveries.DeliveryRecord | None) -> IngestResponse:
    return IngestResponse(
        status=IngestStatus.DUPLICATE, delivery_id=delivery_id,
        decision=prior.decision if prior else None,
        challenge_id=prior.challenge_id if prior else None,
        reason="delivery already processed",
    )
