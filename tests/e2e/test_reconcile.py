"""Issue #7: reconciliation repairs what missed webhooks left out of date, through real processes.

The simulator changes GitHub without sending the webhook (a repository added to the installation,
a pull request opened, an installation deleted); a worker's periodic job, or `prgate reconcile`,
compares and the backend repairs. A second run repairs nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import aiohttp
import asyncpg

from prgate.demo import PR_MARKER
from tests.e2e.conftest import FullStack, sim, sim_get
from tests.support.processes import eventually


async def _installed(session: aiohttp.ClientSession, stack: FullStack, repo_id: int) -> bool:
    async with session.get(f"{stack.backend_url}/api/v1/repos/{repo_id}/github-app-status") as resp:
        return bool((await resp.json())["installed"])


async def _install(session: aiohttp.ClientSession, stack: FullStack, installation_id: int, login: str,
                   repos: list[tuple[int, str]]) -> None:
    """Installed with its webhook delivered: the backend knows it."""
    await sim(session, stack, "/_sim/installations", {
        "id": installation_id, "account": {"login": login, "id": installation_id * 10, "type": "Organization"},
        "repositories": [{"id": rid, "full_name": name} for rid, name in repos], "webhook": True,
    })

    async def known() -> bool:
        return await _installed(session, stack, repos[0][0])

    await eventually(known, timeout=30)


async def _repairs(db: asyncpg.Pool) -> list[tuple[str, int, str | None, int | None]]:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT kind, installation_id, repo_full_name, pr_number FROM reconcile_repairs ORDER BY repair_id"
        )
    return [(r["kind"], r["installation_id"], r["repo_full_name"], r["pr_number"]) for r in rows]


async def _gate_comments(session: aiohttp.ClientSession, stack: FullStack, repo: str, number: int) -> int:
    comments = await sim_get(session, stack, f"/_sim/repos/{repo}/pulls/{number}/comments")
    return sum(PR_MARKER in c["body"] for c in comments)


async def test_the_periodic_job_repairs_drift_and_gates_a_pr_it_never_saw(full_stack: FullStack,
                                                                          db: asyncpg.Pool) -> None:
    stack = full_stack
    async with aiohttp.ClientSession() as session:
        await _install(session, stack, 91, "initech", [(9100, "initech/app")])
        # On GitHub, without webhooks: a repository joins the installation, and a first-time
        # contributor opens a pull request on it.
        await sim(session, stack, "/_sim/installations/91/repositories", {"id": 9101, "full_name": "initech/lib"})
        await sim(session, stack, "/_sim/pulls", {
            "repo": "initech/lib", "number": 1, "author": {"login": "drive-by", "id": 7001, "type": "User"},
            "author_association": "NONE",
        })
        assert not await _installed(session, stack, 9101)

        worker = stack.fleet.start("reconciler", "worker", {
            **stack.env, "WORKER_ID": "reconciler", "RECONCILE_INTERVAL_SECONDS": "1",
        })

        async def gated() -> bool:
            return await _gate_comments(session, stack, "initech/lib", 1) == 1

        await eventually(gated, timeout=60)
        assert await _installed(session, stack, 9101)
        assert await _repairs(db) == [
            ("repository_added", 91, "initech/lib", None),
            ("pull_request_evaluated", 91, "initech/lib", 1),
        ]
        head = (await sim_get(session, stack, "/_sim/repos/initech/lib/pulls/1"))["head"]["sha"]

        async def pending_status() -> bool:
            statuses = await sim_get(session, stack, f"/_sim/repos/initech/lib/statuses/{head}")
            return [s["state"] for s in statuses] == ["pending"]

        await eventually(pending_status, timeout=30)

        # Later runs find nothing to repair, and the PR keeps exactly one comment.
        async with db.acquire() as conn:
            first = int(await conn.fetchval("SELECT max(run_id) FROM reconcile_repairs"))

        async def quiet_runs() -> bool:
            async with db.acquire() as conn:
                return int(await conn.fetchval(
                    "SELECT count(*) FROM reconcile_runs WHERE run_id > $1 AND finished_at IS NOT NULL AND repairs = 0",
                    first,
                )) >= 2

        await eventually(quiet_runs, timeout=30)
        assert len(await _repairs(db)) == 2
        assert await _gate_comments(session, stack, "initech/lib", 1) == 1

        # The worker's /metrics counts the runs and the repairs.
        port = re.search(r"metrics on :(\d+)", worker.log())
        assert port is not None
        async with session.get(f"http://127.0.0.1:{port.group(1)}/metrics") as resp:
            metrics = await resp.text()
        assert 'reconcile_repairs_total{kind="repository_added"} 1.0' in metrics
        assert 'reconcile_repairs_total{kind="pull_request_evaluated"} 1.0' in metrics
        ok_runs = re.search(r'^reconcile_runs_total\{result="ok"\} ([\d.]+)$', metrics, re.MULTILINE)
        assert ok_runs is not None, metrics
        assert float(ok_runs.group(1)) >= 3


def _cli(stack: FullStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prgate.cli", "reconcile", *args], env={**os.environ, **stack.env, "LOG_LEVEL": "ERROR"},
        capture_output=True, text=True, timeout=60,
    )


async def test_prgate_reconcile_prints_its_repairs_and_a_second_run_repairs_nothing(full_stack: FullStack,
                                                                                    db: asyncpg.Pool) -> None:
    stack = full_stack
    async with aiohttp.ClientSession() as session:
        await _install(session, stack, 92, "hooli", [(9200, "hooli/app")])
        await _install(session, stack, 93, "piedpiper", [(9300, "piedpiper/app")])
        # Without webhooks: a repository added to hooli, a PR opened on it, piedpiper uninstalled.
        await sim(session, stack, "/_sim/installations/92/repositories", {"id": 9201, "full_name": "hooli/nucleus"})
        await sim(session, stack, "/_sim/pulls", {
            "repo": "hooli/app", "number": 5, "author": {"login": "gavin", "id": 7002, "type": "User"},
            "author_association": "NONE",
        })
        async with session.delete(f"{stack.simulator_url}/_sim/installations/93", json={}) as resp:
            assert resp.status == 200, await resp.text()

        # Limited to one installation: only hooli is looked at.
        scoped = await asyncio.to_thread(_cli, stack, "--installation", "92")
        assert scoped.returncode == 0, scoped.stdout + scoped.stderr
        out = scoped.stdout
        assert out.startswith("reconciliation run "), out
        assert "(installation 92): 2 repairs, 0 errors" in out
        assert re.search(r"repository_added +installation 92 hooli/nucleus: listed by GitHub", out), out
        assert re.search(r"pull_request_evaluated +installation 92 hooli/app#5: opened while prgate was away: GATE",
                         out), out
        assert "piedpiper" not in out

        everything = await asyncio.to_thread(_cli, stack)
        assert everything.returncode == 0, everything.stdout + everything.stderr
        assert "(every installation): 1 repair, 0 errors" in everything.stdout
        assert re.search(r"installation_deleted +installation 93: piedpiper", everything.stdout), everything.stdout

        again = await asyncio.to_thread(_cli, stack)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "0 repairs, 0 errors" in again.stdout
        assert "nothing to repair" in again.stdout

        async def gated() -> bool:
            return await _gate_comments(session, stack, "hooli/app", 5) == 1

        await eventually(gated, timeout=30)
        async with session.get(f"{stack.backend_url}/api/v1/repos/9300/github-app-status") as resp:
            assert (await resp.json())["installed"] is False
        async with db.acquire() as conn:
            assert await conn.fetchval(
                "SELECT i.status FROM github_installations i JOIN github_installation_repositories r "
                "USING (installation_id) WHERE r.repo_id = 9300") == "DELETED"
            runs = await conn.fetch("SELECT trigger, installation_id, repairs FROM reconcile_runs ORDER BY run_id")
        assert [(r["trigger"], r["installation_id"], r["repairs"]) for r in runs] == [
            ("cli", 92, 2), ("cli", None, 1), ("cli", None, 0),
        ]
        await asyncio.sleep(1)  # the single comment stays single
        assert await _gate_comments(session, stack, "hooli/app", 5) == 1
