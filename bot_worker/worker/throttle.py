"""A write throttle shared by every worker replica through Redis, per installation.

GitHub's secondary limit allows about 80 content-creating requests a minute;
a sliding-window log in a sorted set, updated atomically by one Lua script
and timed by Redis's own clock, keeps the whole fleet under it.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

_SCRIPT = """
local key = KEYS[1]
local window_ms = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_ms)
if redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, now, ARGV[3])
    redis.call('PEXPIRE', key, window_ms)
    return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window_ms - now)
"""


class WriteThrottle:
    def __init__(
        self, redis: Redis, limit_per_window: int, window_seconds: float = 60.0, prefix: str = "prgate"
    ) -> None:
        self._redis = redis
        self._limit = limit_per_window
        self._window_ms = int(window_seconds * 1000)
        self._prefix = prefix
        self._script = redis.register_script(_SCRIPT)

    async def try_acquire(self, installation_id: int) -> float:
        """Take one write slot: 0.0 when granted, else seconds until one frees up."""
        key = f"{self._prefix}:throttle:writes:{installation_id}"
        wait_ms = await self._script(keys=[key], args=[self._window_ms, self._limit, uuid.uuid4().hex])
        return int(wait_ms) / 1000.0
