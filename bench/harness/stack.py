"""Components as separate OS processes, for the benchmarks that measure them from outside.

`Stack` starts components as `python -m prgate.cli <command>` (or any module), logs each to a
file, and kills every process it started when it stops — also when the benchmark is interrupted
(the caller's `finally`) or killed outright (the children get SIGKILL through PR_SET_PDEATHSIG on
Linux).

The child processes themselves (the simulator with precise timestamps, the peers' no-op workers)
are in `bench/peers/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.harness import REPO_ROOT
from bench.harness.cpu import process_cpu_seconds

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the environment of prgate's components -------------------------------------------------------------


def internal_keys(worker_secret: str | None = None) -> dict[str, str]:
    """The per-component internal keys and the session secret the services require (docs/security.md),
    random per run; `worker_secret` when the benchmark itself signs as a worker."""
    return {
        "PRGATE_RECEIVER_SECRETS": "bench-receiver-" + secrets.token_hex(24),
        "PRGATE_WORKER_SECRETS": worker_secret or "bench-worker-" + secrets.token_hex(24),
        "SESSION_SECRET": "bench-session-" + secrets.token_hex(24),
    }


def prgate_env(
    db_url: str, redis_url: str, *, backend_port: int, bot_port: int, webhook_secret: str, queue: str,
    log_level: str,
) -> dict[str, str]:
    """What `prgate backend`, `prgate bot` and `prgate worker` need to find each other on this machine."""
    return {
        "DATABASE_URL": db_url, "REDIS_URL": redis_url, **internal_keys(),
        "BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": str(backend_port),
        "BACKEND_URL": f"http://127.0.0.1:{backend_port}",
        "BACKEND_PUBLIC_URL": f"http://127.0.0.1:{backend_port}",
        "BOT_HOST": "127.0.0.1", "BOT_PORT": str(bot_port),
        "GITHUB_WEBHOOK_SECRET": webhook_secret,
        "ARQ_QUEUE_NAME": queue,
        "LOG_LEVEL": log_level,
    }
