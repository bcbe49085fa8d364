"""Events for an installation prgate does not know yet: parked, not answered for good (docs/security.md, "A pull
request that arrives before its installation is never gated").

A pull request opened while its `installation.created` is still failing at GitHub (the receiver was
down) would otherwise be IGNORED as "unknown installation" and never gated, although the
installation arrives moments later through redelivery. Such events are kept in
`parked_pull_request_events` and decided, in received order and through the same code as live
events, once the installation event arrives (`gate/replay.py`). Bounded in count here and in age by
the maintenance loop, so events for installations that never come cannot pile up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from backend_api.store import deliveries, parked
from backend_api.store.db import Conn
from shared_contracts.events import CommandEvent, IngestResponse, IngestStatus, PullRequestEvent

log = logging.getLogger(__name__)

PARKED_REASON = "installation not known yet: parked until its installation event arrives"
DROPPED_REASON = "installation not known yet and too many events wait for unknown installations: dropped"
EXPIRED_REASON = "installation never became known: parked event expired"


# GitHub redelivers for 3 days: an installation event that has not arrived by then never will.
PARKED_TTL_SECONDS = 3 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class ParkingLimits:
    per_installation: int = 1000
    total: int = 50_000
    ttl_seconds: float = PARKED_TTL_SECONDS


def admit(installation_ids: Sequence[int], waiting: dict[int, int], total: int, limits: ParkingLimits) -> list[bool]:
    """Which of these events (in order) fit in the bounds, given what already waits."""
    counts = dict(waiting)
    out: list[bool] = []
    for inst in installation_ids:
        ok = counts.get(inst, 0) < limits.per_installation and total < limits.total
        if ok:
            counts[inst] = counts.get(inst, 0) + 1
            total += 1
        out.append(ok)
    return out


async def park_events(
    conn: Conn, events: Sequence[PullRequestEvent | CommandEvent], kind: parked.EventKind, limits: ParkingLimits
) -> dict[str, IngestResponse]:
    """Park what fits, record the rest DROPPED; inside the transaction that began their delivery rows
    (which `unknown_installations` found unknown). One answer per delivery id."""
    if not events:
        return {}
    waiting, total = await parked.lock_and_count(conn, [e.installation_id for e in events])
    fits = admit([e.installation_id for e in events], waiting, total, limits)
    await parked.park(conn, [
        parked.NewParked(e.installation_id, e.delivery_id, kind, e.model_dump(mode="json"))
        for e, ok in zip(events, fits, strict=True) if ok
    ])
    answers: dict[str, IngestResponse] = {}
    for event, ok in zip(events, fits, strict=True):
        status = IngestStatus.PARKED if ok else IngestStatus.DROPPED
        reason = PARKED_REASON if ok else DROPPED_REASON
        await deliveries.finish(conn, event.delivery_id, kind, deliveries.DeliveryRecord(
            status=status, decision=None, challenge_id=None, reason=reason,
        ))
        extra = {"delivery_id": event.delivery_id, "installation_id": event.installation_id, "event": kind}
        if ok:
            log.info("event parked until its installation is known", extra=extra)
        else:
            log.warning("event for an unknown installation dropped: parking is full", extra={
                **extra, "waiting_for_installation": waiting.get(event.installation_id, 0), "waiting": total,
            })
        answers[event.delivery_id] = IngestResponse(status=status, delivery_id=event.delivery_id, reason=reason)
    return answers
