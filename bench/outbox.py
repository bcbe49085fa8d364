"""Outbox throughput beside its peers: no-op actions through prgate, procrastinate, arq and the raw SQL floor.

    .venv/bin/python -m bench.outbox                       # 1, 4 and 16 workers, 5,000 jobs per cell
    .venv/bin/python -m bench.outbox --quick               # 1 and 4 workers, 1,000 jobs: about a minute
    .venv/bin/python -m bench.outbox --write-docs          # also rewrite its section of docs/benchmarks.md
    .venv/bin/python -m bench.outbox --workers 1,4 --jobs 2000 --wait-quiet 600 --retries 2

For every worker count W, each system processes the same N no-op jobs with W worker processes
of the same concurrency C (prgate's WORKER_CONCURRENCY default unless --concurrency says otherwise),
all on this machine, on the PostgreSQL and Redis the tests would use:

* prgate: one `python -m prgate.cli backend` process on a fresh migrated database (as bench.claim
  starts it) and W processes `python -m bench.peers.prgate_noop`, each running the real
  `ClaimLoop` with the real signed `BackendClient` and an executor that succeeds at once, with the
  worker's default lease and long-poll wait. N PENDING actions (one PR each, so per-PR ordering
  does not serialize them) are seeded before the workers start.
* procrastinate: its own database with its schema; N jobs deferred in bulk beforehand; W processes
  `python -m bench.peers.procrastinate_noop` running `App.run_worker_async(concurrency=C)`.
* arq: N jobs enqueued beforehand on a queue whose name is unique to the run (only its keys are
  deleted afterwards); W processes `python -m bench.peers.arq_noop` (`Worker(burst=True,
  max_jobs=C)`), once with arq's default poll_delay and once with 0.01 s.
* raw floor: `backend_api.store.outbox.claim` / `apply_result` straight through asyncpg from this
  process: W claim loops, each claiming up to C actions per statement on its own connection and
  applying that claim's results concurrently (one statement and commit each) through a pool of
  min(W x C, DB_POOL_MAX) connections, the most the backend itself could use; and, when the store
  has `apply_results`, W loops applying each claim's results in one batch statement. (bench.claim's
  raw claimers apply results one at a time per connection: at 1 connection that is commit-latency
  bound, slower than prgate itself, so no floor for a worker with 16 actions in flight.)

Every worker process does its start-up (imports, connections) first and says it is ready; the clock
starts when all are told to go at once and stops when the queue has no job left that is not done
(polled every 50 ms: bot_actions / procrastinate_jobs in PostgreSQL, the arq queue's ZCARD in Redis).
CPU comes from /proc for every process involved. Nothing is asserted: the goal is reported as met or
not met. Every process started is killed at the end, also on Ctrl-C / SIGTERM (and by
PR_SET_PDEATHSIG if this process is killed), and the databases are dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

from backend_api.store import outbox
from bench.harness import cli
from bench.harness.backend import (
    DB_POOL_MAX,
    LEASE_SECONDS,
    Backend,
    Tally,
    backend_process,
    insert_installation,
    reset_and_seed,
    warm_up,
)
from bench.harness.cpu import GroupMeter, GroupSample, redis_server_pid
from bench.harness.db import (
    BenchDatabase,
    bench_database,
    create_database,
    drop_database,
    init_connection,
    postgres_pids,
)
from bench.harness.quiet import QUIET_LOAD, least_disturbed, wait_quiet
from bench.harness.report import git_state, load_average, machine_line, markdown_table
from bench.harness.stack import Stack, StackProcess
from bench.peers import arq_noop as arq_noop_peer
from bot_worker.settings import BotSettings
from shared_contracts.actions import Outcome
from tests.support.services import postgres_admin_url, redis_base_url

PRGATE = "prgate"
PROCRASTINATE = "procrastinate"
ARQ_DEFAULT = "arq"
ARQ_FAST = "arq-fast"
RAW = "raw"
RAW_BATCH = "raw-batch"
SYSTEM_ORDER = (PRGATE, PROCRASTINATE, ARQ_DEFAULT, ARQ_FAST, RAW, RAW_BATCH)
PEERS = (PROCRASTINATE, ARQ_DEFAULT, ARQ_FAST)
ARQ_FAST_POLL_DELAY = 0.01
POLL_SECONDS = 0.05  # how often the queue is checked for completion
GOAL_WORKERS = 4
GOAL_RATE = 2_000.0
# As bench.claim: a cell during which other processes used more than this much of a core is measured
# again (up to --retries times) and the least disturbed run is kept, marked `~` if still above it.
MAX_OTHER_LOAD = QUIET_LOAD


def _default(name: str) -> Any:
    """A worker setting's default (not the environment's value)."""
    return BotSettings.model_fields[name].default


WORKER_CONCURRENCY: int = _default("worker_concurrency")
WORKER_LEASE_SECONDS: int = _default("lease_seconds")
WORKER_WAIT_SECONDS: float = _default("claim_wait_seconds")


def _version(package: str) -> str:
    try:
        return version(package)
    except Exception:
        return "?"


@dataclass(frozen=True, slots=True)
class Plan:
    workers: tuple[int, ...]
    jobs: int
    concurrency: int
    systems: tuple[str, ...]
    retries: int
    timeout: float  # per cell


QUICK = Plan(workers=(1, 4), jobs=1_000, concurrency=WORKER_CONCURRENCY, systems=SYSTEM_ORDER, retries=0,
             timeout=120)
FULL = Plan(workers=(1, 4, 16), jobs=5_000, concurrency=WORKER_CONCURRENCY, systems=SYSTEM_ORDER, retries=1,
            timeout=300)


# --- CPU ------------------------------------------------------------------------------------------


# --- cells ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    system: str
    workers: int
    concurrency: int
    jobs: int
    done: int
    seconds: float
    cpu: GroupSample
    error: str = ""

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def other_load(self) -> float:
        return self.cpu.other / self.seconds if self.seconds > 0 else 0.0

    @property
    def noisy(self) -> bool:
        return self.other_load > MAX_OTHER_LOAD


class CellFailed(Exception):
    pass


@dataclass
class Env:
    """Everything the cells share: processes, databases, Redis, the backend."""

    stack: Stack
    plan: Plan
    db: BenchDatabase
    pool: asyncpg.Pool  # the prgate bench database
    secret: str
    procrastinate_conninfo: str
    procrastinate_pool: asyncpg.Pool
    procrastinate_app: Any
    redis_url: str
    redis: Redis
    redis_pid: int | None
    versions: dict[str, str] = field(default_factory=dict)


def _ready_dir(stack: Stack, system: str) -> Path:
    path = stack.log_dir / f"ready-{system}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


async def wait_ready(procs: Sequence[StackProcess], ready_dir: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    def count() -> int:
        return len(list(ready_dir.iterdir()))

    while await asyncio.to_thread(count) < len(procs):
        dead = [p for p in procs if not p.alive()]
        if dead:
            raise CellFailed(f"{dead[0].name} exited during start-up:\n{dead[0].log_tail()}")
        if time.monotonic() > deadline:
            raise CellFailed(f"workers not ready after {timeout:g} s:\n{procs[0].log_tail()}")
        await asyncio.sleep(0.05)


def go(procs: Sequence[StackProcess]) -> None:
    for proc in procs:
        proc.popen.send_signal(signal.SIGUSR1)


async def drain(
    procs: Sequence[StackProcess], meter: GroupMeter, remaining: Callable[[], Awaitable[int]], timeout: float,
    start: Callable[[], Awaitable[None]], workers_may_exit: bool = False,
) -> tuple[float, str]:
    """Start the clock, `start` the workers, poll `remaining` until 0: (seconds, error or "")."""
    meter.start()
    t0 = time.perf_counter()
    await start()
    while True:
        await asyncio.sleep(POLL_SECONDS)
        left = await remaining()
        meter.sample()  # before poll() below may reap an exited worker
        seconds = time.perf_counter() - t0
        if left == 0:
            return seconds, ""
        dead = [p for p in procs if not p.alive()]
        if dead and (not workers_may_exit or len(dead) == len(procs)):
            return seconds, f"{dead[0].name} exited with {left} jobs left:\n{dead[0].log_tail(2000)}"
        if seconds > timeout:
            return seconds, f"timeout after {timeout:g} s with {left} jobs left"


def stop_all(stack: Stack, procs: Sequence[StackProcess]) -> None:
    for proc in procs:
        stack.stop(proc, grace=5)


# prgate ---------------------------------------------------------------------------------------------


async def prgate_cell(env: Env, workers: int, concurrency: int) -> Cell:
    jobs = env.plan.jobs
    # A backend of its own per cell: the long-poll claims the previous cell's workers left behind
    # die with the old backend instead of leasing the next cell's actions to dead workers.
    async with backend_process(env.db.url, env.secret, env.stack) as backend:
        await warm_up(backend)  # grow its pool to DB_POOL_MAX while the outbox is empty
        seconds, cpu, error = await prgate_drain(env, backend, workers, concurrency)
    done = int(await env.pool.fetchval("SELECT count(*) FROM bot_actions WHERE status = 'DONE'"))
    return Cell(PRGATE, workers, concurrency, jobs, done, seconds, cpu, error)


async def prgate_drain(env: Env, backend: Backend, workers: int, concurrency: int) -> tuple[float, GroupSample, str]:
    jobs = env.plan.jobs
    backend_proc = backend.proc
    assert backend_proc is not None
    procs: list[StackProcess] = []
    try:
        await reset_and_seed(env.pool, jobs)
        ready = _ready_dir(env.stack, PRGATE)
        procs = [
            env.stack.start(f"prgate-w{workers}-{i}", [
                "-m", "bench.peers.prgate_noop", "--backend-url", backend.base_url, "--secret", backend.secret,
                "--worker-id", f"bench-{workers}-{i}", "--concurrency", str(concurrency),
                "--lease-seconds", str(WORKER_LEASE_SECONDS), "--wait-seconds", str(WORKER_WAIT_SECONDS),
                "--ready-file", str(ready / str(i)),
            ], {})
            for i in range(workers)
        ]
        await wait_ready(procs, ready)
        meter = GroupMeter({
            "workers": [p.pid for p in procs], "backend": [backend_proc.pid],
            "postgres": await postgres_pids(env.pool),
        })

        async def remaining() -> int:
            return int(await env.pool.fetchval(
                "SELECT count(*) FROM bot_actions WHERE status IN ('PENDING', 'CLAIMED')"))

        async def start() -> None:
            go(procs)

        seconds, error = await drain(procs, meter, remaining, env.plan.timeout, start)
        cpu = meter.stop()
        if not backend_proc.alive():
            error = error or f"the backend died:\n{backend_proc.log_tail(2000)}"
    finally:
        stop_all(env.stack, procs)
    return seconds, cpu, error


# procrastinate --------------------------------------------------------------------------------------


async def procrastinate_seed(env: Env, jobs: int, chunk: int = 1_000) -> None:
    await env.procrastinate_pool.execute(
        "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_workers RESTART IDENTITY CASCADE")
    task = env.procrastinate_app.tasks["noop"]
    for start in range(0, jobs, chunk):
        await task.batch_defer_async(*({} for _ in range(min(chunk, jobs - start))))
    async with env.procrastinate_pool.acquire() as conn:
        await conn.execute("ANALYZE procrastinate_jobs")
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute("CHECKPOINT")


async def procrastinate_cell(env: Env, workers: int, concurrency: int) -> Cell:
    jobs = env.plan.jobs
    await procrastinate_seed(env, jobs)
    ready = _ready_dir(env.stack, PROCRASTINATE)
    procs = [
        env.stack.start(f"procrastinate-w{workers}-{i}", [
            "-m", "bench.peers.procrastinate_noop", "--conninfo", env.procrastinate_conninfo,
            "--concurrency", str(concurrency), "--ready-file", str(ready / str(i)),
        ], {})
        for i in range(workers)
    ]
    try:
        await wait_ready(procs, ready)
        meter = GroupMeter({
            "workers": [p.pid for p in procs], "postgres": await postgres_pids(env.procrastinate_pool),
        })

        async def remaining() -> int:
            return int(await env.procrastinate_pool.fetchval(
                "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"))

        async def start() -> None:
            go(procs)

        seconds, error = await drain(procs, meter, remaining, env.plan.timeout, start)
        cpu = meter.stop()
    finally:
        stop_all(env.stack, procs)
    done = int(await env.procrastinate_pool.fetchval(
        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"))
    return Cell(PROCRASTINATE, workers, concurrency, jobs, done, seconds, cpu, error)


# arq ------------------------------------------------------------------------------------------------


async def arq_cell(env: Env, system: str, workers: int, concurrency: int) -> Cell:
    from arq.connections import RedisSettings, create_pool

    poll_delay = arq_noop_peer.default_poll_delay() if system == ARQ_DEFAULT else ARQ_FAST_POLL_DELAY
    jobs = env.plan.jobs
    queue = f"prgate-bench-outbox-arq-{uuid.uuid4().hex}"
    pool = await create_pool(RedisSettings.from_dsn(env.redis_url), default_queue_name=queue)
    procs: list[StackProcess] = []
    try:
        await arq_noop_peer.enqueue_noops(pool, queue, jobs)
        procs = arq_noop_peer.start_workers(env.stack, f"{system}-w{workers}", workers, env.redis_url, queue,
                                            concurrency, poll_delay, {})
        if not await arq_noop_peer.all_ready(pool, queue, workers, timeout=120):
            raise CellFailed("arq workers not ready:\n" + procs[0].log_tail())
        meter = GroupMeter({"workers": [p.pid for p in procs], "redis": [env.redis_pid] if env.redis_pid else []})

        async def remaining() -> int:
            return int(await pool.zcard(queue))

        async def start() -> None:
            await arq_noop_peer.go(pool, queue, workers)

        seconds, error = await drain(procs, meter, remaining, env.plan.timeout, start, workers_may_exit=True)
        cpu = meter.stop()
        done = jobs - int(await pool.zcard(queue))
        return Cell(system, workers, concurrency, jobs, done, seconds, cpu, error)
    finally:
        stop_all(env.stack, procs)
        await arq_noop_peer.delete_queue(pool, queue)
        await pool.aclose()


# raw floor ------------------------------------------------------------------------------------------


async def raw_claimer(
    conn: asyncpg.pool.PoolConnectionProxy, results: asyncpg.Pool, worker_id: str, max_actions: int,
    tally: Tally, start: asyncio.Event,
) -> None:
    """Claim up to `max_actions` on `conn`, apply their results concurrently through `results`, repeat."""

    async def report(row: asyncpg.Record) -> None:
        async with results.acquire() as rconn:
            applied = await outbox.apply_result(
                rconn, row["action_id"], worker_id, row["attempt"], Outcome.SUCCEEDED, 0.0, None)
        if applied is None:
            tally.error(f"result for {row['action_id']} found no lease")
        else:
            tally.actions += 1

    await start.wait()
    while True:
        rows = await outbox.claim(conn, worker_id, max_actions, LEASE_SECONDS)
        tally.claims += 1
        if not rows:
            return
        await asyncio.gather(*(report(r) for r in rows))


async def raw_batch_claimer(
    conn: asyncpg.pool.PoolConnectionProxy, worker_id: str, max_actions: int, tally: Tally,
    start: asyncio.Event,
) -> None:
    """Claim up to `max_actions`, apply their results in one statement on the same connection, repeat."""
    await start.wait()
    while True:
        rows = await outbox.claim(conn, worker_id, max_actions, LEASE_SECONDS)
        tally.claims += 1
        if not rows:
            return
        applied = await outbox.apply_results(conn, worker_id, [
            outbox.ResultRow(r["action_id"], r["attempt"], Outcome.SUCCEEDED, 0.0, None) for r in rows
        ])
        tally.actions += len(applied)
        for _ in range(len(rows) - len(applied)):
            tally.error("a batch result found no lease")


def raw_result_connections(workers: int, concurrency: int) -> int:
    return min(workers * concurrency, DB_POOL_MAX)


async def raw_cell(env: Env, system: str, workers: int, concurrency: int) -> Cell:
    jobs = env.plan.jobs
    await reset_and_seed(env.pool, jobs)
    tally = Tally()
    async with AsyncExitStack() as stack:
        results: asyncpg.Pool | None = None
        if system == RAW:
            size = raw_result_connections(workers, concurrency)
            results = await asyncpg.create_pool(
                env.db.url, min_size=size, max_size=size, init=init_connection,
                max_inactive_connection_lifetime=0,
            )
            stack.push_async_callback(results.close)
        conns = [await stack.enter_async_context(env.pool.acquire()) for _ in range(workers)]
        # Every connection is open now: they are all in the CPU accounting.
        meter = GroupMeter({"workers": [os.getpid()], "postgres": await postgres_pids(env.pool)})
        start = asyncio.Event()
        if results is not None:
            tasks = [raw_claimer(c, results, f"raw-{i}", concurrency, tally, start) for i, c in enumerate(conns)]
        else:
            tasks = [raw_batch_claimer(c, f"raw-{i}", concurrency, tally, start) for i, c in enumerate(conns)]
        running = [asyncio.ensure_future(t) for t in tasks]
        await asyncio.sleep(0)
        meter.start()
        t0 = time.perf_counter()
        start.set()
        await asyncio.gather(*running)
        seconds = time.perf_counter() - t0
        cpu = meter.stop()
    error = f"{tally.errors} errors, first: {tally.first_error}" if tally.errors else ""
    done = int(await env.pool.fetchval("SELECT count(*) FROM bot_actions WHERE status = 'DONE'"))
    if done != tally.actions:
        error = error or f"{tally.actions} results applied but {done} actions DONE"
    return Cell(system, workers, concurrency, jobs, done, seconds, cpu, error)


# --- the run --------------------------------------------------------------------------------------


async def measure(env: Env, system: str, workers: int, concurrency: int) -> Cell:
    if system == PRGATE:
        return await prgate_cell(env, workers, concurrency)
    if system == PROCRASTINATE:
        return await procrastinate_cell(env, workers, concurrency)
    if system in (ARQ_DEFAULT, ARQ_FAST):
        return await arq_cell(env, system, workers, concurrency)
    return await raw_cell(env, system, workers, concurrency)


def cell_line(cell: Cell) -> str:
    return (
        f"  {label(cell.system):<38} workers {cell.workers:>2}  {cell.done:>6,}/{cell.jobs:,} jobs in "
        f"{cell.seconds:6.2f} s = {cell.rate:>7,.0f}/s  (other load {cell.other_load:.0%} of a core)"
        + (f"  ERROR {cell.error}" if cell.error else "")
    )


async def measure_quietest(env: Env, system: str, workers: int) -> Cell:
    async def attempt() -> Cell:
        try:
            return await measure(env, system, workers, env.plan.concurrency)
        except CellFailed as exc:
            return Cell(system, workers, env.plan.concurrency, env.plan.jobs, 0, 0.0, GroupSample(), str(exc))

    return await least_disturbed(
        attempt, retries=env.plan.retries, rank=lambda c: (c.error, c.other_load),
        good=lambda c: not c.error and not c.noisy,
        show=lambda c, n: print(cell_line(c) + (f"  [retry {n}]" if n else ""), flush=True),
    )


@dataclass
class Report:
    plan: Plan
    command: str
    started: dt.datetime
    load_before: str
    quiet: str
    git: str
    server_version: str
    redis_version: str
    versions: dict[str, str]
    cells: list[Cell]

    def text(self) -> str:
        p = self.plan
        lines = [
            f"Measured {self.started:%Y-%m-%d %H:%M} UTC on {self.git} with `{self.command}`; machine: "
            f"{machine_line(self.server_version)}, Redis {self.redis_version}; load average before the run: "
            f"{self.load_before}" + (f"; {self.quiet}" if self.quiet else "") + ".",
            "",
            f"Every system processes the same {p.jobs:,} no-op jobs per cell with W worker processes of "
            f"concurrency {p.concurrency} each (prgate's default WORKER_CONCURRENCY), all on this machine:",
            "",
            *concurrency_lines(p, self.versions),
            "",
            "The clock starts when every worker process has started (imports done, connections open) and "
            "all are told to go at once, and stops when no job is left undone (queue polled every "
            f"{1000 * POLL_SECONDS:.0f} ms). CPU columns are CPU-seconds per wall-second (100 = one full core), "
            "from /proc: workers = the worker processes (raw rows: this process), backend = prgate's backend "
            "process, pg = the system's database backends plus PostgreSQL's auxiliary processes, redis = "
            "redis-server, other = the rest of the machine (other jobs; this process's polling); µs/job is "
            "the CPU of the first four per job.",
            "",
            results_table(self.cells),
            "",
            "Goal: >= 2,000 actions/s with 4 workers on a 2-core machine, ahead of both peers:",
            "",
            goal_table(self.cells),
        ]
        noisy = [c for c in self.cells if c.noisy]
        if noisy:
            lines += ["", f"`~`: {len(noisy)} of {len(self.cells)} cells ran while other processes used more than "
                      f"{MAX_OTHER_LOAD:.0%} of a core (after up to {p.retries} retries): read them as noisy."]
        failed = [c for c in self.cells if c.error or c.done < c.jobs]
        if failed:
            lines += ["", "(!) cells with errors or jobs left undone:"]
            lines += [f"- {label(c.system)}, {c.workers} workers: {c.done:,}/{c.jobs:,} done; "
                      f"{c.error.splitlines()[0] if c.error else ''}" for c in failed]
        return "\n".join(lines)


def label(system: str) -> str:
    return {
        PRGATE: "prgate (ClaimLoop → HTTP backend)",
        PROCRASTINATE: "procrastinate",
        ARQ_DEFAULT: f"arq, poll_delay {arq_noop_peer.default_poll_delay():g} (default)",
        ARQ_FAST: f"arq, poll_delay {ARQ_FAST_POLL_DELAY:g}",
        RAW: "raw floor: claim + apply_result",
        RAW_BATCH: "raw floor: claim + apply_results",
    }[system]


def concurrency_lines(p: Plan, versions: dict[str, str]) -> list[str]:
    c = p.concurrency
    lines = {
        PRGATE: (
            f"- **prgate**: W x `python -m bench.peers.prgate_noop`: the real `ClaimLoop(concurrency={c}, "
            f"lease_seconds={WORKER_LEASE_SECONDS}, wait_seconds={WORKER_WAIT_SECONDS:g})` (the worker's defaults) "
            "with the real signed `BackendClient` and an executor that returns SUCCEEDED at once; one "
            f"`python -m prgate.cli backend` (DB_POOL_MAX={DB_POOL_MAX}, as bench.claim); N actions seeded "
            "beforehand, one PR each."
        ),
        PROCRASTINATE: (
            f"- **procrastinate {versions.get('procrastinate', '?')}** (psycopg {versions.get('psycopg', '?')}): "
            f"W x `App.run_worker_async(concurrency={c})` on its default `PsycopgConnector` (a pool of 4 "
            "connections per worker, one of them for LISTEN/NOTIFY), its own database; N jobs deferred "
            "beforehand with `batch_defer_async`."
        ),
        ARQ_DEFAULT: (
            f"- **arq {versions.get('arq', '?')}**: W x `Worker(burst=True, max_jobs={c})` (`python -m "
            f"bench.peers.arq_noop`), with arq's default poll_delay {arq_noop_peer.default_poll_delay():g} s and with "
            f"{ARQ_FAST_POLL_DELAY:g} s; N jobs enqueued beforehand (32 concurrent `enqueue_job`) on a queue "
            "of its own. Each arq worker opens its Redis pool after the start signal (a few ms)."
        ),
        RAW: (
            f"- **raw floor** (this process, straight through asyncpg): W claim loops, each on its own connection "
            f"running `outbox.claim(max_actions={c})`, then that claim's results applied concurrently, one "
            "`outbox.apply_result` each, through a pool of min(W x concurrency, the backend's DB_POOL_MAX "
            f"{DB_POOL_MAX}) connections; `apply_results` rows: one batch result statement per claim, on "
            "the claim's connection."
        ),
    }
    shown = {ARQ_FAST: ARQ_DEFAULT, RAW_BATCH: RAW}
    return list(dict.fromkeys(lines[shown.get(s, s)] for s in p.systems))


def results_table(cells: Sequence[Cell]) -> str:
    prgate = {c.workers: c.rate for c in cells if c.system == PRGATE}
    header = ("system", "workers", "jobs/s", "vs prgate", "seconds",
              "CPU % of a core: workers / backend / pg / redis / other", "CPU µs/job")
    rows: list[list[str]] = []
    for c in sorted(cells, key=lambda c: (c.workers, SYSTEM_ORDER.index(c.system))):
        base = prgate.get(c.workers)
        ratio = f"{c.rate / base:.2f}" if base else "n/a"
        if c.seconds > 0:
            pct = [f"{100 * v / c.seconds:.0f}" for v in (c.cpu.workers, c.cpu.backend, c.cpu.postgres, c.cpu.redis,
                                                          c.cpu.other)]
        else:
            pct = ["-"] * 5
        per_job = f"{1e6 * c.cpu.ours / c.done:,.0f}" if c.done else "n/a"
        flag = (" (!)" if c.error or c.done < c.jobs else "") + (" ~" if c.noisy else "")
        rows.append([label(c.system) + flag, str(c.workers), f"{c.rate:,.0f}", ratio, f"{c.seconds:.2f}",
                     " / ".join(pct), per_job])
    return markdown_table(header, rows, (False, True, True, True, True, True, True))


def goal(cells: Sequence[Cell]) -> tuple[list[tuple[str, str, str]], bool | None]:
    """(target, measured, verdict) rows and the overall verdict (None: not measured)."""
    at = {c.system: c for c in cells if c.workers == GOAL_WORKERS}
    me = at.get(PRGATE)
    if me is None:
        return [("all", f"not measured ({GOAL_WORKERS} workers not in this run)", "n/a")], None

    def verdict(ok: bool, *used: Cell) -> str:
        return ("met" if ok else "not met") + (" (noisy: re-measure)" if any(c.noisy for c in used) else "")

    rows: list[tuple[str, str, str]] = []
    ok_rate = not me.error and me.rate >= GOAL_RATE
    rows.append((f"prgate >= {GOAL_RATE:,.0f} actions/s at {GOAL_WORKERS} workers", f"{me.rate:,.0f} actions/s",
                 verdict(ok_rate, me)))
    verdicts = [ok_rate]
    for name, systems in (("procrastinate", (PROCRASTINATE,)), ("arq (either poll_delay)", (ARQ_DEFAULT, ARQ_FAST))):
        peers = [at[s] for s in systems if s in at]
        if not peers:
            rows.append((f"ahead of {name} at {GOAL_WORKERS} workers", "not measured", "n/a"))
            continue
        best = max(peers, key=lambda c: c.rate)
        ok = not me.error and me.rate > best.rate
        verdicts.append(ok)
        rows.append((
            f"ahead of {name} at {GOAL_WORKERS} workers",
            f"{me.rate:,.0f} vs {best.rate:,.0f} jobs/s ({label(best.system)}) = {me.rate / best.rate:.2f}x"
            if best.rate else f"{me.rate:,.0f} vs 0 jobs/s",
            verdict(ok, me, best),
        ))
    overall = all(verdicts)
    rows.append(("**goal**", "", "**met**" if overall else "**not met**"))
    return rows, overall


def goal_table(cells: Sequence[Cell]) -> str:
    rows, _ = goal(cells)
    return markdown_table(("target", "measured", "verdict"), [list(r) for r in rows], (False, False, False))


async def run(plan: Plan, command: str, quiet_limit: float, stack: Stack) -> Report:
    load_before = load_average()
    quiet = (await wait_quiet(quiet_limit, "bench.outbox", MAX_OTHER_LOAD)).describe() if quiet_limit else ""
    started = dt.datetime.now(dt.UTC)
    versions = {p: _version(p) for p in ("procrastinate", "psycopg", "arq", "asyncpg", "redis")}
    if RAW_BATCH in plan.systems and not hasattr(outbox, "apply_results"):
        print("bench.outbox: backend_api.store.outbox has no apply_results: skipping the batched raw floor", flush=True)
        plan = Plan(plan.workers, plan.jobs, plan.concurrency, tuple(s for s in plan.systems if s != RAW_BATCH),
                    plan.retries, plan.timeout)
    cells: list[Cell] = []
    with ExitStack() as services:
        admin = services.enter_context(postgres_admin_url(services))
        redis_url = services.enter_context(redis_base_url(services))
        async with AsyncExitStack() as astack:
            db = await astack.enter_async_context(bench_database(services, prefix="prgate_bench_outbox"))
            procr_name, procr_url = await create_database(admin, "prgate_bench_procrastinate")
            astack.push_async_callback(drop_database, admin, procr_name)
            redis = Redis.from_url(redis_url)
            astack.push_async_callback(redis.aclose)
            info = await redis.info("server")
            print(f"bench.outbox: databases {db.name}, {procr_name} on PostgreSQL {db.server_version}; Redis "
                  f"{redis_url} ({info.get('redis_version', '?')}); logs in {stack.log_dir}", flush=True)
            pool = await asyncpg.create_pool(
                db.url, min_size=max(plan.workers) + 2, max_size=max(plan.workers) + 2,
                init=init_connection, max_inactive_connection_lifetime=0,
            )
            astack.push_async_callback(pool.close)
            await insert_installation(pool)
            procr_pool = await asyncpg.create_pool(procr_url, min_size=1, max_size=2)
            astack.push_async_callback(procr_pool.close)
            from bench.peers.procrastinate_noop import make_app

            app = make_app(procr_url)
            await app.open_async()
            astack.push_async_callback(app.close_async)
            await app.schema_manager.apply_schema_async()
            env = Env(
                stack=stack, plan=plan, db=db, pool=pool, secret=secrets.token_hex(32),
                procrastinate_conninfo=procr_url, procrastinate_pool=procr_pool, procrastinate_app=app,
                redis_url=redis_url, redis=redis, redis_pid=redis_server_pid(info), versions=versions,
            )
            for workers in plan.workers:
                for system in plan.systems:
                    cells.append(await measure_quietest(env, system, workers))
            return Report(plan, command, started, load_before, quiet, git_state(), db.server_version,
                          str(info.get("redis_version", "?")), versions, cells)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.parser("bench.outbox", __doc__,
                        quick=f"workers {','.join(map(str, QUICK.workers))}, {QUICK.jobs:,} jobs: about a minute")
    parser.add_argument("--workers", type=cli.int_list, help="worker process counts, e.g. 1,4,16")
    parser.add_argument("--jobs", type=int, help="jobs per cell (the same for every system)")
    parser.add_argument("--concurrency", type=int,
                        help=f"concurrency of each worker process (default: {WORKER_CONCURRENCY})")
    parser.add_argument("--systems", type=lambda s: tuple(x for x in s.split(",") if x),
                        help=f"subset of {','.join(SYSTEM_ORDER)}")
    parser.add_argument("--retries", type=int,
                        help=f"re-measure a cell during which other processes used > {MAX_OTHER_LOAD:.0%} of a core "
                        f"(default: {FULL.retries}, --quick: {QUICK.retries})".replace("%", "%%"))
    parser.add_argument("--timeout", type=float, help="seconds per cell before giving up")
    args = parser.parse_args(argv)
    unknown = set(args.systems or ()) - set(SYSTEM_ORDER)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    plan = Plan(
        workers=args.workers or base.workers,
        jobs=args.jobs or base.jobs,
        concurrency=args.concurrency or base.concurrency,
        systems=tuple(s for s in SYSTEM_ORDER if s in (args.systems or base.systems)),
        retries=base.retries if args.retries is None else args.retries,
        timeout=args.timeout or base.timeout,
    )
    command = cli.command_line("bench.outbox", argv)
    t0 = time.monotonic()
    stack = Stack()
    try:
        report = cli.run_cancellable(
            lambda: run(plan, command, args.wait_quiet, stack),
            "bench.outbox: interrupted; every process it started was stopped and its databases dropped",
        )
    finally:
        stack.stop_all(grace=5)
    if report is None:
        return 130
    cli.publish(report.text(), started=t0, write_docs=args.write_docs,
                heading="Outbox throughput beside procrastinate and arq", tag="bench.outbox",
                total_note=f"; worker logs in {stack.log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
