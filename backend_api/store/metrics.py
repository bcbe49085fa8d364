"""SQL behind the backend's Prometheus metrics (``backend_api.metrics``): small, read-only queries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from backend_api.store.db import Conn


@dataclass(frozen=True, slots=True)
class OutboxGauges:
    pending: int  # PENDING: waiting to be claimed, due now or backing off
    pending_due: int  # of those, claimable now (backoff over)
    leased: int  # CLAIMED by a worker
    failed: int  # FAILED: gave up (terminal)
    oldest_pending_age_seconds: float  # age of the oldest PENDING action (0 when none), database clock


# One statement, one pass over bot_actions. PENDING and CLAIMED rows are what the partial
# index bot_actions_claimable_idx covers; FAILED rows are terminal and few by design.
# The age is measured from created_at, as on the dashboard's outbox page.
_OUTBOX = """
SELECT count(*) FILTER (WHERE status = 'PENDING') AS pending,
       count(*) FILTER (WHERE status = 'PENDING' AND next_attempt_at <= now()) AS pending_due,
       count(*) FILTER (WHERE status = 'CLAIMED') AS leased,
       count(*) FILTER (WHERE status = 'FAILED') AS failed,
       COALESCE(EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE status = 'PENDING')), 0)::float8
           AS oldest_pending_age_seconds
FROM bot_actions
WHERE status IN ('PENDING', 'CLAIMED', 'FAILED')
"""


async def outbox_gauges(conn: Conn) -> OutboxGauges:
    row = await conn.fetchrow(_OUTBOX)
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return OutboxGauges(
        pending=int(row["pending"]), pending_due=int(row["pending_due"]), leased=int(row["leased"]),
        failed=int(row["failed"]), oldest_pending_age_seconds=float(row["oldest_pending_age_seconds"]),
    )


async def action_types(conn: Conn, action_ids: Sequence[int]) -> dict[str, int]:
    """How many of ``action_ids`` there are of each action type (a primary-key lookup)."""
    if not action_ids:
        return {}
    rows = await conn.fetch(
        "SELECT action_type FROM bot_actions WHERE action_id = ANY($1::bigint[])", list(action_ids)
    )
    return dict(Counter(str(r["action_type"]) for r in rows))
