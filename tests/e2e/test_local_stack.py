"""`prgate up` in a checkout, as a new user runs it: real processes, embedded PostgreSQL and Redis.

A second `prgate up` in the same checkout refuses in one line with exit status 2 and the first one
survives; a stray component does not take the stack's embedded servers; `prgate reconcile` reaches
the stack through `.data/env`, which only its owner can read and which goes when the stack stops.
The demo it played really happened on Bitbucket too: the simulator's pull request carries our
verified comment and a SUCCESSFUL `prgate` status, and the challenge is VERIFIED in the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backend_api.challenges import messages
from prgate.demo import BB_REPO, BB_WORKSPACE
from prgate.embedded import read_env_file
from tests.support.bitbucket_sim import as_shown
from tests.support.processes import free_port, fresh_env

UP_TIMEOUT = 240.0


def _prgate(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prgate.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str], list[str]]]:
    ports = {"BACKEND_PORT": str(free_port()), "BOT_PORT": str(free_port()), "SIMULATOR_PORT": str(free_port()),
             "WORKER_METRICS_PORT": "0"}
    env = fresh_env(**ports, LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "prgate.cli", "up", "--workers", "1"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    # A thread drains the output (select() on a buffered pipe misses lines already read into the buffer).
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")) if proc.stdout else None,
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + UP_TIMEOUT
        while not any(line.startswith("prgate is up") for line in list(seen)):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("prgate up never came up:\n" + "".join(seen[-60:]))
            time.sleep(0.5)
        yield proc, ports, seen
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _sim_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    return answer


def _bitbucket_challenges(database_url: str) -> list[tuple[int, str, str]]:
    async def read() -> list[tuple[int, str, str]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT pr_number, status, head_sha FROM challenges WHERE provider = 'bitbucket'")
        finally:
            await conn.close()
        return [(r["pr_number"], r["status"], r["head_sha"]) for r in rows]
    return asyncio.run(read())


def assert_the_bitbucket_demo_happened(simulator: str, database_url: str) -> None:
    """The demo's Bitbucket steps, by their witnesses rather than its printed lines."""
    [(number, status, head)] = _bitbucket_challenges(database_url)
    assert (number, status) == (1, "VERIFIED")
    repo = f"{simulator}/bitbucket/_sim/repositories/{BB_WORKSPACE}/{BB_REPO}"
    hooks = _sim_json(f"{simulator}/bitbucket/_sim/workspaces/{BB_WORKSPACE}/hooks")["hooks"]
    assert len(hooks) == 1, hooks  # registered by the connect
    comments = _sim_json(f"{repo}/pullrequests/1/comments")["comments"]
    ours = [c["content"]["raw"] for c in comments if c["user"]["type"] == "app_user"]
    assert ours == [as_shown(messages.verified_comment("newcomer"))]  # one comment, edited in place
    statuses = _sim_json(f"{repo}/commit/{head}/statuses")["statuses"]
    assert [(s["key"], s["state"]) for s in statuses] == [("prgate", "SUCCESSFUL")]


def test_a_second_up_refuses_and_the_first_stack_keeps_serving_and_is_reachable_through_data_env(
    stack: tuple[subprocess.Popen[str], dict[str, str], list[str]], tmp_path: Path
) -> None:
    first, ports, seen = stack
    # The workers start once the backend answers: none of their first claims failed to connect.
    assert not [line for line in seen if "claim failed" in line], "".join(seen[-40:])
    backend = f"http://127.0.0.1:{ports['BACKEND_PORT']}"
    assert _answers(f"{backend}/readyz")

    # The same checkout, other ports even: refused before anything is started or dropped.
    for second_ports in (ports, {k: str(free_port()) for k in ports}):
        second = _prgate(["up", "--workers", "1"], tmp_path, fresh_env(**second_ports))
        assert second.returncode == 2, second.stderr[-3000:]
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith("prgate up: a prgate stack is already running in this checkout"), lines[0]
        assert f"pid {first.pid}" in lines[0]
        assert "Traceback" not in second.stderr

    # .data/env: what the stack generated, for its owner only.
    env_file = tmp_path / ".data" / "env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    written = env_file.read_text()
    for variable in ("REDIS_URL", "DATABASE_URL", "PRGATE_WORKER_SECRETS", "GITHUB_APP_ID", "BACKEND_URL"):
        assert f"\n{variable}=" in written
    stack_env = read_env_file(env_file)
    redis_socket = Path(stack_env["REDIS_URL"].removeprefix("unix://"))
    assert redis_socket.exists()
    # The demo's Bitbucket keys are kept beside it (0600), for the next run on the same database.
    secrets_file = tmp_path / ".data" / "demo-secrets"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    kept = read_env_file(secrets_file)
    for variable in ("PRGATE_ENCRYPTION_KEY", "BITBUCKET_WEBHOOK_SECRET"):
        assert kept[variable]
        assert stack_env[variable] == kept[variable]
    assert_the_bitbucket_demo_happened(f"http://127.0.0.1:{ports['SIMULATOR_PORT']}", stack_env["DATABASE_URL"])

    # `prgate reconcile`, as the dashboard says, from a fresh shell in the checkout: it reaches the demo.
    reconcile = _prgate(["reconcile"], tmp_path, fresh_env())
    assert reconcile.returncode == 0, (reconcile.stdout, reconcile.stderr[-3000:])
    assert "reconciliation run" in reconcile.stdout
    assert "installation" in reconcile.stdout

    # A stray component started by hand in the checkout uses the stack's Redis as a client; stopping
    # it leaves the stack's embedded Redis running (it used to shut it down on exit).
    stray_port = free_port()
    stray = subprocess.Popen([sys.executable, "-m", "prgate.cli", "bot"], cwd=tmp_path, stderr=subprocess.PIPE,
                             text=True, env=fresh_env(BOT_PORT=str(stray_port), LOG_LEVEL="INFO"))
    try:
        assert stray.stderr is not None
        for line in stray.stderr:
            if "webhook receiver listening" in line:
                break
        else:
            pytest.fail(f"the stray receiver exited with {stray.wait()}")
        assert _answers(f"http://127.0.0.1:{stray_port}/readyz")  # it reached the stack's Redis and backend
    finally:
        stray.terminate()
        assert stray.wait(30) == 0

    assert first.poll() is None
    assert _answers(f"{backend}/readyz")
    assert _answers(f"http://127.0.0.1:{ports['BOT_PORT']}/readyz")

    first.send_signal(signal.SIGINT)
    first.wait(60)
    assert not env_file.exists()  # stopped: nothing points at servers that are gone
    assert not redis_socket.parent.exists()  # the embedded Redis's temporary directory goes with it
    # Stopped, the checkout is free again: a subcommand no longer finds the stack.
    after = _prgate(["reconcile"], tmp_path, fresh_env())
    assert after.returncode == 2
    assert "is not set" in after.stderr  # its generated keys went with it


def test_a_component_without_url_never_joins_an_embedded_server_another_process_owns(tmp_path: Path) -> None:
    """No stack runs, but another process owns the checkout's embedded Redis: a `prgate worker` without
    REDIS_URL says which URL to set instead of joining it (and stopping it on exit)."""
    from prgate.embedded import exclusive

    data = tmp_path / ".data"
    data.mkdir()
    with exclusive(data / "redis.lock", "embedded Redis"):
        result = _prgate(["worker"], tmp_path, fresh_env(
            PRGATE_WORKER_SECRETS="w" * 8 + "0123456789abcdef" * 2, WORKER_METRICS_PORT="0"))
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("prgate worker:")]
    assert len(lines) == 1, result.stderr
    assert "set REDIS_URL" in lines[0]
    assert f"pid {os.getpid()}" in lines[0]
    assert "Traceback" not in result.stderr
