"""SQL for the `webhook_deliveries` aggregate: the durable dedup table.

Rows are keyed by (provider, delivery id, event name): a delivery id is unique within one provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backend_api.store.db import Conn
from shared_contracts.actions import Provider
from shared_contracts.events import Decision, IngestStatus


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    status: IngestStatus
    decision: Decision | None
    challenge_id: int | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class NewDelivery:
    delivery_id: str
    action: str
    installation_id: int | None
    repo_id: int | None
    body_sha256: str | None = None


async def begin(
    conn: Conn,
    delivery_id: str,
    event_name: str,
    action: str,
    installation_id: int | None,
    repo_id: int | None,
    body_sha256: str | None = None,
    provider: Provider = Provider.GITHUB,
) -> bool:
    """Insert the dedup row; False when this (delivery id, event) pair, or this body, was seen before."""
    return bool(await begin_many(conn, event_name, [
        NewDelivery(delivery_id, action, installation_id, repo_id, body_sha256)
    ], provider))


async def begin_many(
    conn: Conn, event_name: str, new: Sequence[NewDelivery], provider: Provider = Provider.GITHUB
) -> set[str]:
    """Insert the dedup rows of several deliveries of one event; the delivery ids that were new.

    Run inside the transaction that applies the events: concurrent duplicates wait
    on the primary key (or the body digest's unique index) until the first commits, then see the
    conflict. A delivery whose body digest was recorded before, under any delivery id or event name,
    is a duplicate too: a captured body replayed under a fresh X-GitHub-Delivery (docs/security.md, "A captured
    `closed` body replayed under a fresh delivery id").
    """
    rows = await conn.fetch(
        """INSERT INTO webhook_deliveries (provider, delivery_id, event_name, action, installation_id, repo_id,
                                           status, body_sha256)
           SELECT $7, d.delivery_id, $1, d.action, d.installation_id, d.repo_id, 'ACCEPTED', d.body_sha256
           FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[])
                AS d(delivery_id, action, installation_id, repo_id, body_sha256)
           ON CONFLICT DO NOTHING
           RETURNING delivery_id""",
        event_name, [d.delivery_id for d in new], [d.action for d in new],
        [d.installation_id for d in new], [d.repo_id for d in new], [d.body_sha256 for d in new], provider.value,
    )
    return {str(r["delivery_id"]) for r in rows}


async def finish(
    conn: Conn,
    delivery_id: str,
    event_name: str,
    record: DeliveryRecord,
    provider: Provider = Provider.GITHUB,
) -> None:
    await conn.execute(
        """UPDATE webhook_deliveries SET status = $3, decision = $4, challenge_id = $5, reason = $6
           WHERE provider = $7 AND delivery_id = $1 AND event_name = $2""",
        delivery_id, event_name, record.status.value,
        record.decision.value if record.decision else None, record.challenge_id, record.reason, provider.value,
    )


async def get(
    conn: Conn, delivery_id: str, event_name: str, provider: Provider = Provider.GITHUB
) -> DeliveryRecord | None:
    return (await get_many(conn, event_name, [delivery_id], provider)).get(delivery_id)


async def get_many(
    conn: Conn, event_name: str, delivery_ids: Sequence[str], provider: Provider = Provider.GITHUB
) -> dict[str, DeliveryRecord]:
    rows = await conn.fetch(
        """SELECT delivery_id, status, decision, challenge_id, reason FROM webhook_deliveries
           WHERE provider = $3 AND delivery_id = ANY($2::text[]) AND event_name = $1""",
        event_name, list(delivery_ids), provider.value,
    )
    return {
        str(row["delivery_id"]): DeliveryRecord(
            status=IngestStatus(row["status"]),
            decision=Decision(row["decision"]) if row["decision"] else None,
            challenge_id=row["challenge_id"],
            reason=row["reason"],
        )
        for row in rows
    }


async def known(conn: Conn, delivery_ids: list[str], provider: Provider = Provider.GITHUB) -> list[str]:
    """The delivery ids among `delivery_ids` recorded for any event name (sorted, each once)."""
    if not delivery_ids:
        return []
    rows = await conn.fetch(
        """SELECT DISTINCT delivery_id FROM webhook_deliveries WHERE provider = $2 AND delivery_id = ANY($1::text[])
           ORDER BY delivery_id""",
        delivery_ids, provider.value,
    )
    return [str(row["delivery_id"]) for row in rows]
