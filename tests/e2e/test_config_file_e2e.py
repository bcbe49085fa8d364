"""The repository config file through real processes: a push of `.github/prgate.yml` to the
simulator's repository changes the gate; an invalid one keeps the last valid config in force and is
reported with a failing `prgate/config` status on the pushed commit; organization defaults."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg

from tests.e2e.conftest import FullStack, sim, sim_get
from tests.e2e.test_gate_e2e import _has, expire, install, open_pr, our_comments, pr_state
from tests.support.payloads import installation_payload
from tests.support.processes import eventually


async def commit(session: aiohttp.ClientSession, stack: FullStack, repo: str, content: str | None) -> str:
    answer: dict[str, Any] = await sim(session, stack, f"/_sim/repos/{repo}/commits",
                                       {"path": ".github/prgate.yml", "content": content, "webhook": True})
    return str(answer["sha"])


async def config_status(session: aiohttp.ClientSession, stack: FullStack, repo: str, sha: str) -> str | None:
    found = [s for s in await sim_get(session, stack, f"/_sim/repos/{repo}/statuses/{sha}")
             if s["context"] == "prgate/config"]
    return str(found[0]["state"]) if found else None


async def test_a_pushed_config_file_makes_the_gate_warn_only_and_an_invalid_one_keeps_it(
    full_stack: FullStack, db: asyncpg.Pool,
) -> None:
    async with aiohttp.ClientSession() as session:
        await install(session, full_stack, 30, "cfgco", 1030, "cfgco/app")
        sha = await commit(session, full_stack, "cfgco/app", "warn_only: true\n")
        await eventually(lambda: _is(config_status(session, full_stack, "cfgco/app", sha), "success"), timeout=30)

        bad = await commit(session, full_stack, "cfgco/app", "warn_only: false\nwarn_onyl: true\n")
        await eventually(lambda: _is(config_status(session, full_stack, "cfgco/app", bad), "failure"), timeout=30)
        async with db.acquire() as conn:
            row = await conn.fetchrow("SELECT config, last_error FROM repo_config_files WHERE repo_id = 1030")
        assert row["config"] == {"warn_only": True}  # the last valid file stays in force
        assert "warn_onyl: unknown key" in row["last_error"]

        await open_pr(session, full_stack, "cfgco/app", 4, "newcomer", 503)
        await eventually(lambda: _has(our_comments(session, full_stack, "cfgco/app", 4)), timeout=30)
        await expire(db)

        async def warned() -> bool:
            bodies = await our_comments(session, full_stack, "cfgco/app", 4)
            return bool(bodies) and "deadline has passed" in bodies[0]

        await eventually(warned, timeout=30)
        assert await pr_state(session, full_stack, "cfgco/app", 4) == "open"


async def test_org_defaults_apply_to_repositories_without_a_file_and_extends_merges(
    full_stack: FullStack, db: asyncpg.Pool,
) -> None:
    async with aiohttp.ClientSession() as session:
        await sim(session, full_stack, "/_sim/installations", {
            "id": 40, "account": {"login": "orgco", "id": 400, "type": "Organization"},
            "repositories": [{"id": 1040, "full_name": "orgco/app"}, {"id": 1041, "full_name": "orgco/.github"},
                             {"id": 1042, "full_name": "orgco/lib"}],
            "webhook": True,
        })

        async def installed() -> bool:
            async with session.get(f"{full_stack.backend_url}/api/v1/repos/1042/github-app-status") as resp:
                return bool((await resp.json())["installed"])

        await eventually(installed, timeout=30)
        own = await commit(session, full_stack, "orgco/lib", "_extends: .github\ngate_drafts: true\n")
        await eventually(lambda: _is(config_status(session, full_stack, "orgco/lib", own), "failure"), timeout=30)
        org = await commit(session, full_stack, "orgco/.github", "warn_only: true\ndeadline_seconds: 3600\n")
        await eventually(lambda: _is(config_status(session, full_stack, "orgco/.github", org), "success"),
                         timeout=30)

        async def configs() -> dict[int, Any]:
            async with db.acquire() as conn:
                rows = await conn.fetch("SELECT repo_id, config FROM repo_config_files")
            return {r["repo_id"]: r["config"] for r in rows}

        async def inherited() -> bool:
            found = await configs()
            return found.get(1040) == {"warn_only": True, "deadline_seconds": 3600} and found.get(1042) == {
                "warn_only": True, "deadline_seconds": 3600, "gate_drafts": True}

        await eventually(inherited, timeout=30)


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_a_repository_installed_with_a_file_already_there_is_gated_by_it_without_any_push(
    full_stack: FullStack, db: asyncpg.Pool,
) -> None:
    """The installation event marks the repository stale; a worker's config-refresh job has the
    backend read the file; the next pull request is decided by it. No push ever happens."""
    async with aiohttp.ClientSession() as session:
        await sim(session, full_stack, "/_sim/installations", {
            "id": 60, "account": {"login": "preco", "id": 600, "type": "Organization"},
            "repositories": [{"id": 1060, "full_name": "preco/app"}], "webhook": False,
        })
        await sim(session, full_stack, "/_sim/repos/preco/app/commits", {
            "path": ".github/prgate.yml", "content": "exempt_associations: [NONE]\nexempt_comment: false\n",
            "webhook": False,
        })
        await sim(session, full_stack, "/_sim/webhooks", {"event": "installation", "payload": installation_payload(
            "created", installation_id=60, account_login="preco", account_id=600, repos=[(1060, "preco/app")])})

        async def read() -> bool:
            async with db.acquire() as conn:
                config = await conn.fetchval("SELECT config FROM repo_config_files WHERE repo_id = 1060")
                marked = await conn.fetchval("SELECT count(*) FROM repo_config_stale")
            return config == {"exempt_associations": ["NONE"], "exempt_comment": False} and marked == 0

        await eventually(read, timeout=30)
        async with db.acquire() as conn:
            pushes = await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE event_name = 'push'")
        assert pushes == 0

        await open_pr(session, full_stack, "preco/app", 1, "newcomer", 601)

        async def decided() -> str | None:
            async with db.acquire() as conn:
                return await conn.fetchval(  # type: ignore[no-any-return]
                    "SELECT decision FROM webhook_deliveries WHERE event_name = 'pull_request' AND repo_id = 1060")

        await eventually(lambda: _is(decided(), "EXEMPT"), timeout=30)
        async with session.get(f"{full_stack.backend_url}/metrics") as resp:
            assert 'backend_config_file_reads_total{result="valid",trigger="refresh"} 1.0' in await resp.text()
