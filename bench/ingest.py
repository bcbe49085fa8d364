"""Webhook ingest: signed GitHub deliveries through the receiver and the backend, at rising rates.

    .venv/bin/python -m bench.ingest              # steps of 5 s from 100/s up, until saturation
    .venv/bin/python -m bench.ingest --quick      # short steps: does the script work?
    .venv/bin/python -m bench.ingest --rates 200,400,800 --seconds 10 --write-docs
    .venv/bin/python -m bench.ingest --receivers 2   # two receiver processes, as the chart deploys two
    .venv/bin/python -m bench.ingest --repeat 5      # the ladder five times (default 3): median run per rate

Starts `prgate backend` and `prgate bot` (the receiver) as separate processes on a fresh database
and Redis (as the tests find them), installs one repository with a signed `installation` webhook,
then sends `pull_request.opened` deliveries from unverified authors — real payloads (the octokit
examples in tests/fixtures), each with its own delivery id and PR — open loop: every delivery has
its slot on a fixed clock and its latency counts from that slot, so a stalled server is charged for
the deliveries that queued behind it. Each delivery goes the whole ingest path: signature, normalize,
signed forward, backend nonce, dedup, decision, challenge and outbox insert, answer. No worker runs:
only ingest is measured. Rates rise until the receiver falls behind (answered < 95 % of the offered
rate, or p99 over a second). Beside each step: the CPU of each process, and the same number of
`SELECT 1` round trips through asyncpg as the floor of one database round trip per delivery.
With `--receivers N`, N receiver processes share the load generator's connections (as a Service
spreads them over the chart's replicas); their CPU is summed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import secrets
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import aiohttp
import asyncpg

from bench.harness import cli
from bench.harness.cpu import CpuMeter
from bench.harness.db import bench_database, postgres_pids
from bench.harness.quiet import wait_quiet_before_start
from bench.harness.report import load_average, machine_line, markdown_table
from bench.harness.stack import Stack, free_port, prgate_env, wait_http_ok
from prgate.simulator.github.webhooks import webhook_headers
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.services import redis_base_url

TARGET_RATE = 1000.0
TARGET_P99_MS = 100.0


@dataclass(frozen=True, slots=True)
class Step:
    offered: float
    sent: int
    ok: int
    errors: int
    seconds: float  # from the first slot to the last answer
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu: dict[str, float]  # % of a core
    floor_per_s: float

    @property
    def answered_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def saturated(self) -> bool:
        return self.answered_per_s < 0.95 * self.offered or self.p99_ms > 1000 or self.errors > 0


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Deliveries:
    """Pre-built, pre-signed deliveries: nothing is serialized or hashed while a step runs."""

    def __init__(self, secret: str, installation_id: int, repo_id: int, repo: str) -> None:
        self._secret = secret
        self._installation_id = installation_id
        self._repo_id = repo_id
        self._repo = repo
        self._next = 1

    def build(self, count: int) -> list[tuple[bytes, dict[str, str]]]:
        out = []
        for _ in range(count):
            n = self._next
            self._next += 1
            payload = pull_request_payload(
                "opened", installation_id=self._installation_id, repo_id=self._repo_id, full_name=self._repo,
                number=n, author_login=f"newcomer-{n}", author_id=50_000_000 + n,
            )
            body = json.dumps(payload, separators=(",", ":")).encode()
            out.append((body, webhook_headers(self._secret, "pull_request", body, str(uuid.uuid4()))))
        return out


def encode_request(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One keep-alive HTTP/1.1 POST, encoded before the step starts."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request and read its whole answer; its status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def send_step(
    targets: Sequence[tuple[str, int]], connections: int, requests: list[bytes], rate: float
) -> tuple[list[float], int, float]:
    """Send on an open-loop clock over `connections` keep-alive connections; latencies (s) of the 2xx
    answers, the error count, seconds taken. A request waiting for a free connection is late: its
    latency counts from its slot. The client is a few lines over asyncio streams rather than aiohttp's,
    so that the load generator takes as little as it can of the cores it shares with what it measures."""
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def connection(host: str, port: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await queue.get()) is not None:
                slot, request = item
                try:
                    status = await _exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                if 200 <= status < 300:
                    latencies.append(time.perf_counter() - slot)
                else:
                    errors += 1
        finally:
            writer.close()

    workers = [asyncio.create_task(connection(*targets[n % len(targets)])) for n in range(connections)]
    await asyncio.sleep(0.05)
    start = time.perf_counter() + 0.05
    for i, request in enumerate(requests):
        slot = start + i / rate
        delay = slot - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((slot, request))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return latencies, errors, time.perf_counter() - start


async def floor_rate(pool: asyncpg.Pool, count: int, concurrency: int = 16) -> float:
    """`SELECT 1` round trips/s through asyncpg at the same concurrency: one round trip per delivery."""
    per_lane = max(1, count // concurrency)

    async def lane() -> None:
        async with pool.acquire() as conn:
            for _ in range(per_lane):
                await conn.fetchval("SELECT 1")

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return per_lane * concurrency / (time.perf_counter() - started)


async def run(args: argparse.Namespace) -> tuple[list[Step], str]:
    stack = Stack()
    rates = [float(r) for r in args.rates.split(",")]
    with ExitStack() as services:
        redis_url = services.enter_context(redis_base_url(services))
        async with bench_database(services, prefix="prgate_bench_ingest") as db:
            ports = {"backend": free_port(), "bot": free_port()}
            bot_ports = [ports["bot"], *(free_port() for _ in range(args.receivers - 1))]
            webhook_secret = secrets.token_hex(16)
            env = {
                **prgate_env(db.url, redis_url, backend_port=ports["backend"], bot_port=ports["bot"],
                             webhook_secret=webhook_secret, queue=f"prgate-bench-ingest-{uuid.uuid4().hex}",
                             log_level=args.log_level),
                "GITHUB_APP_ID": "1", **cli.stack_env(args.stack_env),
            }
            pool = await asyncpg.create_pool(db.url, min_size=16, max_size=16)
            try:
                backend = stack.start_component("backend", "backend", env)
                bots = [stack.start_component(f"bot-{n}", "bot", {**env, "BOT_PORT": str(port)})
                        for n, port in enumerate(bot_ports)]
                connector = aiohttp.TCPConnector(limit=args.connections)
                async with aiohttp.ClientSession(
                    connector=connector, timeout=aiohttp.ClientTimeout(total=30)
                ) as session:
                    await wait_http_ok(session, f"{env['BACKEND_URL']}/readyz", backend)
                    for port, bot in zip(bot_ports, bots, strict=True):
                        await wait_http_ok(session, f"http://127.0.0.1:{port}/readyz", bot)
                    url = f"http://127.0.0.1:{ports['bot']}/webhooks/github"
                    installation_id, repo_id, repo = 4242, 4343, "bench-org/widgets"
                    body = json.dumps(installation_payload(
                        "created", installation_id=installation_id, account_login="bench-org",
                        repos=[(repo_id, repo)],
                    )).encode()
                    async with session.post(url, data=body, headers=webhook_headers(
                        webhook_secret, "installation", body, str(uuid.uuid4()))) as resp:
                        if resp.status != 200:
                            raise RuntimeError(f"installation webhook: {resp.status} {await resp.text()}")
                    deliveries = Deliveries(webhook_secret, installation_id, repo_id, repo)
                    bot_host, bot_port = "127.0.0.1", ports["bot"]
                    targets = [(bot_host, port) for port in bot_ports]

                    def encoded(count: int) -> list[bytes]:
                        return [encode_request(f"{bot_host}:{bot_port}", "/webhooks/github", body, headers)
                                for body, headers in deliveries.build(count)]

                    await send_step(targets, args.connections, encoded(200), 200)  # warm up
                    steps: list[Step] = []
                    for rate in rates:
                        batch = encoded(max(1, int(rate * args.seconds)))
                        pids = await postgres_pids(pool)
                        meters = {name: CpuMeter(p.popen.pid, pids)
                                  for name, p in (("backend", backend), *((b.name, b) for b in bots))}
                        for m in meters.values():
                            m.start()
                        latencies, errors, seconds = await send_step(targets, args.connections, batch, rate)
                        samples = {name: m.stop() for name, m in meters.items()}
                        cpu = {
                            "client": samples["backend"].client,
                            "receiver": sum(samples[b.name].backend for b in bots),
                            "backend": samples["backend"].backend, "postgres": samples["backend"].postgres,
                        }
                        cpu["other"] = max(0.0, samples["backend"].other - cpu["receiver"])
                        floor = await floor_rate(pool, len(batch))
                        step = Step(
                            rate, len(batch), len(latencies), errors, seconds,
                            _quantile(latencies, 0.5) * 1000, _quantile(latencies, 0.99) * 1000,
                            max(latencies, default=float("nan")) * 1000,
                            {k: 100 * v / seconds for k, v in cpu.items()}, floor,
                        )
                        steps.append(step)
                        print(_step_line(step), flush=True)
                        if step.saturated and not args.all_rates:
                            break
                        await asyncio.sleep(1)
                    async with pool.acquire() as conn:
                        recorded = await conn.fetchval("SELECT count(*) FROM webhook_deliveries")
                        actions = await conn.fetchval("SELECT count(*) FROM bot_actions")
                    sanity = (f"{recorded} deliveries recorded, {actions} actions enqueued "
                              f"(one installation, {recorded - 1} pull requests)")
                    return steps, machine_line(db.server_version) + "; " + sanity
            finally:
                await pool.close()
                stack.stop_all()


def _step_line(s: Step) -> str:
    return (f"  offered {s.offered:>6.0f}/s  answered {s.answered_per_s:>7.1f}/s  p50 {s.p50_ms:6.1f} ms  "
            f"p99 {s.p99_ms:7.1f} ms  errors {s.errors}  cpu% " +
            " ".join(f"{k} {v:.0f}" for k, v in s.cpu.items()))


def _cpu_cell(s: Step) -> str:
    return " / ".join(f"{s.cpu[k]:.0f}" for k in ("receiver", "backend", "postgres", "client", "other"))


def _floor_cells(s: Step) -> list[str]:
    return [f"{s.floor_per_s:,.0f}", f"{s.answered_per_s / s.floor_per_s:.2f}" if s.floor_per_s else "-"]


def table(steps: Sequence[Step]) -> str:
    rows = [
        [f"{s.offered:,.0f}", f"{s.sent:,}", f"{s.answered_per_s:,.0f}", f"{s.p50_ms:.1f}", f"{s.p99_ms:.1f}",
         f"{s.max_ms:.1f}", str(s.errors),
         _cpu_cell(s),
         *_floor_cells(s)]
        for s in steps
    ]
    return markdown_table(
        ["offered/s", "sent", "answered/s", "p50 ms", "p99 ms", "max ms", "errors",
         "CPU % of a core: receiver / backend / pg / client / other", "SELECT 1/s floor", "vs floor"],
        rows, [True, True, True, True, True, True, True, True, True, True],
    )


def meets_target(steps: Sequence[Step]) -> bool:
    return any(not s.saturated and s.offered >= TARGET_RATE and s.p99_ms <= TARGET_P99_MS for s in steps)


def median_steps(runs: Sequence[Sequence[Step]]) -> tuple[list[Step], dict[float, list[Step]]]:
    """Per offered rate, the step of the run with the median p99 (a measured step, not a blend), and
    every run's step at that rate."""
    by_rate: dict[float, list[Step]] = {}
    for steps in runs:
        for step in steps:
            by_rate.setdefault(step.offered, []).append(step)
    # An even count takes the upper middle: of two runs, the worse one.
    median = [sorted(steps, key=lambda s: s.p99_ms)[len(steps) // 2] for steps in by_rate.values()]
    return median, by_rate


def repeated_table(runs: Sequence[Sequence[Step]]) -> str:
    median, by_rate = median_steps(runs)
    rows = [
        [f"{s.offered:,.0f}", f"{len(by_rate[s.offered])}", f"{s.answered_per_s:,.0f}", f"{s.p50_ms:.1f}",
         f"{s.p99_ms:.1f}", ", ".join(f"{x.p99_ms:,.0f}" for x in by_rate[s.offered]),
         ", ".join(f"{x.answered_per_s:,.0f}" for x in by_rate[s.offered]),
         _cpu_cell(s),
         *_floor_cells(s)]
        for s in median
    ]
    return markdown_table(
        ["offered/s", "runs", "answered/s", "p50 ms", "p99 ms", "p99 ms of each run", "answered/s of each run",
         "CPU % of a core: receiver / backend / pg / client / other", "SELECT 1/s floor", "vs floor"],
        rows, [True] * 10,
    )


def repeated_verdict(runs: Sequence[Sequence[Step]]) -> str:
    median, _ = median_steps(runs)
    met = sum(meets_target(steps) for steps in runs)
    return (f"The median run at each rate (the run with the median p99). {verdict(median)} "
            f"Met in {met} of {len(runs)} runs.")


def verdict(steps: Sequence[Step]) -> str:
    kept = [s for s in steps if not s.saturated]
    best = max(kept, key=lambda s: s.answered_per_s, default=None)
    if best is None:
        return "No step kept up with its offered rate."
    # Kept up (answered ≥ 95 % of it, see Step.saturated) with an offered rate at the target:
    meeting = [s for s in kept if s.offered >= TARGET_RATE and s.p99_ms <= TARGET_P99_MS]
    met = (f"met at {meeting[-1].offered:,.0f}/s offered, p99 {meeting[-1].p99_ms:.1f} ms" if meeting
           else "not met")
    return (f"Highest rate kept up with: {best.answered_per_s:,.0f} deliveries/s at p99 {best.p99_ms:.1f} ms. "
            f"Target ≥ {TARGET_RATE:,.0f}/s with p99 ≤ {TARGET_P99_MS:.0f} ms: **{met}**.")


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bench.ingest", __doc__, quick="2 s steps at 100,200,400/s",
                        wait_quiet_help="first wait up to this long for the machine to be idle")
    parser.add_argument("--rates", default="100,200,400,600,800,1000,1200,1500")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each step")
    parser.add_argument("--all-rates", action="store_true", help="keep going past saturation")
    parser.add_argument("--connections", type=int, default=64, help="client connections to the receiver(s)")
    parser.add_argument("--receivers", type=int, default=1, choices=range(1, 9), metavar="N",
                        help="receiver processes (the connections are spread over them)")
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the stack (INFO logs each delivery)")
    cli.add_stack_env(parser)
    parser.add_argument("--repeat", type=int, default=None, choices=range(1, 21), metavar="N",
                        help="run the whole ladder N times, each on a fresh stack and database; report the "
                             "median run per rate and every run's p99 (default 3, 1 with --quick: a 2-core "
                             "VM varies ±30 %% run to run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rates, args.seconds = "100,200,400", 2.0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    command = cli.command_line("bench.ingest", argv)
    if args.wait_quiet:
        wait_quiet_before_start(args.wait_quiet, "bench.ingest")
    t0 = time.monotonic()
    load = load_average()
    runs: list[list[Step]] = []
    for n in range(args.repeat):
        if args.repeat > 1:
            print(f"run {n + 1} of {args.repeat}", flush=True)
        steps, machine = asyncio.run(run(args))
        runs.append(steps)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (f"{table(runs[0])}\n\n{verdict(runs[0])}" if args.repeat == 1
            else f"{repeated_table(runs)}\n\n{repeated_verdict(runs)}")
    generated = (f"Measured {when} with `{command}`; machine: {machine}; load average before: {load}. "
                 f"Log level {args.log_level}.\n\n{body}\n")
    cli.publish(
        generated, started=t0, write_docs=args.write_docs, heading="Webhook ingest (`python -m bench.ingest`)",
        tag="bench.ingest",
        interpretation="Receiver + backend only (no worker): what one delivery costs from GitHub's POST to the "
                       "outbox row.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
