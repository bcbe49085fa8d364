"""One fleet-wide lock per job, in Redis: at most one replica runs a given job at a time.

`SET key token NX PX ttl` takes it; only the holder's token may extend or delete it (a Lua
compare-and-act), so a run that outlived its TTL never frees or prolongs the lock of the replica
that took it over.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

# Delete / extend the lock only if this run still holds it.
_RELEASE: Final = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_EXTEND: Final = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)


@dataclass(frozen=True, slots=True)
class HeldLock:
    """The lock this run holds."""

    redis: Redis
    key: str
    token: str
    ttl_ms: int

    async def extend(self) -> None:
        """Push the expiry `ttl_ms` from now, if the lock is still ours."""
        await self.redis.eval(_EXTEND, 1, self.key, self.token, str(self.ttl_ms))  # type: ignore[misc]

    async def release(self) -> None:
        await self.redis.eval(_RELEASE, 1, self.key, self.token)  # type: ignore[misc]


@asynccontextmanager
async def fleet_lock(redis: Redis, key: str, ttl_ms: int) -> AsyncIterator[HeldLock | None]:
    """The lock while the block runs, or None when another replica holds it (the block then skips)."""
    token = secrets.token_hex(8)
    if not await redis.set(key, token, nx=True, px=ttl_ms):
        yield None
        return
    held = HeldLock(redis, key, token, ttl_ms)
    try:
        yield held
    finally:
        await held.release()
