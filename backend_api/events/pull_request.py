"""Apply one pull_request event: dedup, decide, write decision + outbox rows in one transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from backend_api.challenges.decide import EVALUATING_ACTIONS, Plan, PrContext, decide, installation_refusal
from backend_api.challenges.tokens import hash_token, new_token
from backend_api.store import challenges, deliveries, installations, outbox, pr_context, pull_requests
from backend_api.store.db import Conn
from shared_contracts.actions import ActionType, CommentPayload, StatusPayload
from shared_contracts.events import IngestResponse, IngestStatus, PullRequestEvent
from shared_contracts.owner import InstallationStatus

EVENT_NAME = "pull_request"


Planner = Callable[[PullRequestEvent, PrContext], Plan]


async def ingest_pull_request(
    pool: asyncpg.Pool,
    event: PullRequestEvent,
    *,
    public_url: str,
    max_attempts: int,
    now: datetime | None = None,
) -> IngestResponse:
    async with pool.acquire() as conn, conn.transaction():
        fresh = await deliveries.begin(
            conn, event.delivery_id, EVENT_NAME, event.action, event.installation_id, event.repository.id
        )
        if not fresh:
            return await duplicate(conn, event.delivery_id, EVENT_NAME)
        plan, challenge_id, action_ids = await evaluate(
            conn, event, decide, public_url=public_url, max_attempts=max_attempts, now=now
        )
        await finish(conn, event.delivery_id, EVENT_NAME, plan, challenge_id)
    return response(event.delivery_id, plan, challenge_id, action_ids)


async def evaluate(
    conn: Conn,
    event: PullRequestEvent,
    planner: Planner,
    *,
    public_url: str,
    max_attempts: int,
    now: datetime | None = None,
) -> tuple[Plan, int | None, list[int]]:
    """Decide about one PR and write the plan, inside the caller's transaction."""
    repo = event.repository
    pr = event.pull_request
    await challenges.lock_pull_request(conn, repo.id, pr.number)
    facts = await pr_context.load(conn, event.installation_id, repo.id, pr.number, pr.author.id)
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
        now=now or datetime.now(UTC),
        verify_url=f"{public_url.rstrip('/')}/verify/{token}",
        latest_challenge_status=facts.latest_challenge_status,
    )
    plan = planner(event, ctx)
    challenge_id, action_ids = await _apply(conn, event, ctx, plan, token, max_attempts)
    if event.action in EVALUATING_ACTIONS and installation_refusal(ctx) is None:
        # Reconciliation evaluates open pull requests missing here as if they were just opened.
        await pull_requests.mark_decided(conn, event.installation_id, repo.id, pr.number)
    return plan, challenge_id, action_ids


async def finish(conn: Conn, delivery_id: str, event_name: str, plan: Plan, challenge_id: int | None) -> None:
    record = deliveries.DeliveryRecord(
        status=plan.status, decision=plan.decision, challenge_id=challenge_id, reason=plan.reason
    )
    await deliveries.finish(conn, delivery_id, event_name, record)


def response(delivery_id: str, plan: Plan, challenge_id: int | None, action_ids: list[int]) -> IngestResponse:
    return IngestResponse(
        status=plan.status, delivery_id=delivery_id, decision=plan.decision,
        challenge_id=challenge_id, enqueued_action_ids=action_ids, reason=plan.reason,
    )


async def _apply(
    conn: Conn,
    event: PullRequestEvent,
    ctx: PrContext,
    plan: Plan,
    token: str,
    max_attempts: int,
) -> tuple[int | None, list[int]]:
    repo = event.repository
    pr = event.pull_request
    challenge_id = ctx.pending_challenge_id
    new = challenges.NewChallenge(
        installation_id=event.installation_id, repo_id=repo.id, repo_full_name=repo.full_name,
        pr_number=pr.number, pr_id=pr.id, head_sha=pr.head_sha, author_id=pr.author.id,
        author_login=pr.author.login, deadline_at=ctx.now, token_hash=hash_token(token),
        delivery_id=event.delivery_id,
    )
    if plan.cancel_pending:
        challenge_id = await challenges.cancel_pending_for_pr(conn, repo.id, pr.number, "pull request closed")
    if plan.resolve_pending is not None:
        challenge_id = await challenges.resolve_pending_for_pr(
            conn, repo.id, pr.number, plan.resolve_pending, plan.reason or plan.resolve_pending.lower()
        )
    if plan.record_exemption is not None:
        challenge_id = await challenges.record_exemption(conn, new, plan.record_exemption)
    if plan.move_head and challenge_id is not None and pr.head_sha:
        await challenges.move_head(conn, challenge_id, pr.head_sha)
    if plan.create_challenge_deadline is not None:
        new = dataclasses.replace(new, deadline_at=plan.create_challenge_deadline)
        challenge_id = await challenges.create(conn, new)
    target = outbox.PrTarget(event.installation_id, repo.id, repo.full_name, pr.number, challenge_id, max_attempts)
    verify_url = ctx.verify_url if plan.create_challenge_deadline is not None else None
    # Comments first, then statuses: action ids follow this order, and so does their execution.
    actions: list[tuple[ActionType, CommentPayload | StatusPayload]] = [
        (ActionType.UPSERT_PR_COMMENT, CommentPayload(marker=c.marker, body=c.body)) for c in plan.comments
    ]
    actions += [
        (ActionType.SET_COMMIT_STATUS,
         StatusPayload(sha=pr.head_sha, state=s.state, description=s.description, target_url=verify_url))
        for s in plan.statuses
    ]
    return challenge_id, await target.enqueue_many(conn, actions)


async def duplicate(conn: Conn, delivery_id: str, event_name: str) -> IngestResponse:
    prior = await deliveries.get(conn, delivery_id, event_name)
    return IngestResponse(
        status=IngestStatus.DUPLICATE, delivery_id=delivery_id,
        decision=prior.decision if prior else None,
        challenge_id=prior.challenge_id if prior else None,
        reason="delivery already processed",
    )
