"""The prgate stack as separate OS processes, for end-to-end benchmarks.

`Stack` starts components as `python -m prgate.cli <command>` (or any module), logs each to a
file, and kills every process it started when it stops — also when the benchmark is interrupted
(the caller's `finally`) or killed outright (the children get SIGKILL through PR_SET_PDEATHSIG on
Linux).

Two child entry points live here as well, run with `python -m bench.harness.stack ...`:

* `simulator` — exactly what `prgate simulator` serves (same settings, same app), plus
  read-only routes `GET /_sim/bench/comments`, `/_sim/bench/deliveries` and `/_sim/bench/requests`
  that expose the simulator's own float timestamps (and request counts by path shape). The public
  `/_sim/` API renders every time as `YYYY-MM-DDTHH:MM:SSZ` (one-second resolution), which is
  useless for latencies in milliseconds.
  Nothing is read from those routes while a measurement runs, except a comment count.
* `arq-noop-worker` — one arq `Worker(burst=True)` running a no-op job, for the arq baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness.cpu import REPO_ROOT, process_cpu_seconds

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the benchmark process dies (Linux only)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# --- processes ------------------------------------------------------------------------------------


@dataclass
class StackProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)


@dataclass
class Stack:
    """Processes started by one benchmark; `stop_all` ends every one of them (idempotent)."""

    procs: list[StackProcess] = field(default_factory=list)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="prgate-bench-")))

    def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> StackProcess:
        """Start `python <args>` with `env` over this process's environment."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as handle:
            popen = subprocess.Popen(
                [sys.executable, *args], env={**os.environ, **env}, cwd=REPO_ROOT, stdout=handle,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
            )
        proc = StackProcess(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def start_component(self, name: str, command: str, env: dict[str, str]) -> StackProcess:
        return self.start(name, ["-m", "prgate.cli", command], env)

    def stop(self, proc: StackProcess, grace: float = 5.0) -> None:
        if not proc.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(10)

    def stop_all(self, grace: float = 5.0) -> None:
        """SIGTERM everything still running, wait up to `grace` in total, then SIGKILL what is left."""
        for proc in self.procs:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(10)

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(f"===== {p.name} ({p.log_path}) =====\n{p.log_tail(chars)}" for p in self.procs)

    def dead(self) -> list[StackProcess]:
        return [p for p in self.procs if not p.alive()]


async def wait_http_ok(session: aiohttp.ClientSession, url: str, proc: StackProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout:g} s:\n{proc.log_tail()}")


# --- child: the simulator with precise timestamps -----------------------------------------------------


def serve_simulator() -> int:
    """`prgate simulator` (same settings and app) plus read-only `/_sim/bench/` routes with float times."""
    from aiohttp import web

    from prgate.logs import setup_logging
    from prgate.simulator import SIM_STATE, SimulatorConfig, create_simulator_app
    from prgate.simulator_env import simulator_settings

    setup_logging("prgate-simulator", os.environ.get("LOG_LEVEL", "INFO"))
    env = simulator_settings()
    config = SimulatorConfig(
        app_id=env.app_id, app_public_key_pem=env.public_key_pem(), webhook_url=env.webhook_url,
        webhook_secret=env.webhook_secret.get_secret_value(), seed=env.seed,
        secondary_limit_per_minute=env.secondary_limit_per_minute, rate_limit_per_hour=env.rate_limit_per_hour,
    )
    app = create_simulator_app(config)
    state = app[SIM_STATE]

    async def comments(request: web.Request) -> web.Response:
        if request.query.get("count_only"):
            # Comment ids only grow: the newest id tells how many were created since a cursor.
            return web.json_response({"count": len(state.comments), "max_id": next(reversed(state.comments), 0)})
        after = int(request.query.get("after_id", "0"))
        rows: list[dict[str, Any]] = []
        for comment in list(state.comments.values()):
            if comment.id <= after:
                continue
            repo = state.repositories.get(comment.repo_id)
            rows.append({
                "id": comment.id, "repo": repo.full_name if repo else None, "number": comment.issue_number,
                "created_at": comment.created_at, "updated_at": comment.updated_at,
                "user_type": comment.user.type, "body": comment.body,
            })
        return web.json_response({"count": len(state.comments), "comments": rows})

    async def deliveries(request: web.Request) -> web.Response:
        after = int(request.query.get("after_id", "0"))
        rows = [
            {"id": d.id, "guid": d.guid, "event": d.event, "action": d.action, "status_code": d.status_code,
             "error": d.error, "delivered_at": d.delivered_at, "duration": d.duration}
            for d in list(state.deliveries) if d.id > after
        ]
        return web.json_response({"deliveries": rows})

    async def requests(request: web.Request) -> web.Response:
        """GitHub API requests since `since` (unix seconds), counted by method, status and path shape."""
        since = float(request.query.get("since", "0"))
        counts: dict[str, int] = {}
        for record in list(state.request_log):
            if record.at >= since:
                path = re.sub(r"/[0-9]+(?=/|$)", "/N", re.sub(r"/[0-9a-f]{40}(?=/|$)", "/SHA", record.path))
                key = f"{record.method} {record.status} {path}"
                counts[key] = counts.get(key, 0) + 1
        return web.json_response({"counts": counts})

    app.router.add_get("/_sim/bench/requests", requests)
    app.router.add_get("/_sim/bench/comments", comments)
    app.router.add_get("/_sim/bench/deliveries", deliveries)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, env.host, env.port).start()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())
    return 0


# --- child: an arq worker running no-op jobs ---------------------------------------------------------


async def noop(ctx: dict[str, Any]) -> None:
    """The arq baseline's job: does nothing."""
    return None


async def _arq_noop_worker(args: argparse.Namespace) -> dict[str, Any]:
    from arq.connections import RedisSettings
    from arq.worker import Worker, func
    from redis.asyncio import Redis

    settings = RedisSettings.from_dsn(args.redis_url)
    worker = Worker(
        functions=[func(noop, name="noop")], redis_settings=settings, queue_name=args.queue, burst=True,
        max_jobs=args.max_jobs, poll_delay=args.poll_delay, handle_signals=False,
    )
    async with Redis.from_url(args.redis_url) as redis:
        # Line up with the other replicas: say "ready", wait for "go".
        await redis.rpush(f"{args.queue}:bench-ready", str(os.getpid()))
        await redis.blpop([f"{args.queue}:bench-go"], timeout=60)
    cpu0 = time.process_time()
    started = time.time()
    await worker.main()
    finished = time.time()
    cpu = time.process_time() - cpu0
    complete = worker.jobs_complete
    failed = worker.jobs_failed
    await worker.close()
    return {"pid": os.getpid(), "started": started, "finished": finished, "jobs_complete": complete,
            "jobs_failed": failed, "cpu_seconds": cpu}


def arq_noop_worker(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.harness.stack arq-noop-worker")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--max-jobs", type=int, required=True)
    parser.add_argument("--poll-delay", type=float, required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(_arq_noop_worker(args))
    print("BENCH-RESULT " + json.dumps(result), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulator"]:
        return serve_simulator()
    if argv[:1] == ["arq-noop-worker"]:
        return arq_noop_worker(argv[1:])
    print("usage: python -m bench.harness.stack {simulator | arq-noop-worker ...}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
