"""The whole stack as real processes: simulator → receiver → backend → workers → simulator."""

from __future__ import annotations

import aiohttp
import asyncpg

from backend_api.challenges import messages
from prgate.demo import PR_MARKER, Demo
from tests.e2e.conftest import FullStack
from tests.support.processes import eventually


async def test_demo_scenario_through_real_processes(full_stack: FullStack, db: asyncpg.Pool) -> None:
    lines: list[str] = []
    async with aiohttp.ClientSession() as session:
        await Demo(session, full_stack.simulator_url, full_stack.backend_url, lines.append).run()
        comments = await (await session.get(
            f"{full_stack.simulator_url}/_sim/repos/demo-org/widgets/pulls/1/comments"
        )).json()
    assert [c["user"]["type"] for c in comments] == ["Bot"]  # one comment, edited in place
    assert comments[0]["body"] == messages.verified_comment("first-timer")
    async def decisions_so_far() -> list[tuple[str, str | None]]:
        async with db.acquire() as conn:
            return [tuple(r) for r in await conn.fetch(  # type: ignore[misc]
                "SELECT action, decision FROM webhook_deliveries WHERE event_name = 'pull_request'"
                " ORDER BY received_at"
            )]

    async def close_webhook_arrived() -> bool:
        return len(await decisions_so_far()) == 4

    await eventually(close_webhook_arrived, timeout=30)
    decisions = await decisions_so_far()
    # #1 gated (then verified), #2 exempt, #3 gated, then prgate's own close arrives as a webhook.
    assert decisions == [("opened", "GATE"), ("opened", "EXEMPT"), ("opened", "GATE"), ("closed", None)]
    async with db.acquire() as conn:
        statuses = [r["status"] for r in await conn.fetch("SELECT status FROM challenges ORDER BY challenge_id")]
        assert statuses == ["VERIFIED", "TIMED_OUT"]
        assert await conn.fetchval("SELECT deadline_seconds FROM repo_settings WHERE repo_id = 1001") == 10
        assert await conn.fetchval("SELECT login FROM contributors") == "first-timer"
    assert any("installed=False" in line for line in lines)


async def test_deliveries_parked_while_backend_is_down_are_processed_once_by_the_worker_fleet(
    full_stack: FullStack, db: asyncpg.Pool
) -> None:
    async with aiohttp.ClientSession() as session:
        async def sim(path: str, body: dict[str, object]) -> dict[str, object]:
            async with session.post(f"{full_stack.simulator_url}{path}", json=body) as resp:
                assert resp.status in (200, 201), await resp.text()
                result: dict[str, object] = await resp.json()
                return result

        await sim("/_sim/installations", {
            "id": 77, "account": {"login": "acme", "id": 7, "type": "Organization"},
            "repositories": [{"id": 7700, "full_name": "acme/app"}], "webhook": True,
        })

        async def installed() -> bool:
            async with session.get(f"{full_stack.backend_url}/api/v1/repos/7700/github-app-status") as resp:
                return bool((await resp.json())["installed"])

        await eventually(installed, timeout=30)
        full_stack.backend.kill()
        statuses = []
        for n in range(1, 21):
            result = await sim("/_sim/pulls", {
                "repo": "acme/app", "number": n, "author": {"login": f"dev{n}", "id": 100 + n, "type": "User"},
                "author_association": "NONE", "webhook": "opened",
            })
            statuses.append(result["deliveries"][0]["status_code"])  # type: ignore[index]
        assert statuses == [202] * 20  # parked on Redis, not lost
        await full_stack.restart_backend()

        async def all_gated() -> bool:
            counts = []
            for n in range(1, 21):
                async with session.get(f"{full_stack.simulator_url}/_sim/repos/acme/app/pulls/{n}/comments") as r:
                    counts.append(sum(PR_MARKER in c["body"] for c in await r.json()))
            return counts == [1] * 20

        await eventually(all_gated, timeout=120)

    async def all_done() -> bool:  # the statuses follow the comments, per PR
        async with db.acquire() as conn:
            return bool(await conn.fetchval(
                "SELECT count(*) = 0 FROM bot_actions WHERE status IN ('PENDING', 'CLAIMED')"
            ))

    await eventually(all_done, timeout=60)
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE event_name = 'pull_request'") == 20
        assert await conn.fetchval("SELECT count(*) FROM challenges WHERE status = 'PENDING'") == 20
        kinds = dict(await conn.fetch(
            "SELECT action_type, count(*) FROM bot_actions WHERE status = 'DONE' GROUP BY 1"
        ))
    assert kinds == {"UPSERT_PR_COMMENT": 20, "SET_COMMIT_STATUS": 20}


async def test_a_replay_on_kept_data_opens_the_next_pull_requests_with_new_contributors(
    full_stack: FullStack, db: asyncpg.Pool
) -> None:
    """`prgate up` keeps the demo's data: its second play must not land on #1-#3 or on contributors
    the first one verified, and must not inherit the 10 s deadline the first one set."""
    lines: list[str] = []
    async with aiohttp.ClientSession() as session:
        await Demo(session, full_stack.simulator_url, full_stack.backend_url, lines.append).run()
        await Demo(session, full_stack.simulator_url, full_stack.backend_url, lines.append, play=1).run()
        comments = await (await session.get(
            f"{full_stack.simulator_url}/_sim/repos/demo-org/widgets/pulls/4/comments"
        )).json()
        # The page the demo's last line points at, as a browser gets it from the `prgate simulator` process.
        async with session.get(f"{full_stack.simulator_url}/demo-org/widgets/pull/6") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            page = await resp.text()
        async with session.get(f"{full_stack.simulator_url}/demo-org") as resp:
            org_page = await resp.text()
    assert [c["body"] for c in comments] == [messages.verified_comment("first-timer-2")]
    assert '<span class="state closed">closed</span>' in page
    assert '<a href="/slow-poke-2">slow-poke-2</a>' in page
    assert page.count("<div class=comment id=issuecomment-") == 1  # prgate's one comment, edited in place
    assert "</td><td>prgate</td>" in page  # the gate's commit status on the head commit
    assert '<a href="/demo-org/widgets">demo-org/widgets</a>' in org_page
    assert any("#4-#6" in line for line in lines), lines
    async with db.acquire() as conn:
        challenges = [tuple(r) for r in await conn.fetch(
            "SELECT pr_number, status FROM challenges ORDER BY challenge_id")]
        assert challenges == [(1, "VERIFIED"), (3, "TIMED_OUT"), (4, "VERIFIED"), (6, "TIMED_OUT")]
        assert sorted(r["login"] for r in await conn.fetch("SELECT login FROM contributors")) == [
            "first-timer", "first-timer-2"]
        assert await conn.fetchval("SELECT deadline_seconds FROM repo_settings WHERE repo_id = 1001") == 10
