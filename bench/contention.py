"""Contention and bloat: claimer scaling (8 vs 32) and throughput while a long transaction holds the xmin horizon.

    .venv/bin/python -m bench.contention                    # full: ~10 min (20 s cells, 180 s hold)
    .venv/bin/python -m bench.contention --quick            # ~1.5 min: does the script work?
    .venv/bin/python -m bench.contention --write-docs       # also rewrite its section of docs/benchmarks.md
    .venv/bin/python -m bench.contention --hold-seconds 600 --hold-path raw

Creates its own database (bench.harness.db.bench_database) and starts the real backend as a separate
process (bench.harness.backend.backend_process). Both parts run the claim -> (no-op) -> result cycle with
max_actions 10 against an outbox kept stocked by a feeder: a task that tops the PENDING backlog up
to a fixed size as claimers drain it, so every row churns (INSERT, UPDATE to CLAIMED, UPDATE to
DONE) and throughput is capacity, not the feeder's rate. DONE rows stay in the table, as in prgate
(nothing deletes or archives them); the long-transaction part starts from a table with a history
of DONE rows.

1. Claimer scaling: 8 and 32 claimers, through the HTTP API (each claimer its own aiohttp
   session, one signed POST per result) and raw through asyncpg (each claimer its own connection,
   `outbox.claim` / `outbox.apply_result`), each cell measured over a fixed window after a
   warm-up, cells in ABBA order over the rounds. Target: 32 claimers >= 90 % of 8.
2. Long transaction: 8 claimers; throughput, pg_stat_user_tables counters and sizes per window:
   baseline windows, then another session runs `BEGIN; SELECT txid_current()` and stays idle in
   that transaction for --hold-seconds, then rolls back, and the run goes on until n_dead_tup is
   back to its baseline level (or --recovery-timeout). EXPLAIN (ANALYZE, BUFFERS) of the claim
   (rolled back) at fixed points. Target: drop <= 35 %, dead tuples back to baseline after.
   When the server runs with autovacuum off (CI configs do), the benchmark emulates it: every
   naptime it applies autovacuum's own thresholds to bot_actions and runs VACUUM / ANALYZE with
   autovacuum's cost-delay settings; the output says so.

Nothing is asserted: targets are reported MET / NOT MET.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from backend_api.outbox.floor import MARGIN_SECONDS, ClaimFloor
from backend_api.store import outbox
from backend_api.store.db import Conn
from bench.harness import cli
from bench.harness.backend import (
    CLAIM_PATH,
    INSTALLATION_ID,
    REPO,
    Backend,
    backend_process,
    dumps,
    insert_installation,
    signed_post,
    warm_up,
)
from bench.harness.cpu import CpuMeter, CpuSample
from bench.harness.db import BenchDatabase, bench_database, init_connection, postgres_pids
from bench.harness.quiet import QUIET_LOAD, wait_quiet_before_start
from bench.harness.report import load_average, machine_line, markdown_table
from shared_contracts.actions import Outcome

TAG = "bench.contention"
HTTP = "http"
RAW = "raw sql"
MAX_ACTIONS = 10
LOW, HIGH = 8, 32
SCALING_TARGET = 0.90
DROP_TARGET = 0.35
# A window during which other processes used more than this much of a core is marked `~`.
MAX_OTHER_LOAD = QUIET_LOAD
STATS_EVERY = 2.0  # seconds between pg_stat samples (recovery time resolution)
# About the size of prgate's gate comment (backend_api/challenges/messages.py), so rows per page is realistic.
PAYLOAD_CHARS = 450


@dataclass(frozen=True, slots=True)
class Config:
    scale_seconds: float  # measured window per scaling cell
    scale_warmup: float
    rounds: int
    window: float  # long-transaction part: length of one measurement window
    warmup: float
    baseline_windows: int
    hold_seconds: float
    recovery_timeout: float
    min_after_windows: int
    hold_claimers: int
    hold_path: str
    hold_kind: str  # "xid": BEGIN; SELECT txid_current() | "snapshot": REPEATABLE READ + a read of bot_actions
    backlog: int  # PENDING rows the feeder keeps in the outbox
    lease_seconds: int  # what claimers ask for; 60 is the worker's default (WORKER_LEASE_SECONDS)
    history: int  # DONE rows the long-transaction part starts with
    naptime: float | None  # emulated autovacuum's naptime; None: the server's
    skip_scaling: bool
    skip_hold: bool


QUICK = Config(5.0, 1.5, 1, 5.0, 3.0, 2, 30.0, 120.0, 2, LOW, HTTP, "xid", 2_000, 60, 10_000, 15.0, False, False)
FULL = Config(20.0, 3.0, 2, 10.0, 10.0, 6, 180.0, 300.0, 2, LOW, HTTP, "xid", 2_000, 60, 100_000, None, False, False)


# --- load generation ---------------------------------------------------------------------------


@dataclass(slots=True)
class Counters:
    """What the claimers did so far (monotonic; windows take differences)."""

    claims: int = 0
    claimed: int = 0  # actions handed out by claims
    done: int = 0  # results accepted (status DONE)
    empty: int = 0  # claims that found nothing
    errors: int = 0
    first_error: str = ""

    def error(self, message: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or message[:300]


_INSERT = f"""
INSERT INTO bot_actions (provider, action_type, installation_id, repo_id, repo_full_name, pr_number, payload,
                         max_attempts, status, attempt, completed_at)
SELECT 'github', 'UPSERT_PR_COMMENT', $1, 5001, $2, g,
       jsonb_build_object('marker', '<!-- prgate -->',
                          'body', rpad('Please verify, #' || g || ' ', {PAYLOAD_CHARS}, 'x')),
       8, $3, CASE WHEN $3 = 'DONE' THEN 1 ELSE 0 END, CASE WHEN $3 = 'DONE' THEN now() END
FROM generate_series($4::int, $4::int + $5::int - 1) g
ORDER BY g
"""


async def insert_actions(conn: Conn, status: str, first_pr: int, count: int) -> None:
    """`count` actions, each on its own PR (first_pr, first_pr + 1, ...): no per-PR ordering waits."""
    await conn.execute(_INSERT, INSTALLATION_ID, REPO, status, first_pr, count)


async def reset_outbox(conn: Conn, history: int, backlog: int) -> int:
    """Empty the outbox; insert `history` DONE rows and `backlog` PENDING ones; vacuum. The next free PR number."""
    await conn.execute("TRUNCATE bot_actions, internal_nonces RESTART IDENTITY")
    for first in range(1, history + 1, 50_000):
        await insert_actions(conn, "DONE", first, min(50_000, history + 1 - first))
    await insert_actions(conn, "PENDING", history + 1, backlog)
    # History pages all-visible and frozen, as old rows are in a long-running installation.
    await conn.execute("VACUUM (FREEZE, ANALYZE) bot_actions")
    with contextlib.suppress(asyncpg.PostgresError):
        await conn.execute("CHECKPOINT")
    return history + backlog + 1


@dataclass(slots=True)
class Feeder:
    """Keeps about `backlog` actions PENDING: inserts what the claimers took, in batches."""

    counters: Counters
    backlog: int
    next_pr: int
    inserted: int  # includes the initial backlog
    statements: int = 0

    async def run(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        step = max(50, self.backlog // 20)
        while not stop.is_set():
            deficit = self.backlog - (self.inserted - self.counters.claimed)
            if deficit < step:
                await asyncio.sleep(0.01)
                continue
            count = min(deficit, 2_000)
            await insert_actions(conn, "PENDING", self.next_pr, count)
            self.next_pr += count
            self.inserted += count
            self.statements += 1


async def http_claimer(
    session: aiohttp.ClientSession, secret: str, worker_id: str, lease: int, counters: Counters, stop: asyncio.Event
) -> None:
    claim_body = dumps({"worker_id": worker_id, "max_actions": MAX_ACTIONS, "lease_seconds": lease})
    while not stop.is_set():
        status, data = await signed_post(session, secret, CLAIM_PATH, claim_body)
        counters.claims += 1
        if status != 200 or not isinstance(data, dict):
            counters.error(f"claim -> {status} {data}")
            await asyncio.sleep(0.1)
            continue
        actions = data["actions"]
        counters.claimed += len(actions)
        if not actions:
            counters.empty += 1
            await asyncio.sleep(0.01)
            continue
        # Results for every action claimed, even once stopping: no lease is left behind.
        for action in actions:
            path = f"/internal/v2/bot-actions/{action['action_id']}/result"
            body = dumps({"worker_id": worker_id, "attempt": action["attempt"], "outcome": "SUCCEEDED"})
            status, result = await signed_post(session, secret, path, body)
            if status == 200 and isinstance(result, dict) and result.get("status") == "DONE":
                counters.done += 1
            else:
                counters.error(f"result -> {status} {result}")


_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


async def raw_claimer(
    conn: asyncpg.Connection, worker_id: str, lease: int, counters: Counters, stop: asyncio.Event,
    floor: ClaimFloor,
) -> None:
    while not stop.is_set():
        try:
            # One floor for all raw claimers, as one backend process has (backend_api/outbox/floor.py).
            rows = await outbox.claim(conn, worker_id, MAX_ACTIONS, lease, await floor.get(conn))
        except _DB_ERRORS as exc:
            counters.error(f"claim: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.1)
            continue
        counters.claims += 1
        counters.claimed += len(rows)
        if not rows:
            counters.empty += 1
            await asyncio.sleep(0.01)
            continue
        for row in rows:
            try:
                applied = await outbox.apply_result(
                    conn, row["action_id"], worker_id, row["attempt"], Outcome.SUCCEEDED, 0.0, None
                )
            except _DB_ERRORS as exc:
                counters.error(f"result: {type(exc).__name__}: {exc}")
                continue
            if applied is None:
                counters.error(f"result for {row['action_id']} found no lease")
            else:
                counters.done += 1


@contextlib.asynccontextmanager
async def load(
    path: str, claimers: int, *, lease: int, db: BenchDatabase, backend: Backend, counters: Counters,
    feeder: Feeder,
) -> AsyncIterator[None]:
    """Claimers and the feeder running until the block exits; every session and connection closed after."""
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        feed_conn = await asyncpg.connect(db.url)
        stack.push_async_callback(feed_conn.close)
        if path == HTTP:
            sessions = [
                await stack.enter_async_context(aiohttp.ClientSession(base_url=backend.base_url))
                for _ in range(claimers)
            ]
            for session in sessions:  # open every keep-alive connection first
                async with session.get("/healthz") as resp:
                    await resp.read()
            coros = [
                http_claimer(s, backend.secret, f"bench-{i}", lease, counters, stop) for i, s in enumerate(sessions)
            ]
        else:
            conns: list[asyncpg.Connection] = []
            for _ in range(claimers):
                conn = await asyncpg.connect(db.url)
                stack.push_async_callback(conn.close)
                await init_connection(conn)
                conns.append(conn)
            floor = ClaimFloor()
            coros = [raw_claimer(c, f"bench-{i}", lease, counters, stop, floor) for i, c in enumerate(conns)]
        tasks = [asyncio.create_task(feeder.run(feed_conn, stop)), *(asyncio.create_task(c) for c in coros)]
        try:
            yield
            failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
            if failed:
                raise RuntimeError(f"a load task died: {failed[0].exception()!r}")
        finally:
            stop.set()
            _, pending = await asyncio.wait(tasks, timeout=120)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


# --- database observation ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stats:
    at: float  # time.monotonic()
    n_live: int
    n_dead: int
    mod_since_analyze: int
    ins_since_vacuum: int
    reltuples: float
    upd: int
    hot_upd: int
    vacuums: int  # vacuum_count + autovacuum_count
    total_bytes: int
    heap_bytes: int
    claim_idx_bytes: int


_STATS = """
SELECT s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze, s.n_ins_since_vacuum, c.reltuples,
       s.n_tup_upd, s.n_tup_hot_upd, s.vacuum_count + s.autovacuum_count AS vacuums,
       pg_total_relation_size(c.oid) AS total_bytes, pg_relation_size(c.oid) AS heap_bytes,
       pg_relation_size('bot_actions_claimable_idx'::regclass) AS claim_idx_bytes
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.relid = 'bot_actions'::regclass
"""


async def read_stats(pool: asyncpg.Pool) -> Stats:
    """pg_stat_user_tables for bot_actions, as fresh as PostgreSQL has it.

    A busy backend flushes its counters at most once a second (PG15), so they lag by about that;
    pg_stat_force_next_flush() only flushes the calling session, called anyway for our own.
    """
    async with pool.acquire() as conn:
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await conn.fetchrow(_STATS)
    assert row is not None
    return Stats(
        at=time.monotonic(), n_live=int(row["n_live_tup"]), n_dead=int(row["n_dead_tup"]),
        mod_since_analyze=int(row["n_mod_since_analyze"]), ins_since_vacuum=int(row["n_ins_since_vacuum"]),
        reltuples=float(row["reltuples"]), upd=int(row["n_tup_upd"]), hot_upd=int(row["n_tup_hot_upd"]),
        vacuums=int(row["vacuums"]), total_bytes=int(row["total_bytes"]), heap_bytes=int(row["heap_bytes"]),
        claim_idx_bytes=int(row["claim_idx_bytes"]),
    )


@dataclass(frozen=True, slots=True)
class AutovacuumSettings:
    enabled: bool  # the server's `autovacuum`
    naptime: float
    vac_threshold: float
    vac_scale: float
    ins_threshold: float
    ins_scale: float
    an_threshold: float
    an_scale: float
    cost_delay_ms: float
    cost_limit: int
    reloptions: str

    def vacuum_due(self, s: Stats) -> bool:
        reltuples = max(s.reltuples, 0.0)
        return (s.n_dead > self.vac_threshold + self.vac_scale * reltuples
                or s.ins_since_vacuum > self.ins_threshold + self.ins_scale * reltuples)

    def analyze_due(self, s: Stats) -> bool:
        return s.mod_since_analyze > self.an_threshold + self.an_scale * max(s.reltuples, 0.0)

    def describe(self) -> str:
        return (
            f"autovacuum {'on' if self.enabled else 'OFF'} on the server; naptime {self.naptime:g} s, "
            f"vacuum when n_dead_tup > {self.vac_threshold:g} + {self.vac_scale:g} * reltuples "
            f"(or inserts > {self.ins_threshold:g} + {self.ins_scale:g} * reltuples), analyze when changes > "
            f"{self.an_threshold:g} + {self.an_scale:g} * reltuples, cost delay {self.cost_delay_ms:g} ms / "
            f"limit {self.cost_limit}; bot_actions reloptions: {self.reloptions or 'none'}"
        )


async def autovacuum_settings(pool: asyncpg.Pool) -> AutovacuumSettings:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT name, setting FROM pg_settings WHERE name LIKE '%vacuum%'")
        reloptions = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'bot_actions'::regclass")
    s = {r["name"]: r["setting"] for r in rows}
    opts = dict(o.split("=", 1) for o in (reloptions or []))

    def get(name: str) -> float:
        return float(opts.get(name, s[name]))

    limit = int(get("autovacuum_vacuum_cost_limit"))
    delay = get("autovacuum_vacuum_cost_delay")
    return AutovacuumSettings(
        enabled=s["autovacuum"] == "on" and opts.get("autovacuum_enabled", "true") != "false",
        naptime=float(s["autovacuum_naptime"]),
        vac_threshold=get("autovacuum_vacuum_threshold"), vac_scale=get("autovacuum_vacuum_scale_factor"),
        ins_threshold=get("autovacuum_vacuum_insert_threshold"),
        ins_scale=get("autovacuum_vacuum_insert_scale_factor"),
        an_threshold=get("autovacuum_analyze_threshold"), an_scale=get("autovacuum_analyze_scale_factor"),
        cost_delay_ms=float(s["vacuum_cost_delay"]) if delay < 0 else delay,
        cost_limit=int(s["vacuum_cost_limit"]) if limit < 0 else limit,
        reloptions=", ".join(reloptions or []),
    )


@dataclass(frozen=True, slots=True)
class VacuumRun:
    started: float
    seconds: float
    kind: str  # "VACUUM" / "ANALYZE"
    dead_before: int
    removed: int | None  # from VACUUM VERBOSE
    not_removable: int | None


_TUPLES_LINE = re.compile(r"tuples: (\d+) removed, (\d+) remain, (\d+) are dead but not yet removable")


async def emulate_autovacuum(
    db: BenchDatabase, pool: asyncpg.Pool, av: AutovacuumSettings, naptime: float,
    runs: list[VacuumRun], stop: asyncio.Event,
) -> None:
    """What the autovacuum launcher would do for bot_actions: every naptime, VACUUM and/or ANALYZE
    it when its thresholds say so, throttled with autovacuum's cost settings."""
    conn = await asyncpg.connect(db.url)
    notices: list[str] = []
    conn.add_log_listener(lambda _c, msg: notices.append(str(getattr(msg, "message", msg))))
    try:
        await conn.execute(f"SET vacuum_cost_delay = '{av.cost_delay_ms}ms'")
        await conn.execute(f"SET vacuum_cost_limit = {av.cost_limit}")
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), naptime)
            if stop.is_set():
                return
            stats = await read_stats(pool)
            if av.vacuum_due(stats):
                notices.clear()
                t0 = time.monotonic()
                await conn.execute("VACUUM (VERBOSE) bot_actions")
                removed = not_removable = None
                # The first `tuples:` line is bot_actions' own (its TOAST table's follows).
                if m := next((m for line in notices if (m := _TUPLES_LINE.search(line))), None):
                    removed, not_removable = int(m.group(1)), int(m.group(3))
                runs.append(VacuumRun(t0, time.monotonic() - t0, "VACUUM", stats.n_dead, removed, not_removable))
                stats = await read_stats(pool)
            if av.analyze_due(stats):
                t0 = time.monotonic()
                await conn.execute("ANALYZE bot_actions")
                runs.append(VacuumRun(t0, time.monotonic() - t0, "ANALYZE", stats.n_dead, None, None))
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True)
class Explain:
    label: str
    at: float
    execution_ms: float
    planning_ms: float
    shared_hit: int
    shared_read: int
    scan: str  # how the candidates scan reads bot_actions
    scan_buffers: int
    rows: int


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


async def explain_claim(pool: asyncpg.Pool, label: str, lease: int) -> Explain:
    """EXPLAIN (ANALYZE, BUFFERS) of the claim statement itself (max_actions 10), rolled back,
    from the claim floor a backend would use now (backend_api/outbox/floor.py)."""
    sql = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + outbox._CLAIM.format(limit=MAX_ACTIONS)
    async with pool.acquire() as conn:
        floor = await outbox.claim_floor(conn, MARGIN_SECONDS)
        tx = conn.transaction()
        await tx.start()
        try:
            raw = await conn.fetchval(sql, "bench-explain", float(lease), floor)
        finally:
            await tx.rollback()
    doc = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    top = doc["Plan"]
    scans = [n for n in _nodes(top) if n.get("Relation Name") == "bot_actions" and n.get("Alias") == "a"]
    scan = scans[0] if scans else {}
    desc = scan.get("Node Type", "?") + (f" on {scan['Index Name']}" if "Index Name" in scan else "")
    return Explain(
        label=label, at=time.monotonic(), execution_ms=float(doc["Execution Time"]),
        planning_ms=float(doc.get("Planning Time", 0.0)),
        shared_hit=int(top.get("Shared Hit Blocks", 0)), shared_read=int(top.get("Shared Read Blocks", 0)),
        scan=desc, scan_buffers=int(scan.get("Shared Hit Blocks", 0)) + int(scan.get("Shared Read Blocks", 0)),
        rows=int(top.get("Actual Rows", 0)),
    )


# --- measurement -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    phase: str
    started: float  # monotonic
    seconds: float
    done: int
    claims: int
    errors: int
    cpu: CpuSample
    stats: Stats

    @property
    def actions_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def claims_per_s(self) -> float:
        return self.claims / self.seconds if self.seconds > 0 else 0.0

    @property
    def other_load(self) -> float:
        return self.cpu.other / self.seconds if self.seconds > 0 else 0.0


async def measure_window(
    phase: str, seconds: float, counters: Counters, pool: asyncpg.Pool, backend_pid: int | None
) -> Window:
    meter = CpuMeter(backend_pid, await postgres_pids(pool))
    done, claims, errors = counters.done, counters.claims, counters.errors
    meter.start()
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    cpu = meter.stop()
    return Window(
        phase=phase, started=t0, seconds=elapsed, done=counters.done - done, claims=counters.claims - claims,
        errors=counters.errors - errors, cpu=cpu, stats=await read_stats(pool),
    )


# --- part 1: claimer scaling -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScaleCell:
    path: str
    claimers: int
    round: int
    window: Window
    first_error: str


async def measure_scaling(
    cfg: Config, db: BenchDatabase, pool: asyncpg.Pool, backend: Backend, log: Callable[[str], None]
) -> list[ScaleCell]:
    plan = [(HTTP, LOW), (HTTP, HIGH), (RAW, LOW), (RAW, HIGH)]
    cells: list[ScaleCell] = []
    for rnd in range(cfg.rounds):
        for path, claimers in plan if rnd % 2 == 0 else plan[::-1]:
            async with pool.acquire() as conn:
                next_pr = await reset_outbox(conn, 0, cfg.backlog)
            counters = Counters()
            feeder = Feeder(counters, cfg.backlog, next_pr, cfg.backlog)
            async with load(
                path, claimers, lease=cfg.lease_seconds, db=db, backend=backend, counters=counters, feeder=feeder
            ):
                await asyncio.sleep(cfg.scale_warmup)
                window = await measure_window(
                    "scaling", cfg.scale_seconds, counters, pool, backend.pid if path == HTTP else None
                )
            cell = ScaleCell(path, claimers, rnd, window, counters.first_error)
            cells.append(cell)
            log(
                f"  {path:<8} claimers {claimers:>2}  round {rnd + 1}: {window.actions_per_s:>7,.0f} actions/s "
                f"({window.claims_per_s:,.0f} claims/s)  other load {window.other_load:.0%} of a core"
                + (f"  ERRORS {window.errors}: {counters.first_error}" if window.errors else "")
            )
    return cells


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _cpu_pct(w: Window, backend: bool) -> str:
    parts = [w.cpu.client, w.cpu.backend, w.cpu.postgres, w.cpu.other]
    cells = [f"{100 * v / w.seconds:.0f}" for v in parts]
    if not backend:
        cells[1] = "-"
    return " / ".join(cells)


def scaling_table(cells: Sequence[ScaleCell]) -> str:
    header = ("path", "claimers", "round", "actions/s", "claims/s", "CPU % of a core: client / backend / pg / other",
              "errors")
    rows = [
        [
            c.path + (" ~" if c.window.other_load > MAX_OTHER_LOAD else ""), str(c.claimers), str(c.round + 1),
            f"{c.window.actions_per_s:,.0f}", f"{c.window.claims_per_s:,.0f}", _cpu_pct(c.window, c.path == HTTP),
            str(c.window.errors),
        ]
        for c in sorted(cells, key=lambda c: (c.path != HTTP, c.claimers, c.round))
    ]
    return markdown_table(header, rows, (False, True, True, True, True, True, True))


def scaling_verdicts(cells: Sequence[ScaleCell]) -> list[tuple[str, float, float, float]]:
    out = []
    for path in (HTTP, RAW):
        low = _mean([c.window.actions_per_s for c in cells if c.path == path and c.claimers == LOW])
        high = _mean([c.window.actions_per_s for c in cells if c.path == path and c.claimers == HIGH])
        if low:
            out.append((path, low, high, high / low))
    return out


def scaling_verdict_table(cells: Sequence[ScaleCell]) -> str:
    rows = [
        [path, f"{low:,.0f}", f"{high:,.0f}", f"{ratio:.0%}", "MET" if ratio >= SCALING_TARGET else "NOT MET"]
        for path, low, high, ratio in scaling_verdicts(cells)
    ]
    header = ("path", f"{LOW} claimers, actions/s (mean)", f"{HIGH} claimers, actions/s (mean)",
              f"{HIGH} / {LOW}", f">= {SCALING_TARGET:.0%}")
    return markdown_table(header, rows, (False, True, True, True, False))


# --- part 2: a long transaction ----------------------------------------------------------------


@dataclass(slots=True)
class HoldRun:
    windows: list[Window] = field(default_factory=list)
    samples: list[Stats] = field(default_factory=list)
    explains: list[Explain] = field(default_factory=list)
    vacuums: list[VacuumRun] = field(default_factory=list)
    path: str = HTTP
    load_start: float = 0.0
    hold_start: float = 0.0
    hold_end: float = 0.0
    recovered_at: float | None = None
    dead_reference: int = 0  # n_dead_tup level "baseline" means: max over the baseline windows
    xids_during_hold: int = 0
    av: AutovacuumSettings | None = None
    emulated: bool = False
    naptime: float = 0.0
    first_error: str = ""
    errors: int = 0
    feeder_statements: int = 0


@contextlib.asynccontextmanager
async def long_transaction(db: BenchDatabase, kind: str) -> AsyncIterator[asyncpg.Connection]:
    """Another session, idle in a transaction that holds back the xmin horizon; rolled back on exit."""
    conn = await asyncpg.connect(db.url)
    try:
        tx = conn.transaction(isolation="repeatable_read" if kind == "snapshot" else "read_committed")
        await tx.start()
        try:
            if kind == "snapshot":
                await conn.fetchval("SELECT 1 FROM bot_actions LIMIT 1")
            else:
                await conn.fetchval("SELECT txid_current()")
            yield conn
        finally:
            await tx.rollback()
    finally:
        await conn.close()


async def _sample_stats(pool: asyncpg.Pool, samples: list[Stats], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(await read_stats(pool))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATS_EVERY)


async def measure_hold(
    cfg: Config, db: BenchDatabase, pool: asyncpg.Pool, backend: Backend, log: Callable[[str], None]
) -> HoldRun:
    run = HoldRun(path=cfg.hold_path)
    async with pool.acquire() as conn:
        next_pr = await reset_outbox(conn, cfg.history, cfg.backlog)
    av = await autovacuum_settings(pool)
    run.av = av
    run.emulated = not av.enabled
    run.naptime = cfg.naptime if cfg.naptime is not None else av.naptime
    log(f"  {av.describe()}" + (f"; emulating it, naptime {run.naptime:g} s" if run.emulated else ""))
    counters = Counters()
    feeder = Feeder(counters, cfg.backlog, next_pr, cfg.backlog)
    backend_pid = backend.pid if cfg.hold_path == HTTP else None
    stop = asyncio.Event()
    helpers = [asyncio.create_task(_sample_stats(pool, run.samples, stop))]
    if run.emulated:
        helpers.append(asyncio.create_task(emulate_autovacuum(db, pool, av, run.naptime, run.vacuums, stop)))

    def window_line(w: Window) -> str:
        return (
            f"  {w.phase:<8} t={w.started + w.seconds - run.load_start:5.0f} s  "
            f"{w.actions_per_s:>7,.0f} actions/s  dead {w.stats.n_dead:>8,}  "
            f"live {w.stats.n_live:>8,}  table {w.stats.total_bytes / 2**20:6.1f} MiB  "
            f"claim idx {w.stats.claim_idx_bytes / 2**20:5.1f} MiB  other load {w.other_load:.0%}"
            + (f"  ERRORS {w.errors}" if w.errors else "")
        )

    async def window(phase: str) -> Window:
        w = await measure_window(phase, cfg.window, counters, pool, backend_pid)
        run.windows.append(w)
        log(window_line(w))
        return w

    async def explain(label: str) -> None:
        e = await explain_claim(pool, label, cfg.lease_seconds)
        run.explains.append(e)
        log(f"  EXPLAIN {label}: {e.execution_ms:.2f} ms, {e.shared_hit + e.shared_read:,} buffers ({e.scan})")

    try:
        async with load(
            cfg.hold_path, cfg.hold_claimers, lease=cfg.lease_seconds, db=db, backend=backend, counters=counters,
            feeder=feeder,
        ):
            await asyncio.sleep(cfg.warmup)
            run.load_start = time.monotonic()
            for _ in range(cfg.baseline_windows):
                await window("baseline")
            run.dead_reference = max(
                [w.stats.n_dead for w in run.windows] + [s.n_dead for s in run.samples if s.at >= run.load_start]
            )
            await explain("baseline")
            async with long_transaction(db, cfg.hold_kind) as holder:
                run.hold_start = time.monotonic()
                log(f"  long transaction open (pid {holder.get_server_pid()})")
                n_hold = max(1, math.ceil(cfg.hold_seconds / cfg.window))
                for i in range(n_hold):
                    await window("hold")
                    if i == n_hold // 2 - 1:
                        await explain("hold, middle")
                await explain("hold, end")
                async with pool.acquire() as conn:
                    age = await conn.fetchval(
                        "SELECT age(coalesce(backend_xid, backend_xmin)) FROM pg_stat_activity WHERE pid = $1",
                        holder.get_server_pid(),
                    )
                run.xids_during_hold = int(age or 0)
            run.hold_end = time.monotonic()
            log(f"  long transaction rolled back after {run.hold_end - run.hold_start:.0f} s "
                f"({run.xids_during_hold:,} xids behind)")
            deadline = run.hold_end + cfg.recovery_timeout
            after = 0
            while True:
                w = await window("after")
                after += 1
                if after == 1:
                    await explain("after release")
                if run.recovered_at is None:
                    run.recovered_at = next(
                        (s.at for s in run.samples if s.at > run.hold_end and s.n_dead <= run.dead_reference), None
                    )
                if run.recovered_at is not None and after >= cfg.min_after_windows:
                    break
                if w.started + w.seconds >= deadline:
                    break
            await explain("end")
    finally:
        stop.set()
        await asyncio.gather(*helpers, return_exceptions=True)
    run.errors = counters.errors
    run.first_error = counters.first_error
    run.feeder_statements = feeder.statements
    return run


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def hold_windows_table(run: HoldRun) -> str:
    header = ("t (s)", "phase", "actions/s", "claims/s", "n_live_tup", "n_dead_tup", "table MiB (total)",
              "claim idx MiB", "CPU % client / backend / pg / other", "pg CPU µs/action", "vacuum in window")
    rows = []
    for w in run.windows:
        end = w.started + w.seconds
        vac = [v for v in run.vacuums if w.started <= v.started < end]
        note = ", ".join(
            f"{v.kind} {v.seconds:.1f} s"
            + (f" (removed {v.removed:,}, {v.not_removable:,} not removable)" if v.removed is not None
               and v.not_removable is not None else "")
            for v in vac
        )
        rows.append([
            f"{round(end - run.hold_start):+d}", w.phase + (" ~" if w.other_load > MAX_OTHER_LOAD else ""),
            f"{w.actions_per_s:,.0f}", f"{w.claims_per_s:,.0f}", f"{w.stats.n_live:,}", f"{w.stats.n_dead:,}",
            _mib(w.stats.total_bytes), _mib(w.stats.claim_idx_bytes), _cpu_pct(w, backend=run.path == HTTP),
            f"{1e6 * w.cpu.postgres / w.done:,.0f}" if w.done else "n/a", note or "-",
        ])
    return markdown_table(header, rows, (True, False, True, True, True, True, True, True, True, True, False))


@dataclass(frozen=True, slots=True)
class HoldSummary:
    baseline: float
    hold_mean: float
    hold_worst: float
    last_hold: float
    after_first: float
    after_mean: float
    dead_baseline: int
    dead_peak: int
    dead_after: int
    recovery_s: float | None
    size_baseline: int
    size_peak: int
    size_after: int
    idx_baseline: int
    idx_peak: int
    idx_after: int

    @property
    def drop_mean(self) -> float:
        return 1 - self.hold_mean / self.baseline if self.baseline else 0.0

    @property
    def drop_worst(self) -> float:
        return 1 - self.hold_worst / self.baseline if self.baseline else 0.0


def summarize(run: HoldRun) -> HoldSummary:
    base = [w for w in run.windows if w.phase == "baseline"]
    hold = [w for w in run.windows if w.phase == "hold"]
    after = [w for w in run.windows if w.phase == "after"]
    held = [s for s in run.samples if s.at >= run.hold_start] + [w.stats for w in hold + after]
    last = after[-1].stats if after else held[-1]
    return HoldSummary(
        baseline=_mean([w.actions_per_s for w in base]),
        hold_mean=_mean([w.actions_per_s for w in hold]),
        hold_worst=min((w.actions_per_s for w in hold), default=0.0),
        last_hold=hold[-1].actions_per_s if hold else 0.0,
        after_first=after[0].actions_per_s if after else 0.0,
        after_mean=_mean([w.actions_per_s for w in after]),
        dead_baseline=run.dead_reference,
        dead_peak=max(s.n_dead for s in held),
        dead_after=last.n_dead,
        recovery_s=(run.recovered_at - run.hold_end) if run.recovered_at is not None else None,
        size_baseline=base[-1].stats.total_bytes, size_peak=max(s.total_bytes for s in held),
        size_after=last.total_bytes,
        idx_baseline=base[-1].stats.claim_idx_bytes, idx_peak=max(s.claim_idx_bytes for s in held),
        idx_after=last.claim_idx_bytes,
    )


def hold_summary_table(run: HoldRun, cfg: Config) -> str:
    s = summarize(run)
    verdict_mean = "MET" if s.drop_mean <= DROP_TARGET else "NOT MET"
    verdict_worst = "MET" if s.drop_worst <= DROP_TARGET else "NOT MET"
    recovery = (
        f"{s.recovery_s:.0f} s after the rollback" if s.recovery_s is not None
        else f"not within {cfg.recovery_timeout:.0f} s"
    )
    during = [v for v in run.vacuums if run.hold_start <= v.started < run.hold_end and v.kind == "VACUUM"]
    after = [v for v in run.vacuums if v.started >= run.hold_end and v.kind == "VACUUM"]
    rows = [
        ["baseline throughput", f"{s.baseline:,.0f} actions/s (mean of {cfg.baseline_windows} windows)", ""],
        ["during the hold", f"mean {s.hold_mean:,.0f}, worst window {s.hold_worst:,.0f}, last {s.last_hold:,.0f} "
         "actions/s", ""],
        [f"drop (target <= {DROP_TARGET:.0%})", f"mean {s.drop_mean:.0%}, worst window {s.drop_worst:.0%}",
         f"mean: {verdict_mean}; worst: {verdict_worst}"],
        ["after the rollback", f"first window {s.after_first:,.0f}, mean {s.after_mean:,.0f} actions/s", ""],
        ["n_dead_tup baseline → peak → after", f"{s.dead_baseline:,} → {s.dead_peak:,} → {s.dead_after:,}", ""],
        ["back to baseline dead tuples", recovery, "MET" if s.recovery_s is not None else "NOT MET"],
        ["table size (total) baseline → peak → after",
         f"{_mib(s.size_baseline)} → {_mib(s.size_peak)} → {_mib(s.size_after)} MiB", ""],
        ["claimable index baseline → peak → after",
         f"{_mib(s.idx_baseline)} → {_mib(s.idx_peak)} → {_mib(s.idx_after)} MiB", ""],
        ["xids the long transaction was behind at rollback", f"{run.xids_during_hold:,}", ""],
        ["HOT updates (n_tup_hot_upd / n_tup_upd over the run)", _hot_ratio(run), ""],
        ["(auto)vacuums during the hold / after",
         f"{len(during)} / {len(after)}" + (" (emulated, see above)" if run.emulated else ""), ""],
    ]
    return markdown_table(("", "measured", "status"), rows, (False, False, False))


def _hot_ratio(run: HoldRun) -> str:
    first, last = run.windows[0].stats, run.windows[-1].stats
    upd = last.upd - first.upd
    hot = last.hot_upd - first.hot_upd
    return f"{hot:,} / {upd:,} = {hot / upd:.1%}" if upd else "n/a"


def explain_table(run: HoldRun) -> str:
    header = ("when", "t (s)", "execution ms", "planning ms", "buffers hit / read", "candidates scan",
              "scan buffers", "rows")
    rows = [
        [e.label, f"{round(e.at - run.hold_start):+d}", f"{e.execution_ms:.2f}", f"{e.planning_ms:.2f}",
         f"{e.shared_hit:,} / {e.shared_read:,}", e.scan, f"{e.scan_buffers:,}", str(e.rows)]
        for e in run.explains
    ]
    return markdown_table(header, rows, (False, True, True, True, True, False, True, True))


# --- the report --------------------------------------------------------------------------------


def report(
    cfg: Config, scale: Sequence[ScaleCell], hold: HoldRun | None, db: BenchDatabase, command: str,
    started: dt.datetime, load_before: str, quiet: float | None, seconds: float,
) -> str:
    windows = [c.window for c in scale] + (hold.windows if hold else [])
    other = _mean([w.other_load for w in windows])
    disturbed = sum(w.other_load > MAX_OTHER_LOAD for w in windows)
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC with `{command}` ({seconds / 60:.0f} min); machine: "
        f"{machine_line(db.server_version)}; load average before the run: {load_before}"
        + (f", other processes {quiet:.0%} of a core just before it" if quiet is not None else "")
        + f". Shared machine: during the measured windows other processes used {other:.0%} of a core on "
        f"average; {disturbed} of {len(windows)} windows above {MAX_OTHER_LOAD:.0%} (marked `~`).",
        "",
        "Load: the claim → no-op → result cycle, max_actions 10, "
        f"lease {cfg.lease_seconds} s (the worker's default), one signed POST per result "
        "(HTTP: `python -m prgate.cli backend` as a separate process, DB_POOL_MAX=20, each claimer its own "
        "aiohttp session; raw: `outbox.claim` / `outbox.apply_result` through asyncpg, each claimer its own "
        f"connection). A feeder tops the PENDING backlog up to {cfg.backlog:,} rows (one PR each, "
        f"~{PAYLOAD_CHARS}-character comment payload) as the claimers take them; DONE rows stay in the table, "
        "as in prgate. CPU columns: CPU-seconds per wall-second (100 = one core); other = the rest of the "
        "machine.",
    ]
    if scale:
        lines += [
            "",
            f"**Claimer scaling** ({cfg.scale_seconds:g} s per cell after {cfg.scale_warmup:g} s warm-up, "
            f"{cfg.rounds} round(s) in ABBA order, outbox emptied before each cell):",
            "",
            scaling_table(scale),
            "",
            scaling_verdict_table(scale),
        ]
    if hold and hold.av:
        lines += [
            "",
            f"**Long transaction** ({cfg.hold_claimers} {cfg.hold_path} claimers; starts from {cfg.history:,} DONE "
            f"rows; {cfg.window:g} s windows; another session runs "
            + ("`BEGIN; SELECT txid_current();`" if cfg.hold_kind == "xid"
               else "`BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1 FROM bot_actions LIMIT 1`")
            + f" and idles in it for {cfg.hold_seconds:g} s, then rolls back; t = 0 is the BEGIN). "
            + hold.av.describe() + "."
            + (
                f" **Autovacuum is off on this server**, so the benchmark emulates it for bot_actions: every "
                f"{hold.naptime:g} s it applies those thresholds to pg_stat_user_tables and runs VACUUM / ANALYZE "
                "with that cost delay and limit."
                if hold.emulated else ""
            )
            + " n_dead_tup / n_live_tup lag up to ~1 s (PG15 stats flush interval); table MiB is "
            "pg_total_relation_size.",
            "",
            hold_windows_table(hold),
            "",
            hold_summary_table(hold, cfg),
            "",
            "EXPLAIN (ANALYZE, BUFFERS) of the claim statement (max_actions 10, in a transaction rolled back):",
            "",
            explain_table(hold),
        ]
        if hold.errors:
            lines += ["", f"Errors during the long-transaction part: {hold.errors} (first: {hold.first_error})"]
    errors = [c for c in scale if c.window.errors]
    if errors:
        lines += ["", "Cells with errors: " + "; ".join(
            f"{c.path} {c.claimers} round {c.round + 1}: {c.window.errors} ({c.first_error})" for c in errors)]
    return "\n".join(lines)


async def run(cfg: Config, command: str, quiet: float | None) -> str:
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    load_before = load_average()
    secret = secrets.token_hex(32)

    def log(line: str) -> None:
        print(line, flush=True)

    with ExitStack() as stack:
        async with bench_database(stack, prefix="prgate_bench_contention") as db:
            log(f"{TAG}: database {db.name} on PostgreSQL {db.server_version}")
            pool = await asyncpg.create_pool(db.url, min_size=2, max_size=6, init=init_connection)
            try:
                await insert_installation(pool)
                async with backend_process(db.url, secret) as backend:
                    await warm_up(backend)
                    scale: list[ScaleCell] = []
                    hold: HoldRun | None = None
                    if not cfg.skip_scaling:
                        log(f"{TAG}: claimer scaling")
                        scale = await measure_scaling(cfg, db, pool, backend, log)
                    if not cfg.skip_hold:
                        log(f"{TAG}: long transaction, {cfg.hold_seconds:g} s")
                        hold = await measure_hold(cfg, db, pool, backend, log)
            finally:
                await pool.close()
            return report(cfg, scale, hold, db, command, started, load_before, quiet, time.monotonic() - t0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.parser("bench.contention", __doc__, quick="5 s cells, one round, 30 s hold: ~1.5 min",
                        wait_quiet_default=None,
                        wait_quiet_help="first wait up to SECONDS for the machine to be idle (default 60, --quick 0)")
    parser.add_argument("--hold-seconds", type=float, help="how long the transaction stays open (default 180, "
                        "--quick 30)")
    parser.add_argument("--recovery-timeout", type=float, help="after the rollback, wait at most this long for "
                        "n_dead_tup to return to baseline (default 300, --quick 120)")
    parser.add_argument("--hold-path", choices=(HTTP, "raw"), help="claimers of the long-transaction part "
                        "(default http)")
    parser.add_argument("--hold-kind", choices=("xid", "snapshot"), help="xid: BEGIN; SELECT txid_current() "
                        "(default); snapshot: REPEATABLE READ and a read of bot_actions")
    parser.add_argument("--history", type=int, help="DONE rows the long-transaction part starts with "
                        "(default 100000, --quick 10000)")
    parser.add_argument("--naptime", type=float, help="emulated autovacuum naptime when the server's autovacuum "
                        "is off (default: the server's autovacuum_naptime, --quick 15)")
    parser.add_argument("--lease-seconds", type=int, help="lease the claimers ask for (default 60, the worker's)")
    parser.add_argument("--seconds", type=float, help="measured seconds per scaling cell (default 20, --quick 5)")
    parser.add_argument("--rounds", type=int, help="rounds of the scaling cells (default 2, --quick 1)")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-hold", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    cfg = Config(
        scale_seconds=args.seconds or base.scale_seconds, scale_warmup=base.scale_warmup,
        rounds=args.rounds or base.rounds, window=base.window, warmup=base.warmup,
        baseline_windows=base.baseline_windows,
        hold_seconds=args.hold_seconds if args.hold_seconds is not None else base.hold_seconds,
        recovery_timeout=args.recovery_timeout if args.recovery_timeout is not None else base.recovery_timeout,
        min_after_windows=base.min_after_windows, hold_claimers=base.hold_claimers,
        hold_path=RAW if args.hold_path == "raw" else base.hold_path, hold_kind=args.hold_kind or base.hold_kind,
        backlog=base.backlog, lease_seconds=args.lease_seconds or base.lease_seconds,
        history=args.history if args.history is not None else base.history,
        naptime=args.naptime if args.naptime is not None else base.naptime,
        skip_scaling=args.skip_scaling, skip_hold=args.skip_hold,
    )
    wait = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.quick else 60.0)
    quiet = wait_quiet_before_start(wait, TAG, MAX_OTHER_LOAD).busy if wait > 0 else None
    t0 = time.monotonic()
    text = asyncio.run(run(cfg, cli.command_line(TAG, argv), quiet))
    cli.publish(text, started=t0, write_docs=args.write_docs,
                heading="Contention and bloat (`python -m bench.contention`)", tag=TAG)
    return 0


if __name__ == "__main__":
    sys.exit(main())
