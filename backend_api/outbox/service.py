"""Claim and result: the outbox's two operations, over the store."""

from __future__ import annotations

import random
import time

import asyncpg

from backend_api.outbox.floor import ClaimFloor
from backend_api.outbox.notifier import ActionNotifier
from backend_api.store import outbox
from shared_contracts.actions import (
    PAYLOAD_TYPES,
    ActionType,
    BatchResultItem,
    BatchResultRequest,
    BatchResultResponse,
    ClaimedAction,
    ClaimRequest,
    ClaimResponse,
    LeaseRequest,
    LeaseResponse,
    Outcome,
    ResultRequest,
    ResultResponse,
)

# While long-polling, re-check at least this often: backoff timers and lease
# expiries make actions claimable without any NOTIFY.
_RECHECK_SECONDS = 1.0


class StaleResult(Exception):
    """The reporting worker does not hold the lease for that attempt."""


class UnknownAction(Exception):
    pass


def retry_delay(
    attempt: int, *, base: float, cap: float, retry_after: float | None, rng: random.Random
) -> float:
    """Exponential backoff with equal jitter, never sooner than the provider asked."""
    # 2.0 ** 1024 overflows (an attempt is any positive int); base * 2.0 ** 1023 is past any cap.
    exp = min(cap, base * 2.0 ** min(max(0, attempt - 1), 1023))
    delay = exp / 2 + rng.uniform(0, exp / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return float(delay)


async def claim_actions(
    pool: asyncpg.Pool, notifier: ActionNotifier, floor: ClaimFloor, req: ClaimRequest
) -> ClaimResponse:
    deadline = time.monotonic() + req.wait_seconds
    while True:
        async with pool.acquire() as conn:
            rows = await outbox.claim(
                conn, req.worker_id, req.max_actions, req.lease_seconds, await floor.get(conn)
            )
        remaining = deadline - time.monotonic()
        if rows or remaining <= 0:
            break
        await notifier.wait(min(remaining, _RECHECK_SECONDS))
    return ClaimResponse(
        actions=[
            ClaimedAction(
                action_id=r["action_id"], attempt=r["attempt"], lease_expires_at=r["lease_expires_at"],
                provider=r["provider"], action_type=r["action_type"], installation_id=r["installation_id"],
                repo_id=r["repo_id"], repo_full_name=r["repo_full_name"], pr_number=r["pr_number"],
                payload=PAYLOAD_TYPES[ActionType(r["action_type"])].model_validate(r["payload"]),
                comment_id=r["comment_id"],
            )
            for r in rows
        ]
    )


async def report_result(
    pool: asyncpg.Pool,
    floor: ClaimFloor,
    action_id: int,
    req: ResultRequest,
    *,
    base: float,
    cap: float,
    rng: random.Random,
) -> ResultResponse:
    delay = 0.0
    if req.outcome is Outcome.RETRYABLE_FAILURE:
        delay = retry_delay(req.attempt, base=base, cap=cap, retry_after=req.retry_after_seconds, rng=rng)
    async with pool.acquire() as conn:
        applied = await outbox.apply_result(
            conn, action_id, req.worker_id, req.attempt, req.outcome, delay, req.error, req.comment_id
        )
        if applied is None:
            if not await outbox.exists(conn, action_id):
                raise UnknownAction(action_id)
            raise StaleResult(action_id)
        if applied.unblocks_successor:
            floor.drop()
            await outbox.notify(conn)
    return ResultResponse(action_id=action_id, status=applied.status, next_attempt_at=applied.next_attempt_at)




async def report_results(
    pool: asyncpg.Pool,
    floor: ClaimFloor,
    req: BatchResultRequest,
    *,
    base: float,
    cap: float,
    rng: random.Random,
) -> BatchResultResponse:
    """Apply a batch in one transaction: each result is applied or refused exactly as alone."""
    rows = [
        outbox.ResultRow(
            action_id=r.action_id, attempt=r.attempt, outcome=r.outcome, error=r.error, comment_id=r.comment_id,
            retry_delay_seconds=(
                retry_delay(r.attempt, base=base, cap=cap, retry_after=r.retry_after_seconds, rng=rng)
                if r.outcome is Outcome.RETRYABLE_FAILURE else 0.0
            ),
        )
        for r in req.results
    ]
    async with pool.acquire() as conn:
        applied = await outbox.apply_results(conn, req.worker_id, rows)
        refused = [r.action_id for r in rows if r.action_id not in applied]
        present = await outbox.existing(conn, refused) if refused else set()
        if any(a.unblocks_successor for a in applied.values()):
            floor.drop()
            await outbox.notify(conn)
    items = []
    for r in rows:
        done = applied.get(r.action_id)
        if done is None:
            reason = "stale_lease" if r.action_id in present else "unknown_action"
            items.append(BatchResultItem(action_id=r.action_id, refused=reason))
        else:
            items.append(
                BatchResultItem(action_id=r.action_id, status=done.status, next_attempt_at=done.next_attempt_at)
            )
    return BatchResultResponse(results=items)


async def extend_lease(pool: asyncpg.Pool, action_id: int, req: LeaseRequest) -> LeaseResponse:
    """Extend a running attempt's lease; StaleResult when the worker no longer holds it."""
    async with pool.acquire() as conn:
        expires = await outbox.extend_lease(conn, action_id, req.worker_id, req.attempt, req.lease_seconds)
        if expires is None:
            if not await outbox.exists(conn, action_id):
                raise UnknownAction(action_id)
            raise StaleResult(action_id)
    return LeaseResponse(action_id=action_id, lease_expires_at=expires)
