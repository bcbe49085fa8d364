"""The claim floor (backend_api/outbox/floor.py): claims skip the index below it, and lose nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from backend_api.app import create_app
from backend_api.outbox.floor import ClaimFloor
from backend_api.store import outbox
from tests.conftest import INTERNAL_SECRET, backend_settings
from tests.support.outbox import CLAIM, RESULTS, install, seed_actions
from tests.support.signed import SignedClient


async def claim(backend: SignedClient, worker: str = "w1", n: int = 10) -> list[dict[str, Any]]:
    resp = await backend.post_json(CLAIM, {"worker_id": worker, "max_actions": n, "lease_seconds": 60})
    return list(resp["actions"])


async def succeed(backend: SignedClient, action: dict[str, Any], worker: str = "w1") -> None:
    item = {"action_id": action["action_id"], "attempt": action["attempt"], "outcome": "SUCCEEDED"}
    await backend.post_json(RESULTS, {"worker_id": worker, "results": [item]})


async def _backdate(db: asyncpg.Pool, seconds: float) -> None:
    """Move every PENDING row's next_attempt_at into the past, as if inserted `seconds` ago."""
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE bot_actions SET next_attempt_at = now() - make_interval(secs => $1) WHERE status = 'PENDING'",
            seconds,
        )


async def test_the_floor_is_the_oldest_claimable_row_or_the_margin(db: asyncpg.Pool, backend: SignedClient) -> None:
    await install(backend)
    async with db.acquire() as conn:
        empty = await outbox.claim_floor(conn, 1.0)
        now = await conn.fetchval("SELECT now()")
    assert 0.9 <= (now - empty).total_seconds() <= 1.5
    await seed_actions(db, 2)
    await _backdate(db, 30)
    async with db.acquire() as conn:
        floor = await outbox.claim_floor(conn, 1.0)
        oldest = await conn.fetchval("SELECT min(next_attempt_at) FROM bot_actions")
    assert floor == oldest


async def test_rows_below_the_floor_are_not_looked_at(db: asyncpg.Pool, backend: SignedClient) -> None:
    await install(backend)
    [old, new] = await seed_actions(db, 2)
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE bot_actions SET next_attempt_at = now() - interval '1 hour' WHERE action_id = $1", old
        )
        floor = await conn.fetchval("SELECT now() - interval '1 minute'")
        rows = await outbox.claim(conn, "w1", 10, 60, floor)
    assert [r["action_id"] for r in rows] == [new]


async def test_a_successor_unblocked_through_this_backend_is_claimed_at_once(
    db: asyncpg.Pool, backend: SignedClient
) -> None:
    await install(backend)
    first, second = await seed_actions(db, 2, prs=1)
    await _backdate(db, 30)  # the successor sits far below any floor taken from now on
    [claimed] = await claim(backend)
    assert claimed["action_id"] == first
    await asyncio.sleep(1.1)  # the next claim refreshes the floor: nothing claimable, so it is now - 1 s
    assert await claim(backend) == []  # blocked, and now below the floor
    await succeed(backend, claimed)
    [then] = await claim(backend)  # the result dropped the floor
    assert then["action_id"] == second


async def test_a_successor_unblocked_through_another_backend_is_claimed_after_one_refresh(
    db: asyncpg.Pool, database_url: str, backend: SignedClient, aiohttp_client: Any
) -> None:
    other = SignedClient(await aiohttp_client(create_app(backend_settings(database_url))), INTERNAL_SECRET)
    await install(backend)
    first, second = await seed_actions(db, 2, prs=1)
    await _backdate(db, 30)
    [claimed] = await claim(backend)
    assert claimed["action_id"] == first
    await asyncio.sleep(1.1)
    assert await claim(backend) == []  # this backend's floor is now above the blocked successor
    await succeed(other, claimed)
    assert await claim(backend) == []  # below the floor: not seen yet
    await asyncio.sleep(1.1)  # one refresh
    [then] = await claim(backend)
    assert then["action_id"] == second


async def test_the_floor_is_walked_at_most_once_per_refresh(db: asyncpg.Pool, backend: SignedClient) -> None:
    await install(backend)
    ticks = [100.0]
    floor = ClaimFloor(refresh_seconds=1.0, margin_seconds=1.0, clock=lambda: ticks[0])
    async with db.acquire() as conn:
        first = await floor.get(conn)
        await asyncio.sleep(0.05)
        assert await floor.get(conn) == first  # cached
        ticks[0] += 1.5
        assert await floor.get(conn) > first  # refreshed: the margin moved with the clock
        floor.drop()
        again = await floor.get(conn)
    assert again >= first
