"""Run prgate components as real OS processes for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

# Variables a fresh clone's shell does not set: what `make run` sees there.
OUR_VARIABLES = ("PRGATE_", "SESSION_SECRET", "DATABASE_URL", "REDIS_URL", "GITHUB_", "BACKEND_", "BOT_", "WORKER_",
                 "SIMULATOR_", "LOG_LEVEL")


def fresh_env(**extra: str) -> dict[str, str]:
    """A shell with none of our variables: what `make run` sees on a fresh clone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OUR_VARIABLES)}
    if os.geteuid() == 0:  # pgserver runs PostgreSQL through `useradd` as root (prgate/embedded.py)
        env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    return {**env, **extra}


def children_of(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rpartition(")")[2].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return int(self.popen.returncode)


@dataclass
class Fleet:
    """Processes started by one test; everything still running is killed at the end."""

    procs: list[Proc] = field(default_factory=list)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="prgate-e2e-")))

    def start(self, name: str, command: str, env: dict[str, str]) -> Proc:
        log_path = self.log_dir / f"{name}.log"
        handle = log_path.open("wb")
        full_env = {**os.environ, "LOG_LEVEL": "INFO", **env}
        popen = subprocess.Popen(
            [sys.executable, "-m", "prgate.cli", command], env=full_env, stdout=handle, stderr=subprocess.STDOUT
        )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.alive():
                proc.popen.kill()
                proc.popen.wait(10)

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.log()[-4000:]}" for p in self.procs)


async def wait_http_ok(url: str, proc: Proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited early:\n{proc.log()[-4000:]}")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} not ready:\n{proc.log()[-4000:]}")


async def eventually(check: object, timeout: float, interval: float = 0.2) -> None:
    """Poll an async predicate until it holds (bounded; never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        await asyncio.sleep(interval)
