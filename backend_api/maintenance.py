"""Periodic housekeeping, safe to run in every backend replica at once.

Each step is a single set-based statement; concurrent replicas either do the
work or find nothing left to do.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from backend_api.store import outbox

log = logging.getLogger(__name__)

NONCE_RETENTION_SECONDS = 900  # comfortably past the 300 s signature window


async def run_once(pool: asyncpg.Pool) -> dict[str, int]:
    async with pool.acquire() as conn:
        purged: str = await conn.execute(
            "DELETE FROM internal_nonces WHERE seen_at < now() - make_interval(secs => $1)",
            float(NONCE_RETENTION_SECONDS),
        )
        failed = await outbox.fail_exhausted_leases(conn)
    return {"nonces_purged": int(purged.split()[-1]), "leases_failed": failed}


async def run_forever(pool: asyncpg.Pool, interval: float) -> None:
    while True:
        try:
            counts = await run_once(pool)
            if any(counts.values()):
                log.info("maintenance", extra=counts)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("maintenance step failed: %s", exc)
        await asyncio.sleep(interval)
