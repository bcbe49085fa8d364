"""Several real worker processes against a real backend process and the GitHub simulator.

The simulator's own records are the witness: every action's effect exactly once, none lost.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from prgate.simulator import FaultConfig, FaultProfile
from tests.conftest import INTERNAL_ENV
from tests.support.github_sim import APP_ID, Simulator, app_keys
from tests.support.outbox import seed_actions
from tests.support.processes import Fleet, Proc, eventually, free_port, wait_http_ok

MARKER = "<!-- m -->"


@dataclass
class Stack:
    fleet: Fleet
    backend_url: str
    worker_env: dict[str, str]

    def start_worker(self, name: str, **extra: str) -> None:
        self.fleet.start(name, "worker", {**self.worker_env, "WORKER_ID": name, **extra})


@pytest.fixture
async def stack(
    db: asyncpg.Pool, database_url: str, redis_url: str, simulator: Simulator
) -> AsyncIterator[Stack]:
    fleet = Fleet()
    port = free_port()
    backend = fleet.start(
        "backend", "backend",
        {"DATABASE_URL": database_url, "BACKEND_PORT": str(port), "BACKEND_HOST": "127.0.0.1",
         **INTERNAL_ENV, "SWEEP_INTERVAL_SECONDS": "1"},
    )
    backend_url = f"http://127.0.0.1:{port}"
    try:
        await wait_http_ok(f"{backend_url}/readyz", backend)
        worker_env = {
            "BACKEND_URL": backend_url, **INTERNAL_ENV, "REDIS_URL": redis_url,
            "GITHUB_API_URL": simulator.url, "GITHUB_APP_ID": str(APP_ID),
            "GITHUB_PRIVATE_KEY": app_keys().private_pem, "WORKER_METRICS_PORT": "0", "BOT_HOST": "127.0.0.1",
            "ARQ_QUEUE_NAME": f"prgate-test-{uuid.uuid4().hex}", "GITHUB_WRITES_PER_MINUTE": "100000",
            "WORKER_CLAIM_WAIT_SECONDS": "2", "WORKER_SHUTDOWN_GRACE_SECONDS": "5",
        }
        yield Stack(fleet, backend_url, worker_env)
    except BaseException:
        print(fleet.logs())
        raise
    finally:
        fleet.stop_all()


async def install(db: asyncpg.Pool, simulator: Simulator, installations: int, prs_per_repo: int) -> list[str]:
    """One repo per installation, in the database and in the simulator, with its open PRs."""
    repos = []
    async with db.acquire() as conn:
        for i in range(installations):
            inst, repo_id, repo = 3000 + i, 8000 + i, f"tenant{i}/repo"
            await conn.execute(
                """INSERT INTO github_installations (installation_id, account_id, account_login, account_type,
                                                     repository_selection, status)
                   VALUES ($1, $1, $2, 'Organization', 'selected', 'ACTIVE')""",
                inst, f"tenant{i}",
            )
            simulator.state.add_installation(inst, f"tenant{i}")
            simulator.state.add_repository(inst, repo_id, repo)
            for n in range(1, prs_per_repo + 1):
                simulator.state.upsert_pull_request(repo, n, author_login="newcomer", author_id=9001)
            repos.append(repo)
    # The fleet runs far past GitHub's 80 writes/minute here; the throttle is tested on its own.
    simulator.state.faults.configure(FaultConfig(content_throttle=False))
    return repos


async def worker_metric(proc: Proc, name: str, **labels: str) -> float:
    """One sample from a worker's /metrics (the port is in its start-up log line)."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    port = proc.log().split('metrics on :')[1].split('"')[0]
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def all_finished(db: asyncpg.Pool) -> bool:
    async with db.acquire() as conn:
        return bool(await conn.fetchval("SELECT count(*) = 0 FROM bot_actions WHERE status IN ('PENDING','CLAIMED')"))


def assert_one_comment_per_pr_with_last_body(
    simulator: Simulator, repo: str, prs: int, expected: dict[int, str]
) -> None:
    for number in range(1, prs + 1):
        ours = [c.body for c in simulator.state.comments_for(repo, number) if MARKER in c.body]
        assert ours == [expected[number]], (repo, number, ours)


async def test_three_worker_processes_drain_2000_actions_each_effect_exactly_once(
    stack: Stack, db: asyncpg.Pool, simulator: Simulator
) -> None:
    repos = await install(db, simulator, installations=4, prs_per_repo=125)
    expected: dict[str, dict[int, str]] = {}
    for i, repo in enumerate(repos):
        # 500 actions per repo over 125 PRs: four successive bodies per PR, which must land in order.
        ids = await seed_actions(db, 500, installation_id=3000 + i, prs=125, repo=repo, repo_id=8000 + i)
        assert len(ids) == 500
        expected[repo] = {1 + (g % 125): f"{MARKER}\nbody {g}" for g in range(500)}
    for n in range(3):
        stack.start_worker(f"w{n}")
    await eventually(lambda: all_finished(db), timeout=240)
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM bot_actions GROUP BY 1")
        done_by = await conn.fetch(
            "SELECT DISTINCT split_part(last_error, ' ', 1) FROM bot_actions WHERE status <> 'DONE'"
        )
    assert [(r["status"], r["n"]) for r in rows] == [("DONE", 2000)], (rows, done_by)
    for repo in repos:
        assert_one_comment_per_pr_with_last_body(simulator, repo, 125, expected[repo])
    # Exactly one create per PR ever reached GitHub: nothing was written twice.
    creates = [r for r in simulator.state.request_log if r.method == "POST" and r.path.endswith("/comments")]
    assert len(creates) == 4 * 125
    # The work really was shared by the replicas.
    done_per_worker = {p.name: p.log().count('"msg": "action done"') for p in stack.fleet.procs[1:]}
    assert set(done_per_worker) == {"w0", "w1", "w2"}
    assert all(n > 0 for n in done_per_worker.values()), done_per_worker
    assert sum(done_per_worker.values()) == 2000
    # Each replica's /metrics agrees with what it did.
    for proc in stack.fleet.procs[1:]:
        executed = await worker_metric(proc, "actions_executed_total",
                                       action_type="UPSERT_PR_COMMENT", outcome="SUCCEEDED")
        assert executed == done_per_worker[proc.name]
    # No key or installation token ever reaches a log line.
    secrets = [t for t in simulator.state.tokens] + [
        line for line in app_keys().private_pem.splitlines() if "PRIVATE KEY" not in line
    ]
    assert len(simulator.state.tokens) >= 4
    for proc in stack.fleet.procs:
        log_text = proc.log()
        assert not [s for s in secrets if s in log_text], proc.name


# A short lease so orphans are taken over quickly; half of it still holds one write's worst case
# (PROVIDER_TIMEOUT_SECONDS) plus the report margin, as the worker requires at start-up.
SHORT_LEASE = {"WORKER_LEASE_SECONDS": "6", "PROVIDER_TIMEOUT_SECONDS": "2", "WORKER_REPORT_MARGIN_SECONDS": "1"}


async def test_sigkilled_worker_loses_nothing_and_duplicates_nothing(
    stack: Stack, db: asyncpg.Pool, simulator: Simulator
) -> None:
    [repo] = await install(db, simulator, installations=1, prs_per_repo=60)
    await seed_actions(db, 60, installation_id=3000, prs=60, repo=repo, repo_id=8000)
    # Slow GitHub down so the victim is holding leases when it dies.
    simulator.state.faults.configure(
        FaultConfig(content_throttle=False, default=FaultProfile(latency_ms=400))
    )
    stack.start_worker("victim", WORKER_CONCURRENCY="30", **SHORT_LEASE)
    victim = stack.fleet.procs[-1]

    async def victim_holds_leases() -> bool:
        async with db.acquire() as conn:
            return bool(await conn.fetchval(
                "SELECT count(*) >= 10 FROM bot_actions WHERE status = 'CLAIMED' AND lease_owner = 'victim'"
            ))

    await eventually(victim_holds_leases, timeout=60, interval=0.05)
    victim.kill()
    async with db.acquire() as conn:
        orphaned = await conn.fetchval("SELECT count(*) FROM bot_actions WHERE lease_owner = 'victim'")
    assert orphaned >= 10
    # A fresh replica with empty local state picks everything up after the leases expire.
    stack.start_worker("rescuer", WORKER_CONCURRENCY="30", **SHORT_LEASE)
    await eventually(lambda: all_finished(db), timeout=120)
    async with db.acquire() as conn:
        statuses = await conn.fetch("SELECT status, count(*) AS n FROM bot_actions GROUP BY 1")
        reclaimed = await conn.fetchval("SELECT count(*) FROM bot_actions WHERE attempt >= 2")
    assert [(r["status"], r["n"]) for r in statuses] == [("DONE", 60)]
    assert reclaimed >= 1  # some actions really were taken over after their lease expired
    expected = {1 + g: f"{MARKER}\nbody {g}" for g in range(60)}
    assert_one_comment_per_pr_with_last_body(simulator, repo, 60, expected)


async def test_sigterm_finishes_in_flight_work_and_exits_cleanly(
    stack: Stack, db: asyncpg.Pool, simulator: Simulator
) -> None:
    [repo] = await install(db, simulator, installations=1, prs_per_repo=20)
    await seed_actions(db, 20, installation_id=3000, prs=20, repo=repo, repo_id=8000)
    simulator.state.faults.configure(FaultConfig(content_throttle=False, default=FaultProfile(latency_ms=300)))
    stack.start_worker("graceful", WORKER_CONCURRENCY="20")
    worker = stack.fleet.procs[-1]

    async def busy() -> bool:
        async with db.acquire() as conn:
            return bool(await conn.fetchval("SELECT count(*) > 0 FROM bot_actions WHERE status = 'CLAIMED'"))

    await eventually(busy, timeout=60, interval=0.05)
    assert worker.terminate(timeout=30) == 0
    async with db.acquire() as conn:
        leased = await conn.fetchval("SELECT count(*) FROM bot_actions WHERE status = 'CLAIMED'")
    assert leased == 0, worker.log()[-3000:]  # nothing left holding a lease: finished or handed back


async def test_a_throttled_installation_holds_no_worker_slot(
    stack: Stack, db: asyncpg.Pool, simulator: Simulator
) -> None:
    """docs/security.md, "Throttled tenants in shared slots, expired leases of a deleted installation": over its write
    budget, a tenant's action goes back with retry_after at
    once instead of sleeping in a worker slot; another tenant's action runs meanwhile."""
    base = 60_000 + uuid.uuid4().int % 10_000 * 2  # fresh ids: the throttle's Redis keys are per installation
    repos = []
    async with db.acquire() as conn:
        for inst in (base, base + 1):
            repo = f"tenant{inst}/repo"
            await conn.execute(
                """INSERT INTO github_installations (installation_id, account_id, account_login, account_type,
                                                     repository_selection, status)
                   VALUES ($1, $1, $2, 'Organization', 'selected', 'ACTIVE')""",
                inst, f"tenant{inst}",
            )
            simulator.state.add_installation(inst, f"tenant{inst}")
            simulator.state.add_repository(inst, inst, repo)
            for n in (1, 2):
                simulator.state.upsert_pull_request(repo, n, author_login="newcomer", author_id=9001)
            repos.append(repo)
    simulator.state.faults.configure(FaultConfig(content_throttle=False))
    # Claimed in this order by a worker with a single slot: tenant A's budget (1 write a minute)
    # covers its first action only; the lease (120 s) would have let the old worker sleep ~60 s in it.
    first, throttled = await seed_actions(db, 2, installation_id=base, prs=2, repo=repos[0], repo_id=base)
    [other] = await seed_actions(db, 1, installation_id=base + 1, prs=1, repo=repos[1], repo_id=base + 1)
    stack.start_worker("solo", WORKER_CONCURRENCY="1", GITHUB_WRITES_PER_MINUTE="1", WORKER_LEASE_SECONDS="120")

    async def other_done() -> bool:
        async with db.acquire() as conn:
            return bool(await conn.fetchval("SELECT status = 'DONE' FROM bot_actions WHERE action_id = $1", other))

    await eventually(other_done, timeout=30)
    async with db.acquire() as conn:
        rows = {r["action_id"]: r for r in await conn.fetch(
            "SELECT action_id, status, attempt, last_error, next_attempt_at - now() AS wait FROM bot_actions")}
    assert rows[first]["status"] == "DONE"
    parked = rows[throttled]
    assert (parked["status"], parked["attempt"]) == ("PENDING", 1)
    assert "write throttle" in parked["last_error"]
    assert parked["wait"].total_seconds() > 20  # scheduled by the throttle's retry_after, not the backoff
    assert len(simulator.state.comments_for(repos[1], 1)) == 1
    assert simulator.state.comments_for(repos[0], 2) == []
