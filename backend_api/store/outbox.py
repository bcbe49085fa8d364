"""SQL for the `bot_actions` outbox: enqueue, claim, result, cancel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from backend_api.store.db import Conn
from shared_contracts.actions import ActionStatus, ActionType, CommentPayload, Outcome, Provider, StatusPayload

NOTIFY_CHANNEL = "prgate_bot_actions"


@dataclass(frozen=True, slots=True)
class NewAction:
    provider: Provider
    action_type: ActionType
    installation_id: int
    repo_id: int
    repo_full_name: str
    pr_number: int
    payload: dict[str, Any]
    challenge_id: int | None
    max_attempts: int


@dataclass(frozen=True, slots=True)
class PrTarget:
    """The pull request actions apply to, with what every row of it shares."""

    installation_id: int
    repo_id: int
    repo_full_name: str
    pr_number: int
    challenge_id: int | None
    max_attempts: int
    provider: Provider = Provider.GITHUB

    async def enqueue(self, conn: Conn, action_type: ActionType, payload: CommentPayload | StatusPayload) -> int:
        return await enqueue(
            conn,
            NewAction(
                provider=self.provider, action_type=action_type, installation_id=self.installation_id,
                repo_id=self.repo_id, repo_full_name=self.repo_full_name, pr_number=self.pr_number,
                payload=payload.model_dump(), challenge_id=self.challenge_id, max_attempts=self.max_attempts,
            ),
        )


async def enqueue(conn: Conn, action: NewAction) -> int:
    value = await conn.fetchval(
        """INSERT INTO bot_actions (provider, action_type, installation_id, repo_id, repo_full_name,
                                    pr_number, payload, challenge_id, max_attempts)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING action_id""",
        action.provider.value, action.action_type.value, action.installation_id, action.repo_id,
        action.repo_full_name, action.pr_number, action.payload, action.challenge_id, action.max_attempts,
    )
    return int(value)


# Claimable = PENDING whose backoff has passed, or CLAIMED whose lease expired
# (next_attempt_at holds the lease expiry then), with attempts left, whose
# installation is active, and with no earlier unfinished action for the same PR — the same
# repository *id*: a name can move to another repository (rename, then reuse).
# The installation check is GitHub's (github_installations); the provider is the enum's value, not a
# literal: the fragment is shared by several statements, so it is not a positional parameter.
_CLAIMABLE = f"""
      a.status IN ('PENDING', 'CLAIMED')
      AND a.next_attempt_at <= now()
      AND a.attempt < a.max_attempts
      AND (a.provider <> '{Provider.GITHUB.value}' OR EXISTS (
              SELECT 1 FROM github_installations i
              WHERE i.installation_id = a.installation_id AND i.status = 'ACTIVE'))
      AND NOT EXISTS (
              SELECT 1 FROM bot_actions b
              WHERE b.provider = a.provider AND b.repo_id = a.repo_id
                AND b.pr_number = a.pr_number AND b.action_id < a.action_id
                AND b.status IN ('PENDING', 'CLAIMED'))
"""

# One statement: pick claimable rows with SKIP LOCKED and lease them.
# LIMIT is a literal (one cached statement per max_actions value): with a parameter PostgreSQL
# re-plans every call, because its generic plan for an unknown LIMIT is a sequential scan.
# `next_attempt_at >= $3` (the claim floor, see claim_floor) starts the index scan past the
# entries of finished actions that a long-open transaction elsewhere keeps from being cleaned.
_CLAIM = f"""
WITH candidates AS (
    SELECT a.action_id
    FROM bot_actions a
    WHERE a.next_attempt_at >= $3 AND {_CLAIMABLE}
    ORDER BY a.next_attempt_at, a.action_id
    LIMIT {{limit}}
    FOR UPDATE OF a SKIP LOCKED
)
UPDATE bot_actions t SET
    status = 'CLAIMED',
    attempt = t.attempt + 1,
    lease_owner = $1,
    lease_expires_at = now() + make_interval(secs => $2),
    next_attempt_at = now() + make_interval(secs => $2),
    updated_at = now()
FROM candidates c
WHERE t.action_id = c.action_id
RETURNING t.action_id, t.attempt, t.lease_expires_at, t.provider, t.action_type, t.installation_id,
          t.repo_id, t.repo_full_name, t.pr_number, t.payload,
          (SELECT pc.comment_id FROM pr_comments pc
           WHERE pc.provider = t.provider AND pc.repo_id = t.repo_id AND pc.pr_number = t.pr_number
             AND pc.marker = t.payload->>'marker') AS comment_id
"""

# The oldest next_attempt_at of a claimable row, but never later than `margin` ago: a row
# inserted by a transaction still open (its next_attempt_at is that transaction's start) must
# not fall below the floor. With no claimable row the floor is `margin` ago.
_CLAIM_FLOOR = f"""
SELECT least(
    (SELECT a.next_attempt_at FROM bot_actions a WHERE {_CLAIMABLE}
     ORDER BY a.next_attempt_at, a.action_id LIMIT 1),
    now() - make_interval(secs => $1))
"""

NO_FLOOR = datetime(1970, 1, 1, tzinfo=UTC)


async def claim_floor(conn: Conn, margin_seconds: float) -> datetime:
    value: datetime = await conn.fetchval(_CLAIM_FLOOR, float(margin_seconds))
    return value


async def claim(
    conn: Conn, worker_id: str, max_actions: int, lease_seconds: float, floor: datetime = NO_FLOOR
) -> list[asyncpg.Record]:
    """Lease up to `max_actions`; only rows whose next_attempt_at is at or past `floor` are looked at."""
    if not 1 <= max_actions <= 100:
        raise ValueError("max_actions must be within 1..100")
    rows = await conn.fetch(_CLAIM.format(limit=int(max_actions)), worker_id, float(lease_seconds), floor)
    return sorted(rows, key=lambda r: r["action_id"])


@dataclass(frozen=True, slots=True)
class ResultApplied:
    status: ActionStatus
    next_attempt_at: datetime | None
    unblocks_successor: bool


async def apply_result(
    conn: Conn,
    action_id: int,
    worker_id: str,
    attempt: int,
    outcome: Outcome,
    retry_delay_seconds: float,
    error: str | None,
    comment_id: int | None = None,
) -> ResultApplied | None:
    """Apply a worker's result; None when that worker does not hold this attempt's lease."""
    applied = await apply_results(
        conn, worker_id, [ResultRow(action_id, attempt, outcome, retry_delay_seconds, error, comment_id)]
    )
    return applied.get(action_id)


# A worker's results, applied only where that worker holds the lease for that attempt:
# SUCCEEDED → DONE; FAILED, or a retryable failure on the last attempt → FAILED; otherwise back
# to PENDING after the backoff. `unblocks_successor` says a later action of the same PR waits.
_RESULTS = """
WITH input AS (
    SELECT * FROM unnest($2::bigint[], $3::int[], $4::text[], $5::float8[], $6::text[])
        AS i(action_id, attempt, outcome, delay, error)
), upd AS (
    UPDATE bot_actions a SET
        status = CASE
            WHEN i.outcome = 'SUCCEEDED' THEN 'DONE'
            WHEN i.outcome = 'FAILED' OR a.attempt >= a.max_attempts THEN 'FAILED'
            ELSE 'PENDING' END,
        next_attempt_at = CASE
            WHEN i.outcome = 'RETRYABLE_FAILURE' AND a.attempt < a.max_attempts
            THEN now() + make_interval(secs => i.delay) ELSE a.next_attempt_at END,
        last_error = CASE WHEN i.outcome = 'SUCCEEDED' THEN a.last_error ELSE i.error END,
        lease_owner = NULL,
        lease_expires_at = NULL,
        completed_at = CASE
            WHEN i.outcome = 'RETRYABLE_FAILURE' AND a.attempt < a.max_attempts THEN NULL ELSE now() END,
        updated_at = now()
    FROM input i
    WHERE a.action_id = i.action_id AND a.status = 'CLAIMED' AND a.lease_owner = $1 AND a.attempt = i.attempt
    RETURNING a.action_id, a.status, a.next_attempt_at, a.provider, a.repo_id, a.pr_number
)
SELECT u.action_id, u.status, u.next_attempt_at,
       u.status <> 'PENDING' AND EXISTS (
           SELECT 1 FROM bot_actions b
           WHERE b.provider = u.provider AND b.repo_id = u.repo_id
             AND b.pr_number = u.pr_number AND b.action_id > u.action_id AND b.status = 'PENDING'
       ) AS unblocks_successor
FROM upd u
"""


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One result of a batch, with the retry delay the service chose for it."""

    action_id: int
    attempt: int
    outcome: Outcome
    retry_delay_seconds: float
    error: str | None
    comment_id: int | None = None


# The comment ids of applied results, remembered per PR and marker (a later id replaces an earlier one).
_REMEMBER_COMMENTS = """
INSERT INTO pr_comments (provider, repo_id, pr_number, marker, comment_id)
SELECT a.provider, a.repo_id, a.pr_number, a.payload->>'marker', i.comment_id
FROM unnest($1::bigint[], $2::bigint[]) AS i(action_id, comment_id)
JOIN bot_actions a ON a.action_id = i.action_id
WHERE a.repo_id IS NOT NULL AND a.payload ? 'marker'
ON CONFLICT (provider, repo_id, pr_number, marker)
DO UPDATE SET comment_id = excluded.comment_id, updated_at = now()
"""


async def apply_results(
    conn: Conn, worker_id: str, results: Sequence[ResultRow]
) -> dict[int, ResultApplied]:
    """Apply a batch in one transaction; the ids absent from the answer were refused (stale or unknown).
    The comment ids of applied results are remembered for the PR's next actions."""
    async with conn.transaction():
        rows = await conn.fetch(
            _RESULTS, worker_id,
            [r.action_id for r in results], [r.attempt for r in results], [r.outcome.value for r in results],
            [float(r.retry_delay_seconds) for r in results], [r.error for r in results],
        )
        applied_ids = {int(row["action_id"]) for row in rows}
        comments = [(r.action_id, r.comment_id) for r in results
                    if r.comment_id is not None and r.action_id in applied_ids]
        if comments:
            await conn.execute(_REMEMBER_COMMENTS, [c[0] for c in comments], [c[1] for c in comments])
    applied: dict[int, ResultApplied] = {}
    for row in rows:
        status = ActionStatus(row["status"])
        applied[int(row["action_id"])] = ResultApplied(
            status=status,
            next_attempt_at=row["next_attempt_at"] if status is ActionStatus.PENDING else None,
            unblocks_successor=bool(row["unblocks_successor"]),
        )
    return applied


async def extend_lease(
    conn: Conn, action_id: int, worker_id: str, attempt: int, lease_seconds: float
) -> datetime | None:
    """Move a running attempt's lease to `lease_seconds` from now; None unless `worker_id` holds that
    attempt's lease and it has not expired (an expired lease may already be another worker's)."""
    value: datetime | None = await conn.fetchval(
        """UPDATE bot_actions SET
               lease_expires_at = now() + make_interval(secs => $4),
               next_attempt_at = now() + make_interval(secs => $4),
               updated_at = now()
           WHERE action_id = $1 AND status = 'CLAIMED' AND lease_owner = $2 AND attempt = $3
             AND lease_expires_at > now()
           RETURNING lease_expires_at""",
        action_id, worker_id, attempt, float(lease_seconds),
    )
    return value


async def existing(conn: Conn, action_ids: Sequence[int]) -> set[int]:
    rows = await conn.fetch(
        "SELECT action_id FROM bot_actions WHERE action_id = ANY($1::bigint[])", list(action_ids)
    )
    return {int(r["action_id"]) for r in rows}


async def exists(conn: Conn, action_id: int) -> bool:
    return bool(await conn.fetchval("SELECT true FROM bot_actions WHERE action_id = $1", action_id))


async def notify(conn: Conn) -> None:
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)


async def cancel_pending_for_installation(
    conn: Conn, installation_id: int, reason: str
) -> int:
    """The installation's actions no worker is running: PENDING ones, and CLAIMED ones whose lease
    expired (their worker is gone; left CLAIMED they would block the PR, or run stale, after a
    reinstall). A live lease is honoured: its worker finishes and reports as usual."""
    result: str = await conn.execute(
        """UPDATE bot_actions SET status = 'CANCELLED', last_error = $2, completed_at = now(), updated_at = now(),
                                  lease_owner = NULL, lease_expires_at = NULL
           WHERE installation_id = $1
             AND (status = 'PENDING' OR (status = 'CLAIMED' AND lease_expires_at <= now()))""",
        installation_id, reason,
    )
    return int(result.split()[-1])


async def cancel_open_for_tenant(conn: Conn, installation_id: int, reason: str) -> int:
    """A disconnected tenant's PENDING and CLAIMED actions, live leases too: its token is gone, so a
    worker mid-attempt cannot act for it any more, and its late result is refused as stale."""
    result: str = await conn.execute(
        """UPDATE bot_actions SET status = 'CANCELLED', last_error = $2, completed_at = now(), updated_at = now(),
                                  lease_owner = NULL, lease_expires_at = NULL
           WHERE installation_id = $1 AND status IN ('PENDING', 'CLAIMED')""",
        installation_id, reason,
    )
    return int(result.split()[-1])


async def cancel_pending_for_challenge(
    conn: Conn, repo_id: int, pr_number: int, challenge_id: int, reason: str, provider: Provider = Provider.GITHUB
) -> int:
    """The challenge's actions no worker has taken yet; a claimed one finishes (its lease is honoured).
    Found through the PR's open actions (bot_actions_open_per_pr_id_idx), not the whole outbox."""
    result: str = await conn.execute(
        """UPDATE bot_actions SET status = 'CANCELLED', last_error = $4, completed_at = now(), updated_at = now()
           WHERE provider = $5 AND repo_id = $1 AND pr_number = $2 AND status = 'PENDING'
             AND challenge_id = $3""",
        repo_id, pr_number, challenge_id, reason, provider.value,
    )
    return int(result.split()[-1])


async def cancel_pending_for_repos(
    conn: Conn, installation_id: int, repo_ids: Sequence[int], reason: str
) -> int:
    result: str = await conn.execute(
        """UPDATE bot_actions SET status = 'CANCELLED', last_error = $3, completed_at = now(), updated_at = now()
           WHERE installation_id = $1 AND repo_id = ANY($2::bigint[]) AND status = 'PENDING'""",
        installation_id, list(repo_ids), reason,
    )
    return int(result.split()[-1])


async def fail_exhausted_leases(conn: Conn) -> int:
    """A lease that expired on the final attempt can never be claimed again: make it terminal."""
    result: str = await conn.execute(
        """UPDATE bot_actions SET status = 'FAILED', completed_at = now(), updated_at = now(),
               last_error = coalesce(last_error || '; ', '') || 'lease expired on the final attempt',
               lease_owner = NULL, lease_expires_at = NULL
           WHERE status = 'CLAIMED' AND lease_expires_at < now() AND attempt >= max_attempts"""
    )
    return int(result.split()[-1])
