"""`prgate up` across runs and signals, as a user at a terminal drives it: real processes.

Ctrl-C (SIGINT to the terminal's whole process group) stops the stack without a traceback; the
demo's data is kept, so a second run replays the scenario on the next pull requests (GitHub's and
Bitbucket's, its workspace connected again on the fresh simulator); a SIGKILLed
supervisor takes its children with it (prgate/lifeline.py); `--reset` plays the demo as new, and
Ctrl-C twice in the middle of it still prints no traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.processes import children_of, free_port, fresh_env, running

UP_TIMEOUT = 240.0


@dataclass
class Up:
    proc: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)


def _start(checkout: Path, env: dict[str, str], *extra: str, until: str = "prgate is up") -> Up:
    # A session of its own, as a shell's foreground job has a process group of its own: killpg() below
    # is what a terminal's Ctrl-C does.
    proc = subprocess.Popen([sys.executable, "-m", "prgate.cli", "up", "--workers", "1", *extra], cwd=checkout,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    up = Up(proc)
    for stream, lines in ((proc.stdout, up.stdout), (proc.stderr, up.stderr)):
        assert stream is not None
        threading.Thread(target=lambda s=stream, out=lines: out.extend(iter(s.readline, "")), daemon=True).start()
    deadline = time.monotonic() + UP_TIMEOUT
    while not any(line.startswith(until) for line in list(up.stdout)):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(up)
            pytest.fail("prgate up never came up:\n" + up.text()[-6000:])
        time.sleep(0.5)
    return up


def _stop(up: Up) -> None:
    if up.proc.poll() is None:
        os.killpg(up.proc.pid, signal.SIGINT)
        try:
            up.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.proc.pid, signal.SIGKILL)
            up.proc.wait(10)


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if running(pid)]
        if not alive:
            return []
        time.sleep(0.2)
    return [pid for pid in pids if running(pid)]


def test_ctrl_c_kept_data_replay_sigkill_and_reset(tmp_path: Path) -> None:
    ports = {"BACKEND_PORT": str(free_port()), "BOT_PORT": str(free_port()), "SIMULATOR_PORT": str(free_port()),
             "WORKER_METRICS_PORT": "0"}
    # The workers' claim long-poll bounds their graceful stop (a claim in flight lands first): short here,
    # so "gone" below means a few seconds.
    env = fresh_env(**ports, LOG_LEVEL="WARNING", WORKER_CLAIM_WAIT_SECONDS="2")
    try:
        _play_three_runs(tmp_path, env)
    finally:
        _stop_leftovers(tmp_path)


def _stop_leftovers(checkout: Path) -> None:
    """A SIGKILLed `prgate up` leaves its embedded PostgreSQL running (the next `up` joins it, and the
    --reset run stops it); if that run failed, stop what still serves this checkout's data."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(checkout) in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGTERM)


def _play_three_runs(tmp_path: Path, env: dict[str, str]) -> None:

    first = _start(tmp_path, env)
    assert "[demo] 2. GitHub: first-timer (no association) opens pull request #1\n" in first.stdout
    children = children_of(first.proc.pid)
    assert len(children) >= 4, children  # simulator, backend, bot, worker (the embedded servers may add more)
    # Ctrl-C at the terminal: the whole foreground process group gets SIGINT.
    os.killpg(first.proc.pid, signal.SIGINT)
    assert first.proc.wait(60) == 0, first.text()[-4000:]
    time.sleep(0.5)  # the reader threads drain the pipes
    assert "Traceback" not in first.text(), first.text()[-6000:]
    assert not _gone_within(children, 10)

    second = _start(tmp_path, env)
    out = "".join(second.stdout)
    assert "played 1 time(s) on this data before" in out, out
    assert "first-timer-2 (no association) opens pull request #4" in out, out
    # The Bitbucket workspace the first run connected is still the backend's: connecting it again on
    # the new simulator is no failure, and the next newcomer is verified on the next pull request id.
    assert "demo scenario failed" not in second.text(), second.text()[-6000:]
    assert "[demo] 8. Bitbucket: newcomer-2 (no permission on demo-team/gadgets) opens pull request #2\n" in out, out
    assert "[demo]    prgate: @newcomer-2 has verified. Thanks, and welcome!\n" in out, out
    assert (tmp_path / ".data" / "demo-plays").read_text().strip() == "2"
    children = [pid for pid in children_of(second.proc.pid)
                if "prgate.cli" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]
    assert len(children) == 4, children
    os.kill(second.proc.pid, signal.SIGKILL)
    second.proc.wait(10)
    left = _gone_within(children, 10)
    assert not left, f"children outlived the SIGKILLed supervisor: {left}"

    # --reset, and Ctrl-C twice in the middle of the scenario: still no traceback, nothing left running.
    third = _start(tmp_path, env, "--reset", until="[demo] 3.")
    try:
        out = "".join(third.stdout)
        assert "played" not in out, out
        assert "[demo] 2. GitHub: first-timer (no association) opens pull request #1\n" in out, out
        assert (tmp_path / ".data" / "demo-plays").read_text().strip() == "1"
        children = children_of(third.proc.pid)
        os.killpg(third.proc.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(third.proc.pid, signal.SIGINT)
        assert third.proc.wait(60) in (0, 130)
        time.sleep(0.5)
        assert "Traceback" not in third.text(), third.text()[-6000:]
        assert not _gone_within(children, 10)
    finally:
        _stop(third)
