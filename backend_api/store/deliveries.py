"""SQL for the `webhook_deliveries` aggregate: the durable dedup table."""

from __future__ import annotations

from dataclasses import dataclass

from backend_api.store.db import Conn
from shared_contracts.events import Decision, IngestStatus


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    status: IngestStatus
    decision: Decision | None
    challenge_id: int | None
    reason: str | None


async def begin(
    conn: Conn,
    delivery_id: str,
    event_name: str,
    action: str,
    installation_id: int | None,
    repo_id: int | None,
) -> bool:
    """Insert the dedup row; False when this (delivery id, event) pair was seen before.

    Run inside the transaction that applies the event: concurrent duplicates wait
    on the primary key until the first commits, then see the conflict.
    """
    row = await conn.fetchval(
        """INSERT INTO webhook_deliveries (delivery_id, event_name, action, installation_id, repo_id, status)
           VALUES ($1, $2, $3, $4, $5, 'ACCEPTED')
           ON CONFLICT (delivery_id, event_name) DO NOTHING
           RETURNING true""",
        delivery_id, event_name, action, installation_id, repo_id,
    )
    return bool(row)


async def finish(
    conn: Conn,
    delivery_id: str,
    event_name: str,
    record: DeliveryRecord,
) -> None:
    await conn.execute(
        """UPDATE webhook_deliveries SET status = $3, decision = $4, challenge_id = $5, reason = $6
           WHERE delivery_id = $1 AND event_name = $2""",
        delivery_id, event_name, record.status.value,
        record.decision.value if record.decision else None, record.challenge_id, record.reason,
    )


async def get(conn: Conn, delivery_id: str, event_name: str) -> DeliveryRecord | None:
    row = await conn.fetchrow(
        """SELECT status, decision, challenge_id, reason FROM webhook_deliveries
           WHERE delivery_id = $1 AND event_name = $2""",
        delivery_id, event_name,
    )
    if row is None:
        return None
    return DeliveryRecord(
        status=IngestStatus(row["status"]),
        decision=Decision(row["decision"]) if row["decision"] else None,
        challenge_id=row["challenge_id"],
        reason=row["reason"],
    )


async def known(conn: Conn, delivery_ids: list[str]) -> list[str]:
    """The delivery ids among `delivery_ids` recorded for any event name (sorted, each once)."""
    if not delivery_ids:
        return []
    rows = await conn.fetch(
        """SELECT DISTINCT delivery_id FROM webhook_deliveries WHERE delivery_id = ANY($1::text[])
           ORDER BY delivery_id""",
        delivery_ids,
    )
    return [str(row["delivery_id"]) for row in rows]
