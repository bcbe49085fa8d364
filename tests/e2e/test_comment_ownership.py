"""docs/security.md, "Gate bypass through a foreign comment": a comment carrying prgate's marker that another bot or
App wrote decides
nothing. Real processes (backend, receiver, two workers) against the simulator server."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg

from backend_api.challenges import messages
from tests.e2e.conftest import FullStack, sim, sim_get
from tests.e2e.test_gate_e2e import HEAD, expire, install, pr_state
from tests.e2e.test_worker_fleet import worker_metric
from tests.support.processes import eventually

MARKER = messages.PR_COMMENT_MARKER
REPO, REPO_ID, NUMBER = "acme/app", 1010, 1


async def comments(session: aiohttp.ClientSession, stack: FullStack) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await sim_get(session, stack, f"/_sim/repos/{REPO}/pulls/{NUMBER}/comments")
    return found


async def ours(session: aiohttp.ClientSession, stack: FullStack) -> list[dict[str, Any]]:
    return [c for c in await comments(session, stack)
            if c["user"]["login"] == "prgate[bot]" and MARKER in c["body"]]


async def requests(session: aiohttp.ClientSession, stack: FullStack, method: str, path_regex: str) -> list[Any]:
    async with session.get(f"{stack.simulator_url}/_sim/requests",
                           params={"method": method, "path_regex": path_regex}) as resp:
        assert resp.status == 200
        return list((await resp.json())["requests"])


async def test_a_foreign_comment_with_the_marker_neither_blocks_the_gate_nor_is_edited(
    full_stack: FullStack, db: asyncpg.Pool
) -> None:
    async with aiohttp.ClientSession() as session:
        await install(session, full_stack, 10, "acme", REPO_ID, REPO)
        author = {"login": "newcomer", "id": 501, "type": "User"}
        pr = {"repo": REPO, "number": NUMBER, "author": author, "author_association": "NONE", "head_sha": HEAD}
        await sim(session, full_stack, "/_sim/pulls", pr)  # no webhook yet
        # Before prgate comments: a second prgate-like App and a CI bot echo text with our marker.
        echoed = f"{MARKER}\nquoted from the PR description"
        other_app = await sim(session, full_stack, f"/_sim/repos/{REPO}/pulls/{NUMBER}/comments",
                              {"body": echoed, "app": {"id": 777, "slug": "other-gate"}})
        ci_bot = await sim(session, full_stack, f"/_sim/repos/{REPO}/pulls/{NUMBER}/comments",
                           {"body": echoed, "user": {"login": "ci-helper[bot]", "id": 8801, "type": "Bot"}})
        await sim(session, full_stack, "/_sim/pulls", {**pr, "webhook": "opened"})

        async def gated() -> bool:
            return len(await ours(session, full_stack)) == 1

        await eventually(gated, timeout=30)

        async def settled() -> bool:
            async with db.acquire() as conn:
                open_actions = await conn.fetchval(
                    "SELECT count(*) FROM bot_actions WHERE status IN ('PENDING', 'CLAIMED')")
                stored = await conn.fetchval("SELECT comment_id FROM pr_comments WHERE repo_id = $1", REPO_ID)
            return open_actions == 0 and stored is not None

        await eventually(settled, timeout=30)
        [gate] = await ours(session, full_stack)
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT comment_id FROM pr_comments WHERE repo_id = $1", REPO_ID) == gate["id"]
            assert await conn.fetchval("SELECT count(*) FROM bot_actions WHERE status = 'FAILED'") == 0
        async with session.delete(f"{full_stack.simulator_url}/_sim/requests") as resp:
            assert resp.status in (200, 204)

        # The deadline passes: the close edits our comment by its stored id and closes the PR.
        await expire(db)

        async def closed() -> bool:
            return await pr_state(session, full_stack, REPO, NUMBER) == "closed"

        await eventually(closed, timeout=30)
        [timeout_comment] = await ours(session, full_stack)
        assert timeout_comment["id"] == gate["id"]
        assert "was closed because contributor verification was not completed" in timeout_comment["body"]
        by_id = {c["id"]: c for c in await comments(session, full_stack)}
        assert by_id[other_app["id"]]["body"] == echoed  # untouched
        assert by_id[ci_bot["id"]]["body"] == echoed
        assert len(by_id) == 3
        # Edited directly: no listing of the PR's comments, one PATCH of ours, none of theirs.
        assert await requests(session, full_stack, "GET", rf"/issues/{NUMBER}/comments$") == []
        patched = await requests(session, full_stack, "PATCH", r"/issues/comments/\d+$")
        assert [p["path"].rsplit("/", 1)[1] for p in patched] == [str(gate["id"])]
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM bot_actions WHERE status = 'FAILED'") == 0
        # The foreign comments were seen (on the first, searched write) and counted.
        workers = [p for p in full_stack.fleet.procs if p.name.startswith("worker-")]
        assert sum([await worker_metric(p, "foreign_marker_comments_total") for p in workers]) >= 2
