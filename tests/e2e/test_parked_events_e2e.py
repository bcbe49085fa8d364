"""docs/security.md, "A pull request that arrives before its installation is never gated", through real processes: a
pull request that reaches prgate before its
installation is gated once the installation arrives (here through the redelivery job, as after a
receiver outage); one for an installation that never comes waits, bounded, and expires."""

from __future__ import annotations

import re

import aiohttp
import asyncpg

from tests.e2e.conftest import FullStack, sim
from tests.e2e.test_gate_e2e import open_pr, our_comments, statuses
from tests.support.processes import eventually, wait_http_ok


async def _delivery_status(db: asyncpg.Pool, repo_id: int, number_of: int) -> list[str]:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT status FROM webhook_deliveries WHERE event_name = 'pull_request' AND repo_id = $1"
            " ORDER BY received_at", repo_id,
        )
    assert len(rows) <= number_of
    return [r["status"] for r in rows]


def _sample(metrics: str, outcome: str) -> float:
    match = re.search(rf'^backend_parked_events_total{{outcome="{outcome}"}} (\S+)$', metrics, re.M)
    assert match, metrics
    return float(match.group(1))


async def _backend_metrics(session: aiohttp.ClientSession, stack: FullStack) -> str:
    async with session.get(f"{stack.backend_url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def test_pull_request_before_its_installation_is_gated_and_after_it_as_before(
    full_stack: FullStack, db: asyncpg.Pool
) -> None:
    stack = full_stack
    async with aiohttp.ClientSession() as session:
        # The App is installed while the receiver is down: installation.created fails at GitHub.
        receiver = next(p for p in stack.fleet.procs if p.name == "bot")
        receiver.kill()
        created = await sim(session, stack, "/_sim/installations", {
            "id": 91, "account": {"login": "early", "id": 910, "type": "Organization"},
            "repositories": [{"id": 9100, "full_name": "early/app"}], "webhook": True,
        })
        assert created["deliveries"][0]["status_code"] == 0
        bot = stack.fleet.start("bot-2", "bot", stack.env)
        await wait_http_ok(f"{stack.bot_url}/healthz", bot)

        # The receiver is back; a PR is opened before the redelivery job has replayed the installation.
        await open_pr(session, stack, "early/app", 1, "newcomer", 601)

        async def parked() -> bool:
            return await _delivery_status(db, 9100, 1) == ["PARKED"]

        await eventually(parked, timeout=30)
        assert await our_comments(session, stack, "early/app", 1) == []

        # The redelivery job brings installation.created: the parked PR is decided and gated.
        stack.fleet.start("redelivery", "worker", {**stack.env, "REDELIVERY_INTERVAL_SECONDS": "1",
                                                   "WORKER_ID": "redelivery"})

        async def gated() -> bool:
            return len(await our_comments(session, stack, "early/app", 1)) == 1

        await eventually(gated, timeout=60)
        async with db.acquire() as conn:
            assert await conn.fetchval(
                "SELECT count(*) FROM challenges WHERE repo_id = 9100 AND pr_number = 1 AND status = 'PENDING'"
            ) == 1
            assert await conn.fetchval("SELECT count(*) FROM parked_pull_request_events") == 0
        assert await _delivery_status(db, 9100, 1) == ["ACCEPTED"]

        async def pending_status() -> bool:
            return (await statuses(session, stack, "early/app"))[:1] == ["pending"]

        await eventually(pending_status, timeout=30)

        # Installation first, then the PR: gated at once, as it always was.
        await open_pr(session, stack, "early/app", 2, "another", 602)

        async def second_gated() -> bool:
            return len(await our_comments(session, stack, "early/app", 2)) == 1

        await eventually(second_gated, timeout=30)
        metrics = await _backend_metrics(session, stack)
        assert (_sample(metrics, "parked"), _sample(metrics, "replayed")) == (1.0, 1.0)


async def test_events_for_an_installation_that_never_comes_are_bounded_and_expire(
    full_stack: FullStack, db: asyncpg.Pool
) -> None:
    stack = full_stack
    stack.backend.kill()
    stack.env = {**stack.env, "PARKED_EVENTS_PER_INSTALLATION_MAX": "1"}
    await stack.restart_backend()
    async with aiohttp.ClientSession() as session:
        # GitHub knows the installation; prgate never hears of it (no webhook, ever).
        await sim(session, stack, "/_sim/installations", {
            "id": 93, "account": {"login": "never", "id": 930, "type": "Organization"},
            "repositories": [{"id": 9300, "full_name": "never/app"}], "webhook": False,
        })
        first = await sim(session, stack, "/_sim/pulls", {
            "repo": "never/app", "number": 1, "author": {"login": "newcomer", "id": 603, "type": "User"},
            "author_association": "NONE", "webhook": "opened",
        })
        second = await sim(session, stack, "/_sim/pulls", {
            "repo": "never/app", "number": 2, "author": {"login": "newcomer", "id": 603, "type": "User"},
            "author_association": "NONE", "webhook": "opened",
        })
        # Both answered 2xx to GitHub: the dropped one is recorded and counted, never a 5xx.
        assert all(
            200 <= d["status_code"] < 300 for d in first["deliveries"] + second["deliveries"]
        )
        assert await _delivery_status(db, 9300, 2) == ["PARKED", "DROPPED"]
        metrics = await _backend_metrics(session, stack)
        assert (_sample(metrics, "parked"), _sample(metrics, "dropped")) == (1.0, 1.0)

        # Three days later (the database clock is the edge tests control) the sweeper expires it.
        async with db.acquire() as conn:
            await conn.execute("UPDATE parked_pull_request_events SET received_at = now() - interval '3 days 1 s'")

        async def expired() -> bool:
            return _sample(await _backend_metrics(session, stack), "expired") == 1.0

        await eventually(expired, timeout=30)
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM parked_pull_request_events") == 0
        assert await _delivery_status(db, 9300, 2) == ["IGNORED", "DROPPED"]
        assert await our_comments(session, stack, "never/app", 1) == []
