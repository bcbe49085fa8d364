"""Periodic work, safe to run in every backend replica at once: the deadline sweeper and housekeeping.

Each step is a single set-based statement; concurrent replicas either do the
work or find nothing left to do.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from backend_api.gate.deadlines import sweep_all
from backend_api.gate.parking import EXPIRED_REASON, PARKED_TTL_SECONDS
from backend_api.metrics import BackendMetrics
from backend_api.store import nonces, outbox, parked
from backend_api.store.db import DATABASE_UNAVAILABLE

log = logging.getLogger(__name__)

NONCE_RETENTION_SECONDS = 900  # comfortably past the 300 s signature window


async def run_once(
    pool: asyncpg.Pool, *, public_url: str, max_attempts: int, parked_ttl_seconds: float = PARKED_TTL_SECONDS
) -> dict[str, int]:
    timed_out = await sweep_all(pool, public_url=public_url, max_attempts=max_attempts)
    async with pool.acquire() as conn:
        purged = await nonces.purge(conn, NONCE_RETENTION_SECONDS)
        failed = await outbox.fail_exhausted_leases(conn)
        expired = await parked.expire(conn, parked_ttl_seconds, EXPIRED_REASON)
    return {"challenges_timed_out": timed_out, "nonces_purged": purged, "leases_failed": failed,
            "parked_expired": expired}


async def run_forever(
    pool: asyncpg.Pool, metrics: BackendMetrics, interval: float, *, public_url: str, max_attempts: int,
    parked_ttl_seconds: float = PARKED_TTL_SECONDS,
) -> None:
    """Run the steps every `interval` seconds, timed and counted; a database outage is retried next time."""
    while True:
        started = time.perf_counter()
        try:
            counts = await run_once(
                pool, public_url=public_url, max_attempts=max_attempts, parked_ttl_seconds=parked_ttl_seconds
            )
        except DATABASE_UNAVAILABLE as exc:
            metrics.maintenance_errors.inc()
            log.warning("maintenance step failed: %s", exc)
        else:
            metrics.challenges_timed_out.inc(counts["challenges_timed_out"])
            metrics.lease_expiry_failures.inc(counts["leases_failed"])
            metrics.parked_events.labels("expired").inc(counts["parked_expired"])
            if counts["parked_expired"]:
                log.warning("parked events expired: their installation never became known",
                            extra={"expired": counts["parked_expired"]})
            if any(counts.values()):
                log.info("maintenance", extra=counts)
        finally:
            metrics.maintenance_duration.observe(time.perf_counter() - started)
        await asyncio.sleep(interval)
