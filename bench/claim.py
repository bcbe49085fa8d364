"""Outbox claim / result throughput: the HTTP endpoints against the raw SQL floor.

    .venv/bin/python -m bench.claim               # full grid, a few minutes on 2 cores
    .venv/bin/python -m bench.claim --quick       # small grid, < 30 s: does the script work?
    .venv/bin/python -m bench.claim --write-docs  # also rewrite its section of docs/benchmarks.md

Creates its own database on the PostgreSQL the tests would use (DATABASE_URL, else
127.0.0.1:5432, else an embedded one), starts the real backend as a separate process
(`python -m prgate.cli backend`), and for every (claimers, max_actions) cell seeds N actions,
each on its own PR, then drains them:

* http cycle        signed POST /claim, then one signed POST /{id}/result SUCCEEDED per action
* http claim-only   signed POST /claim until the queue is empty, no results
* raw sql cycle     the same `_CLAIM` and `_RESULT` statements straight through asyncpg
* raw sql claim-only

Every claimer has its own aiohttp ClientSession (or its own asyncpg connection). Nothing is
asserted: targets are reported MET / NOT MET.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import aiohttp
import asyncpg

from backend_api.store import outbox
from bench.harness import cli
from bench.harness.backend import (
    CLAIM_PATH,
    DB_POOL_MAX,
    LEASE_SECONDS,
    Backend,
    Tally,
    backend_in_process,
    backend_process,
    claimable_left,
    dumps,
    insert_installation,
    reset_and_seed,
    signed_post,
    warm_up,
)
from bench.harness.cpu import CpuMeter, CpuSample
from bench.harness.db import BenchDatabase, bench_database, init_connection, postgres_pids
from bench.harness.quiet import least_disturbed, wait_quiet_before_start
from bench.harness.report import load_average, machine_line, markdown_table
from shared_contracts.actions import Outcome

HTTP_CYCLE = "http cycle"
HTTP_CLAIM = "http claim-only"
RAW_CYCLE = "raw sql cycle"
RAW_CLAIM = "raw sql claim-only"
INPROC_CYCLE = "http cycle, in-proc"
INPROC_CLAIM = "http claim-only, in-proc"
MODE_ORDER = (HTTP_CYCLE, HTTP_CLAIM, INPROC_CYCLE, INPROC_CLAIM, RAW_CYCLE, RAW_CLAIM)
# Which raw mode is each mode's floor.
FLOOR = {
    HTTP_CYCLE: RAW_CYCLE, INPROC_CYCLE: RAW_CYCLE, RAW_CYCLE: RAW_CYCLE,
    HTTP_CLAIM: RAW_CLAIM, INPROC_CLAIM: RAW_CLAIM, RAW_CLAIM: RAW_CLAIM,
}
CYCLE_MODES = {HTTP_CYCLE, INPROC_CYCLE, RAW_CYCLE}
# The machine may be shared: a cell during which other processes used more than this much of a
# core is measured again, up to Grid.retries times, and the least disturbed run is kept (and
# flagged with `~` in the table if it is still above the threshold).
MAX_OTHER_LOAD = 0.25


@dataclass(frozen=True, slots=True)
class Grid:
    claimers: tuple[int, ...]
    max_actions: tuple[int, ...]
    seconds_per_cell: float  # aim: N is sized from the last measured rate to take about this long
    min_actions: int
    max_seeded: int
    modes: tuple[str, ...]
    retries: int  # re-measure a disturbed cell this many times (see MAX_OTHER_LOAD)


_HEADLINE = (HTTP_CYCLE, HTTP_CLAIM, RAW_CYCLE, RAW_CLAIM)
QUICK = Grid((1, 4), (1, 10), 0.4, 150, 4_000, _HEADLINE, retries=0)
FULL = Grid((1, 4, 8, 16, 32), (1, 10, 50), 2.5, 1_000, 40_000, _HEADLINE, retries=2)


@dataclass(frozen=True, slots=True)
class Cell:
    mode: str
    claimers: int
    max_actions: int
    seeded: int
    actions: int
    claims: int
    seconds: float
    cpu: CpuSample
    errors: int
    first_error: str
    leftover: int  # actions still claimable after the claimers stopped (should be 0)

    @property
    def actions_per_s(self) -> float:
        return self.actions / self.seconds if self.seconds > 0 else 0.0

    @property
    def other_load(self) -> float:
        """CPU the rest of the machine used during the cell, in cores."""
        return self.cpu.other / self.seconds if self.seconds > 0 else 0.0

    @property
    def claims_per_s(self) -> float:
        return self.claims / self.seconds if self.seconds > 0 else 0.0


# --- the claimers ------------------------------------------------------------------------------


async def http_claimer(
    session: aiohttp.ClientSession, secret: str, worker_id: str, max_actions: int, cycle: bool,
    tally: Tally, start: asyncio.Event,
) -> None:
    claim_body = dumps({"worker_id": worker_id, "max_actions": max_actions, "lease_seconds": LEASE_SECONDS})
    await start.wait()
    failures = 0
    while True:
        status, data = await signed_post(session, secret, CLAIM_PATH, claim_body)
        tally.claims += 1
        if status != 200:
            tally.error(f"claim -> {status} {data}")
            failures += 1
            if failures >= 20:
                return
            continue
        actions = data["actions"]
        if not actions:
            return
        if not cycle:
            tally.actions += len(actions)
            continue
        for action in actions:
            path = f"/internal/v2/bot-actions/{action['action_id']}/result"
            body = dumps({"worker_id": worker_id, "attempt": action["attempt"], "outcome": "SUCCEEDED"})
            status, data = await signed_post(session, secret, path, body)
            if status == 200 and isinstance(data, dict) and data.get("status") == "DONE":
                tally.actions += 1
            else:
                tally.error(f"result -> {status} {data}")
                failures += 1
                if failures >= 20:
                    return


async def raw_claimer(
    conn: asyncpg.pool.PoolConnectionProxy, worker_id: str, max_actions: int, cycle: bool,
    tally: Tally, start: asyncio.Event,
) -> None:
    await start.wait()
    while True:
        rows = await outbox.claim(conn, worker_id, max_actions, LEASE_SECONDS)
        tally.claims += 1
        if not rows:
            return
        if not cycle:
            tally.actions += len(rows)
            continue
        for row in rows:
            applied = await outbox.apply_result(
                conn, row["action_id"], worker_id, row["attempt"], Outcome.SUCCEEDED, 0.0, None
            )
            if applied is None:
                tally.error(f"result for {row['action_id']} found no lease")
            else:
                tally.actions += 1


async def _timed(
    start: asyncio.Event, tasks: Sequence[Awaitable[None]], meter: CpuMeter
) -> tuple[float, CpuSample]:
    running = [asyncio.ensure_future(t) for t in tasks]
    await asyncio.sleep(0)  # let every claimer reach start.wait()
    meter.start()
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*running)
    seconds = time.perf_counter() - t0
    return seconds, meter.stop()


async def run_http(
    backend: Backend, claimers: int, max_actions: int, cycle: bool, tally: Tally, meter: CpuMeter
) -> tuple[float, CpuSample]:
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(aiohttp.ClientSession(base_url=backend.base_url))
            for _ in range(claimers)
        ]
        # Open every keep-alive connection before the clock starts.
        for session in sessions:
            async with session.get("/healthz") as resp:
                await resp.read()
        start = asyncio.Event()
        tasks = [
            http_claimer(s, backend.secret, f"bench-{i}", max_actions, cycle, tally, start)
            for i, s in enumerate(sessions)
        ]
        return await _timed(start, tasks, meter)


async def run_raw(
    pool: asyncpg.Pool, claimers: int, max_actions: int, cycle: bool, tally: Tally, meter: CpuMeter
) -> tuple[float, CpuSample]:
    async with contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(pool.acquire()) for _ in range(claimers)]
        start = asyncio.Event()
        tasks = [raw_claimer(c, f"bench-{i}", max_actions, cycle, tally, start) for i, c in enumerate(conns)]
        return await _timed(start, tasks, meter)


# --- the run -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Sizer:
    """Choose N from the last rate measured for the same mode, so each cell takes about the same time."""

    grid: Grid
    rates: dict[tuple[str, int], float] = field(default_factory=dict)

    def actions_for(self, mode: str, max_actions: int) -> int:
        rate = self.rates.get((mode, max_actions))
        if rate is None:  # first cell of its kind: a rough guess from a 2-core machine
            base = 600.0 if mode in (RAW_CYCLE, RAW_CLAIM) else 250.0
            rate = base * (max_actions**0.8 if mode not in CYCLE_MODES else 1.5 if max_actions > 1 else 1.0)
        wanted = int(rate * self.grid.seconds_per_cell)
        return max(self.grid.min_actions, min(self.grid.max_seeded, wanted))

    def record(self, cell: Cell) -> None:
        if cell.actions:
            self.rates[(cell.mode, cell.max_actions)] = cell.actions_per_s


async def measure_all(grid: Grid, db: BenchDatabase, log: Callable[[str], None]) -> list[Cell]:
    secret = secrets.token_hex(32)
    cells: list[Cell] = []
    sizer = Sizer(grid)
    # Idle connections are never closed: the raw claimers' PostgreSQL pids stay those we measure.
    pool = await asyncpg.create_pool(
        db.url, min_size=2, max_size=max(grid.claimers) + 2, init=init_connection,
        max_inactive_connection_lifetime=0,
    )
    try:
        await insert_installation(pool)
        async with contextlib.AsyncExitStack() as stack:
            backends: dict[str, Backend] = {}
            if {HTTP_CYCLE, HTTP_CLAIM} & set(grid.modes):
                backends["process"] = await stack.enter_async_context(backend_process(db.url, secret))
            if {INPROC_CYCLE, INPROC_CLAIM} & set(grid.modes):
                backends["in-proc"] = await stack.enter_async_context(backend_in_process(db.url, secret))
            for backend in backends.values():
                await warm_up(backend)
            # Open the raw claimers' connections now, so they are in the CPU accounting.
            async with contextlib.AsyncExitStack() as opened:
                for _ in range(max(grid.claimers)):
                    await opened.enter_async_context(pool.acquire())
            for max_actions in grid.max_actions:
                for claimers in grid.claimers:
                    for mode in grid.modes:
                        cell = await measure_quietest(mode, claimers, max_actions, sizer, pool, backends, log)
                        sizer.record(cell)
                        cells.append(cell)
    finally:
        await pool.close()
    return cells


def _cell_line(cell: Cell) -> str:
    return (
        f"  {cell.mode:<24} claimers {cell.claimers:>2}  max_actions {cell.max_actions:>2}  "
        f"{cell.actions:>6} actions in {cell.seconds:5.2f} s = {cell.actions_per_s:>8,.0f}/s"
        f"  (other load {cell.other_load:.0%} of a core)"
        + (f"  ERRORS {cell.errors}: {cell.first_error}" if cell.errors else "")
        + (f"  LEFTOVER {cell.leftover}" if cell.leftover else "")
    )


async def measure_quietest(
    mode: str, claimers: int, max_actions: int, sizer: Sizer, pool: asyncpg.Pool,
    backends: dict[str, Backend], log: Callable[[str], None],
) -> Cell:
    """Measure a cell; while other processes took more than MAX_OTHER_LOAD of a core, measure it
    again (up to `sizer.grid.retries` times) and keep the least disturbed run."""
    return await least_disturbed(
        lambda: measure_cell(mode, claimers, max_actions, sizer, pool, backends), retries=sizer.grid.retries,
        rank=lambda c: c.other_load, good=lambda c: c.other_load <= MAX_OTHER_LOAD,
        show=lambda c, attempt: log(_cell_line(c) + (f"  [retry {attempt}]" if attempt else "")),
    )


async def measure_cell(
    mode: str, claimers: int, max_actions: int, sizer: Sizer, pool: asyncpg.Pool,
    backends: dict[str, Backend],
) -> Cell:
    seeded = sizer.actions_for(mode, max_actions)
    await reset_and_seed(pool, seeded)
    pg_pids = await postgres_pids(pool)  # the backend's pool may have replaced idle connections
    tally = Tally()
    cycle = mode in CYCLE_MODES
    if mode in (RAW_CYCLE, RAW_CLAIM):
        meter = CpuMeter(None, pg_pids)
        seconds, cpu = await run_raw(pool, claimers, max_actions, cycle, tally, meter)
    else:
        backend = backends["in-proc" if mode in (INPROC_CYCLE, INPROC_CLAIM) else "process"]
        meter = CpuMeter(backend.pid, pg_pids)
        seconds, cpu = await run_http(backend, claimers, max_actions, cycle, tally, meter)
    return Cell(
        mode=mode, claimers=claimers, max_actions=max_actions, seeded=seeded, actions=tally.actions,
        claims=tally.claims, seconds=seconds, cpu=cpu, errors=tally.errors, first_error=tally.first_error,
        leftover=await claimable_left(pool),
    )


# --- the report --------------------------------------------------------------------------------


def results_table(cells: Sequence[Cell]) -> str:
    floors = {(c.mode, c.claimers, c.max_actions): c.actions_per_s for c in cells}
    header = (
        "mode", "claimers", "max_actions", "actions", "seconds", "claims/s", "actions/s", "vs raw floor",
        "CPU % of a core: client / backend / pg / other", "server CPU µs/action",
    )
    rows: list[list[str]] = []
    for c in sorted(cells, key=lambda c: (MODE_ORDER.index(c.mode), c.max_actions, c.claimers)):
        floor = floors.get((FLOOR[c.mode], c.claimers, c.max_actions))
        ratio = f"{c.actions_per_s / floor:.2f}" if floor else "n/a"
        pct = [f"{100 * v / c.seconds:.0f}" for v in (c.cpu.client, c.cpu.backend, c.cpu.postgres, c.cpu.other)]
        server = f"{1e6 * (c.cpu.backend + c.cpu.postgres) / c.actions:,.0f}" if c.actions else "n/a"
        if c.mode in (RAW_CYCLE, RAW_CLAIM):
            pct[1] = "-"
        elif c.mode in (INPROC_CYCLE, INPROC_CLAIM):
            pct[1] = "(in client)"
            server = "n/a"
        rows.append([
            c.mode + (" (!)" if c.errors or c.leftover else "") + (" ~" if c.other_load > MAX_OTHER_LOAD else ""),
            str(c.claimers), str(c.max_actions),
            f"{c.actions:,}", f"{c.seconds:.2f}", f"{c.claims_per_s:,.0f}", f"{c.actions_per_s:,.0f}", ratio,
            " / ".join(pct), server,
        ])
    right = (False, True, True, True, True, True, True, True, True, True)
    return markdown_table(header, rows, right)


def _best(cells: Sequence[Cell], key: Callable[[Cell], float]) -> Cell | None:
    return max(cells, key=key) if cells else None


def targets(cells: Sequence[Cell]) -> list[tuple[str, str, str]]:
    """(target, measured, MET / NOT MET / n/a) for the issue's targets, on the separate-process backend."""
    out: list[tuple[str, str, str]] = []

    def pick(mode: str, **where: int) -> list[Cell]:
        return [c for c in cells if c.mode == mode and all(getattr(c, k) == v for k, v in where.items())]

    def verdict(ok: bool, *used: Cell) -> str:
        noisy = any(c.other_load > MAX_OTHER_LOAD for c in used)
        return ("MET" if ok else "NOT MET") + (" (noisy cell: re-measure)" if noisy else "")

    def mark(cell: Cell) -> str:
        return " ~" if cell.other_load > MAX_OTHER_LOAD else ""

    best = _best(pick(HTTP_CLAIM, max_actions=1), lambda c: c.claims_per_s)
    out.append((
        "HTTP claim endpoint, max_actions 1: >= 1,500 claims/s",
        f"{best.claims_per_s:,.0f} claims/s (best cell: {best.claimers} claimers)" if best else "not measured",
        verdict(best.claims_per_s >= 1_500, best) if best else "n/a",
    ))
    best = _best(pick(HTTP_CLAIM, max_actions=10), lambda c: c.actions_per_s)
    out.append((
        "HTTP claim endpoint, max_actions 10: >= 10,000 actions/s",
        f"{best.actions_per_s:,.0f} actions/s (best cell: {best.claimers} claimers)" if best else "not measured",
        verdict(best.actions_per_s >= 10_000, best) if best else "n/a",
    ))
    four = pick(HTTP_CYCLE, claimers=4)
    best = _best(four, lambda c: c.actions_per_s)
    out.append((
        "Full claim -> result cycle, 4 claimers: >= 2,000 actions/s",
        (
            ", ".join(f"max_actions {c.max_actions}: {c.actions_per_s:,.0f}{mark(c)}" for c in four) + " actions/s"
            if four else "not measured"
        ),
        verdict(best.actions_per_s >= 2_000, best) if best else "n/a",
    ))
    pairs = [
        (ma, eight[0], thirty_two[0])
        for ma in sorted({c.max_actions for c in cells})
        if (eight := pick(HTTP_CYCLE, claimers=8, max_actions=ma))
        and (thirty_two := pick(HTTP_CYCLE, claimers=32, max_actions=ma))
    ]
    out.append((
        "Full cycle throughput at 32 claimers >= 90% of that at 8",
        (
            ", ".join(
                f"max_actions {ma}: {b.actions_per_s:,.0f}{mark(b)} / {a.actions_per_s:,.0f}{mark(a)} = "
                f"{b.actions_per_s / a.actions_per_s:.0%}"
                for ma, a, b in pairs if a.actions_per_s
            ) or "not measured (8 and 32 claimers are not in this grid)"
        ),
        (
            verdict(
                all(b.actions_per_s >= 0.9 * a.actions_per_s for _, a, b in pairs),
                *(cell for _, a, b in pairs for cell in (a, b)),
            )
            if pairs else "n/a"
        ),
    ))
    return out


def targets_table(cells: Sequence[Cell]) -> str:
    rows = [list(t) for t in targets(cells)]
    return markdown_table(("target", "measured", "status"), rows, (False, False, False))


def report(
    grid: Grid, cells: Sequence[Cell], db: BenchDatabase, command: str, started: dt.datetime, load_before: str
) -> str:
    errors = [c for c in cells if c.errors or c.leftover]
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC with `{command}`; machine: {machine_line(db.server_version)}; "
        f"load average before the run: {load_before}.",
        "",
        f"Backend: `python -m prgate.cli backend` as a separate process (DB_POOL_MAX={DB_POOL_MAX}), "
        "client and PostgreSQL on the same machine. Each cell seeds its actions (one PR each, "
        f"N sized for ~{grid.seconds_per_cell:g} s) into an emptied outbox and drains them; every claimer has "
        "its own aiohttp session (raw modes: its own asyncpg connection). The raw floor is `outbox.claim` / "
        "`outbox.apply_result` straight through asyncpg. CPU columns are CPU-seconds per wall-second "
        "(100 = one full core); pg counts this database's backends and the server's auxiliary processes; "
        "other is the rest of the machine's busy CPU (other processes, kernel work not charged to ours): "
        "when it is high, the cell was disturbed; "
        "server CPU is backend + pg CPU per action, the cost that does not move to the workers' machines. "
        "`in-proc` rows serve `create_app` from the client's own event loop.",
        "",
        results_table(cells),
        "",
        "Targets (separate-process backend; best cell of the grid where the target names no concurrency):",
        "",
        targets_table(cells),
    ]
    disturbed = [c for c in cells if c.other_load > MAX_OTHER_LOAD]
    if disturbed:
        lines += ["", f"`~`: {len(disturbed)} of {len(cells)} cells ran while other processes used more than "
                  f"{MAX_OTHER_LOAD:.0%} of a core, even after {grid.retries} retries: read them as noisy."]
    if errors:
        lines += ["", "(!) cells with errors or leftover actions:"]
        lines += [f"- {c.mode} c={c.claimers} ma={c.max_actions}: {c.errors} errors "
                  f"({c.first_error}), {c.leftover} left" for c in errors]
    return "\n".join(lines)


async def run(grid: Grid, command: str) -> tuple[list[Cell], str]:
    started = dt.datetime.now(dt.UTC)
    load_before = load_average()
    with ExitStack() as stack:
        async with bench_database(stack) as db:
            print(f"bench.claim: database {db.name} on PostgreSQL {db.server_version}", flush=True)
            cells = await measure_all(grid, db, lambda line: print(line, flush=True))
            return cells, report(grid, cells, db, command, started, load_before)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.parser("bench.claim", __doc__, quick="small grid (claimers 1,4; max_actions 1,10), < 30 s")
    parser.add_argument("--in-process", action="store_true",
                        help="also measure the backend in this process's event loop (AppRunner/TCPSite)")
    parser.add_argument("--claimers", type=cli.int_list, help="override the claimer counts, e.g. 1,8,32")
    parser.add_argument("--max-actions", type=cli.int_list, help="override the max_actions values, e.g. 1,10")
    parser.add_argument("--seconds", type=float, help="target seconds per cell (N is sized from it)")
    parser.add_argument(
        "--retries", type=int,
        help=f"re-measure a cell during which other processes used > {MAX_OTHER_LOAD * 100:.0f}%% of a core "
        "(default: 2, --quick: 0)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    grid = QUICK if args.quick else FULL
    modes = grid.modes + ((INPROC_CYCLE, INPROC_CLAIM) if args.in_process else ())
    grid = Grid(
        claimers=args.claimers or grid.claimers,
        max_actions=args.max_actions or grid.max_actions,
        seconds_per_cell=args.seconds or grid.seconds_per_cell,
        min_actions=grid.min_actions,
        max_seeded=grid.max_seeded,
        modes=tuple(m for m in MODE_ORDER if m in modes),
        retries=grid.retries if args.retries is None else args.retries,
    )
    if args.wait_quiet:
        wait_quiet_before_start(args.wait_quiet, "bench.claim", MAX_OTHER_LOAD)
    t0 = time.monotonic()
    _, text = asyncio.run(run(grid, cli.command_line("bench.claim", argv)))
    cli.publish(text, started=t0, write_docs=args.write_docs, heading="Outbox claim / result", tag="bench.claim")
    return 0


if __name__ == "__main__":
    sys.exit(main())
