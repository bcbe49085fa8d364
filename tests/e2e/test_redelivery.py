"""Issue #7: deliveries that failed while the receiver was down are redelivered from GitHub, once each."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from prgate.demo import PR_MARKER
from tests.e2e.conftest import FullStack, running_full_stack, sim, sim_get
from tests.support.processes import eventually, wait_http_ok

PULLS = 50
# 50 comments and 50 statuses in one installation: above the default write pace (80 a minute), which
# would make this test wait a minute for a throttle it is not about (tests/e2e/test_worker_fleet.py is).
UNTHROTTLED = {"GITHUB_WRITES_PER_MINUTE": "1000"}


@pytest.fixture
async def stack(db: asyncpg.Pool, database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[FullStack]:
    async with running_full_stack(database_url, redis_url, tmp_path, worker_env=UNTHROTTLED) as running:
        yield running


async def test_deliveries_missed_while_the_receiver_was_down_are_redelivered_once(
    stack: FullStack, db: asyncpg.Pool
) -> None:
    async with aiohttp.ClientSession() as session:
        await sim(session, stack, "/_sim/installations", {
            "id": 88, "account": {"login": "umbrella", "id": 8, "type": "Organization"},
            "repositories": [{"id": 8800, "full_name": "umbrella/app"}], "webhook": True,
        })

        async def installed() -> bool:
            async with session.get(f"{stack.backend_url}/api/v1/repos/8800/github-app-status") as resp:
                return bool((await resp.json())["installed"])

        await eventually(installed, timeout=30)
        receiver = next(p for p in stack.fleet.procs if p.name == "bot")
        receiver.kill()

        guids: list[str] = []
        for n in range(1, PULLS + 1):
            result = await sim(session, stack, "/_sim/pulls", {
                "repo": "umbrella/app", "number": n, "author": {"login": f"dev{n}", "id": 500 + n, "type": "User"},
                "author_association": "NONE", "webhook": "opened",
            })
            delivery = result["deliveries"][0]
            assert delivery["status_code"] == 0  # unreachable: lost unless redelivered
            guids.append(delivery["guid"])
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE repo_id = 8800") == 0

        bot = stack.fleet.start("bot-2", "bot", stack.env)
        await wait_http_ok(f"{stack.bot_url}/healthz", bot)
        # Two replicas with the job on: the Redis lock lets one run at a time.
        redelivery_env = {**stack.env, **UNTHROTTLED, "REDELIVERY_INTERVAL_SECONDS": "1"}
        workers = [
            stack.fleet.start(f"redelivery-{i}", "worker", {**redelivery_env, "WORKER_ID": f"redelivery-{i}"})
            for i in range(2)
        ]

        async def recorded() -> int:
            async with db.acquire() as conn:
                return int(await conn.fetchval(
                    "SELECT count(*) FROM webhook_deliveries WHERE event_name = 'pull_request' AND repo_id = 8800"
                ))

        async def all_recorded() -> bool:
            return await recorded() == PULLS

        await eventually(all_recorded, timeout=60)

        async def gate_comments() -> list[int]:
            counts = []
            for n in range(1, PULLS + 1):
                comments = await sim_get(session, stack, f"/_sim/repos/umbrella/app/pulls/{n}/comments")
                counts.append(sum(PR_MARKER in c["body"] for c in comments))
            return counts

        async def all_gated() -> bool:
            return await gate_comments() == [1] * PULLS

        await eventually(all_gated, timeout=120)

        async def redeliveries() -> Counter[str]:
            deliveries: list[dict[str, Any]] = await sim_get(session, stack, "/_sim/deliveries")
            return Counter(d["guid"] for d in deliveries if d["redelivery"])

        first = await redeliveries()
        assert first == Counter({guid: 1 for guid in guids})
        async with db.acquire() as conn:
            rows = {r["delivery_id"] for r in await conn.fetch(
                "SELECT delivery_id FROM webhook_deliveries WHERE repo_id = 8800 AND event_name = 'pull_request'"
            )}
        assert rows == set(guids)

        # Later runs find nothing to redeliver.
        def runs_with_nothing_to_do() -> int:
            return sum(w.log().count(" 0 redelivered, 0 errors") for w in workers)

        baseline = runs_with_nothing_to_do()

        async def ran_again() -> bool:
            return runs_with_nothing_to_do() >= baseline + 2

        await eventually(ran_again, timeout=30)
        await asyncio.sleep(1)
        assert await redeliveries() == first
        assert await recorded() == PULLS
        assert await gate_comments() == [1] * PULLS
