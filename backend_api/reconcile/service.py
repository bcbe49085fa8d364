"""Apply what reconciliation found (docs/reconcile.md), each repair in the transaction that records it.

Installation drift is repaired by applying the installation event that was missed
(`gate.installation.apply_sync`); a pull request prgate never decided about is evaluated as if
its `opened` event had arrived, and a pending challenge whose pull request is no longer open as
if its `closed` event had (`gate.pull_request.evaluate` with `decide`: same decisions, same
outbox). A second run over the same GitHub state finds nothing to repair.
"""

from __future__ import annotations

import logging

import asyncpg

from backend_api.challenges import messages
from backend_api.challenges.decide import decide
from backend_api.gate.installation import apply_sync
from backend_api.gate.pull_request import evaluate
from backend_api.gate.replay import replay_parked
from backend_api.reconcile import diff
from backend_api.store import challenges, installations, pull_requests
from backend_api.store import reconcile as store
from backend_api.store.db import Conn
from shared_contracts.events import (
    Account,
    Decision,
    InstallationSyncEvent,
    PullRequest,
    PullRequestEvent,
    Repository,
)
from shared_contracts.reconcile import (
    InstallationSnapshot,
    PullRequestSnapshot,
    ReconcileError,
    ReconcileRunFinish,
    ReconcileRunReport,
    ReconcileRunStart,
    ReconcileRunStarted,
    Repair,
    RepairKind,
    RepairsResponse,
)

log = logging.getLogger(__name__)


class RunNotFound(Exception):
    pass


class RunFinished(Exception):
    pass


async def _open_run(conn: Conn, run_id: int, *, for_update: bool = False) -> store.RunRow:
    run = await store.get_run(conn, run_id, for_update=for_update)
    if run is None:
        raise RunNotFound(run_id)
    if run.finished_at is not None:
        raise RunFinished(run_id)
    return run


async def start_run(pool: asyncpg.Pool, req: ReconcileRunStart) -> ReconcileRunStarted:
    async with pool.acquire() as conn:
        run = await store.start_run(conn, req.trigger, req.worker_id, req.installation_id)
    return ReconcileRunStarted(run_id=run.run_id)


async def _record(conn: Conn, run_id: int, repair: Repair, repairs: list[Repair]) -> None:
    await store.record_repair(conn, run_id, repair)
    repairs.append(repair)
    log.info("reconcile repair: %s", repair.kind.value, extra={
        "installation_id": repair.installation_id, "repo": repair.repo_full_name, "pr_number": repair.pr_number,
    })


# ---- installations ---------------------------------------------------------------------------------


async def reconcile_installation(
    pool: asyncpg.Pool, snap: InstallationSnapshot, *, public_url: str, max_attempts: int
) -> RepairsResponse:
    inst = snap.installation
    repairs: list[Repair] = []
    async with pool.acquire() as conn, conn.transaction():
        run = await _open_run(conn, snap.run_id)
        await installations.lock(conn, inst.id)
        known = await installations.detail(conn, inst.id)
        members = await installations.memberships(conn, inst.id) if known is not None else []
        plan = diff.plan_installation(known, members, snap, since=run.started_at)
        for step in plan.steps:
            if step.event is None:
                await installations.upsert(conn, inst, reactivate=False)
            else:
                event_name, action = step.event
                await apply_sync(conn, InstallationSyncEvent(
                    delivery_id=f"reconcile:{run.run_id}", event=event_name, action=action, installation=inst,
                    repositories_added=list(step.added), repositories_removed=list(step.removed),
                ))
            repo = step.repo
            await _record(conn, run.run_id, Repair(
                kind=step.kind, installation_id=inst.id, repo_id=repo.id if repo else None,
                repo_full_name=repo.full_name if repo else None, detail=step.detail,
            ), repairs)
        if plan.steps:
            # The installation may be known only now (its installation.created was missed): what was
            # parked for it is decided here, as the installation event would have (gate/replay.py).
            await replay_parked(conn, inst.id, public_url=public_url, max_attempts=max_attempts)
    return RepairsResponse(repairs=repairs)


def _deleted_event(run_id: int, gone: installations.InstallationDetail) -> InstallationSyncEvent:
    return InstallationSyncEvent(
        delivery_id=f"reconcile:{run_id}", event="installation", action="deleted", installation=gone.info(),
    )


# ---- pull requests ---------------------------------------------------------------------------------


def _event(
    run_id: int, installation_id: int, repo: Repository, pr: PullRequest, action: str
) -> PullRequestEvent:
    return PullRequestEvent.model_validate({
        "delivery_id": f"reconcile:{run_id}:{repo.id}:{pr.number}", "action": action,
        "installation_id": installation_id, "repository": repo, "pull_request": pr,
        # GitHub's `opened` comes from the author; `closed` from whoever closed it, which we do not know.
        "sender": pr.author,
    })


def _closed_pr(c: challenges.PendingChallenge) -> PullRequest:
    return PullRequest(
        id=c.pr_id, number=c.pr_number, state="closed", head_sha=c.head_sha,
        author=Account(id=c.author_id, login=c.author_login, type="User"),
    )


async def reconcile_pull_requests(
    pool: asyncpg.Pool, snap: PullRequestSnapshot, *, public_url: str, max_attempts: int
) -> RepairsResponse:
    repo, inst_id = snap.repository, snap.installation_id
    repairs: list[Repair] = []
    async with pool.acquire() as conn:
        run = await _open_run(conn, snap.run_id)
        plan = diff.plan_pull_requests(
            snap.pull_requests,
            await pull_requests.decided_among(conn, repo.id, [p.number for p in snap.pull_requests]),
            await challenges.pending_in_repo(conn, inst_id, repo.id),
            complete=snap.complete, since=run.started_at, installed_at=snap.installation_created_at,
        )
        # One transaction per pull request, like a webhook: short locks, and each repair commits
        # with what it records.
        for pr in plan.evaluate:
            async with conn.transaction():
                await challenges.lock_pull_request(conn, repo.id, pr.number)
                if await pull_requests.is_decided(conn, repo.id, pr.number):
                    continue  # its webhook arrived meanwhile
                applied, _, _ = await evaluate(
                    conn, _event(run.run_id, inst_id, repo, PullRequest.model_validate(pr.model_dump()), "opened"),
                    decide,
                    public_url=public_url, max_attempts=max_attempts,
                )
                if not await pull_requests.is_decided(conn, repo.id, pr.number):
                    continue  # refused: installation not active or repository not in it; nothing done
                outcome = applied.decision.value if applied.decision else applied.status.value
                await _record(conn, run.run_id, Repair(
                    kind=RepairKind.PULL_REQUEST_EVALUATED, installation_id=inst_id, repo_id=repo.id,
                    repo_full_name=repo.full_name, pr_number=pr.number,
                    detail=f"opened while prgate was away: {outcome} ({applied.reason or 'no reason'})",
                ), repairs)
        for pending in plan.cancel:
            async with conn.transaction():
                await challenges.lock_pull_request(conn, repo.id, pending.pr_number)
                if await challenges.pending_for_pr(conn, repo.id, pending.pr_number) != pending.challenge_id:
                    continue  # resolved meanwhile
                applied, _, _ = await evaluate(
                    conn, _event(run.run_id, inst_id, repo, _closed_pr(pending), "closed"), decide,
                    public_url=public_url, max_attempts=max_attempts,
                )
                if applied.decision is not Decision.CANCELLED:
                    continue  # refused (installation suspended): left for a later run
                await _record(conn, run.run_id, Repair(
                    kind=RepairKind.CHALLENGE_CANCELLED, installation_id=inst_id, repo_id=repo.id,
                    repo_full_name=repo.full_name, pr_number=pending.pr_number,
                    detail=f"challenge {pending.challenge_id} cancelled: the pull request is no longer open",
                ), repairs)
    return RepairsResponse(repairs=repairs)


# ---- finishing -------------------------------------------------------------------------------------


async def finish_run(pool: asyncpg.Pool, run_id: int, req: ReconcileRunFinish) -> ReconcileRunReport:
    errors = list(req.errors)
    async with pool.acquire() as conn, conn.transaction():
        run = await _open_run(conn, run_id, for_update=True)
        if req.listed_installation_ids is not None:
            errors += await _delete_unlisted(conn, run, req.listed_installation_ids)
        done = await store.finish_run(conn, run_id, errors, req.stats)
        repairs = await store.repairs_of(conn, run_id)
    return ReconcileRunReport(
        run_id=done.run_id, trigger=done.trigger, installation_id=done.installation_id, worker_id=done.worker_id,
        started_at=done.started_at, finished_at=done.finished_at, repairs=repairs, errors=list(done.errors),
        stats=done.stats,
    )


async def _delete_unlisted(conn: Conn, run: store.RunRow, listed: list[int]) -> list[ReconcileError]:
    live = await installations.live(conn)
    gone = diff.installations_to_delete(live, listed, scope=run.installation_id, since=run.started_at)
    if gone and not listed and run.installation_id is None:
        # An App with installations here but none on GitHub is far likelier to be misconfigured
        # (another GITHUB_APP_ID or key) than uninstalled everywhere at once: refuse to delete.
        return [ReconcileError(message=(
            "GitHub lists no installation of this App; "
            f"{messages.plural(len(gone), 'installation was', 'installations were')} not marked deleted "
            "(check GITHUB_APP_ID and the private key)"
        ))]
    scratch: list[Repair] = []
    for inst in gone:
        await installations.lock(conn, inst.installation_id)
        await apply_sync(conn, _deleted_event(run.run_id, inst))
        await _record(conn, run.run_id, Repair(
            kind=RepairKind.INSTALLATION_DELETED, installation_id=inst.installation_id,
            detail=f"{inst.account_login}: no longer listed by GitHub (missed installation.deleted)",
        ), scratch)
    return []
