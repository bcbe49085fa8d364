"""SQL for `parked_pull_request_events`: events waiting for their installation to become known."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from backend_api.store.db import Conn
from shared_contracts.actions import Provider

EventKind = Literal["pull_request", "issue_comment"]

# One lock for every parking transaction: the bounds are counted and written under it, so concurrent
# batches never overshoot them together. Parking is rare (only before an installation is known).
_PARKING_LOCK = (-3, 0)


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    parked_id: int
    delivery_id: str
    event_kind: EventKind
    event: dict[str, Any]  # the normalized event's JSON


@dataclass(frozen=True, slots=True)
class NewParked:
    installation_id: int
    delivery_id: str
    event_kind: EventKind
    event: dict[str, Any]


async def unknown_installations(conn: Conn, installation_ids: Sequence[int]) -> set[int]:
    """The ids among `installation_ids` without a `github_installations` row, re-checked under a shared
    hold of each one's installation lock (`installations.lock`).

    The installation event that creates the row holds that lock exclusively while it replays what is
    parked, so an event parked here is either committed before that replay reads the table or sees the
    row and is decided at once: none is parked after its installation's replay.
    """
    ids = sorted(set(installation_ids))
    if not ids:
        return set()
    missing = await _missing(conn, ids)
    if not missing:
        return set()
    await conn.execute(
        "SELECT pg_advisory_xact_lock_shared(-1, (i % 2147483648)::int) FROM unnest($1::bigint[]) AS i ORDER BY i",
        sorted(missing),
    )
    return await _missing(conn, sorted(missing))


async def _missing(conn: Conn, ids: Sequence[int]) -> set[int]:
    found = await conn.fetch(
        # Any provider's tenant (a Bitbucket workspace is known before its events are decided).
        "SELECT tenant_id FROM gate_tenants WHERE tenant_id = ANY($1::bigint[])", list(ids)
    )
    return set(ids) - {int(r["tenant_id"]) for r in found}


async def lock_and_count(conn: Conn, installation_ids: Sequence[int]) -> tuple[dict[int, int], int]:
    """Take the parking lock for the transaction; how many events wait per asked installation, and in all."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *_PARKING_LOCK)
    row = await conn.fetchrow("SELECT count(*) AS total FROM parked_pull_request_events")
    per = await conn.fetch(
        """SELECT installation_id, count(*) AS n FROM parked_pull_request_events
           WHERE installation_id = ANY($1::bigint[]) GROUP BY installation_id""",
        list(installation_ids),
    )
    total = int(row["total"]) if row is not None else 0
    return {int(r["installation_id"]): int(r["n"]) for r in per}, total


async def park(conn: Conn, events: Sequence[NewParked]) -> None:
    """Insert in the given order: `parked_id` is the received order replays follow."""
    if not events:
        return
    await conn.executemany(
        """INSERT INTO parked_pull_request_events (installation_id, delivery_id, event_kind, event)
           VALUES ($1, $2, $3, $4)""",
        [(e.installation_id, e.delivery_id, e.event_kind, e.event) for e in events],
    )


async def take(conn: Conn, installation_id: int) -> list[ParkedEvent]:
    """Delete the installation's parked events and return them in received order."""
    rows = await conn.fetch(
        """WITH taken AS (
               DELETE FROM parked_pull_request_events WHERE installation_id = $1
               RETURNING parked_id, delivery_id, event_kind, event
           )
           SELECT * FROM taken ORDER BY parked_id""",
        installation_id,
    )
    return [ParkedEvent(r["parked_id"], r["delivery_id"], r["event_kind"], r["event"]) for r in rows]


async def expire(conn: Conn, ttl_seconds: float, reason: str) -> int:
    """Delete events parked longer than `ttl_seconds`; their delivery rows become IGNORED with `reason`."""
    n = await conn.fetchval(
        """WITH gone AS (
               DELETE FROM parked_pull_request_events
               WHERE received_at < now() - make_interval(secs => $1)
               RETURNING delivery_id, event_kind
           ),
           marked AS (
               UPDATE webhook_deliveries d SET status = 'IGNORED', reason = $2
               FROM gone WHERE d.provider = $3 AND d.delivery_id = gone.delivery_id
                   AND d.event_name = gone.event_kind
                   AND d.status = 'PARKED'
           )
           SELECT count(*) FROM gone""",
        ttl_seconds, reason, Provider.GITHUB.value,
    )
    return int(n or 0)
