"""The console's log format, chosen by a real `prgate migrate` process: text on a terminal (a pty), JSON on
a pipe, `LOG_FORMAT` overriding both, an unknown value refused."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

import pytest

# `HH:MM:SS level component message  key=value`
TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d info +migrate +(migrations applied|schema is up to date)\b")


def run_migrate(database_url: str, *, tty: bool, log_format: str | None) -> tuple[int, str]:
    """`prgate migrate` with its stderr on a pty (as in a terminal) or a pipe; its exit code and stderr."""
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "INFO"}
    env.pop("LOG_FORMAT", None)
    if log_format is not None:
        env["LOG_FORMAT"] = log_format
    command = [sys.executable, "-m", "prgate.cli", "migrate"]
    if not tty:
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120, check=False)
        return done.returncode, done.stderr.decode()
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal)
        os.close(terminal)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed its end of the pty
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(timeout=120)
    finally:
        os.close(controller)
    return code, b"".join(chunks).decode().replace("\r\n", "\n")


def last_line(stderr: str) -> str:
    return [line for line in stderr.splitlines() if line.strip()][-1]


@pytest.mark.parametrize(("tty", "log_format", "expected"), [
    (True, None, "text"),
    (False, None, "json"),
    (True, "auto", "text"),
    (True, "json", "json"),
    (False, "text", "text"),
    (False, "JSON", "json"),
])
def test_format_follows_the_terminal_unless_asked(database_url: str, tty: bool, log_format: str | None,
                                                  expected: str) -> None:
    code, stderr = run_migrate(database_url, tty=tty, log_format=log_format)
    assert code == 0, stderr
    line = last_line(stderr)
    if expected == "json":
        entry = json.loads(line)
        assert entry["component"] == "prgate-migrate"
        assert entry["msg"] in ("migrations applied", "schema is up to date")
    else:
        assert TEXT_LINE.match(line), line
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)


def test_unknown_format_is_refused(database_url: str) -> None:
    code, stderr = run_migrate(database_url, tty=False, log_format="pretty")
    assert code != 0
    assert "LOG_FORMAT must be one of auto, json, text" in stderr
