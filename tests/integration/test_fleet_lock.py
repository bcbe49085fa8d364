"""One job at a time across the fleet (bot_worker/jobs/lock.py), against real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot_worker.jobs.lock import fleet_lock


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_a_held_lock_is_skipped_and_freed_when_the_run_ends(redis: Redis) -> None:
    key = f"test:{uuid.uuid4().hex}:lock"
    async with fleet_lock(redis, key, 10_000) as first:
        assert first is not None
        async with fleet_lock(redis, key, 10_000) as second:
            assert second is None  # another replica's run: skipped, and it frees nothing
        assert await redis.get(key) == first.token.encode()
    assert await redis.exists(key) == 0


async def test_only_the_holder_extends_or_frees_the_lock(redis: Redis) -> None:
    key = f"test:{uuid.uuid4().hex}:lock"
    async with fleet_lock(redis, key, 1_000) as held:
        assert held is not None
        await redis.pexpire(key, 100)
        await held.extend()
        assert await redis.pttl(key) > 500
        # The run outlived its TTL and another replica took the lock over: neither touches it now.
        await redis.set(key, "another-replica", px=10_000)
        await held.extend()
        assert await redis.pttl(key) > 5_000
    assert await redis.get(key) == b"another-replica"
    await redis.delete(key)
