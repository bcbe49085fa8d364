"""Configuration mistakes, for every subcommand: one line on stderr saying what is wrong and how to fix
it, exit status 2, no traceback (prgate/preflight.py). Real `prgate` processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from cryptography.fernet import Fernet

from backend_api.crypto import Vault
from backend_api.store import bitbucket
from tests.conftest import INTERNAL_ENV
from tests.support.github_sim import APP_ID, app_keys
from tests.support.processes import free_port

# A variable of ours in the test runner's environment would hide the mistake under test.
_OURS = ("PRGATE_", "SESSION_SECRET", "DATABASE_URL", "REDIS_URL", "GITHUB_", "BACKEND_", "BOT_", "WORKER_",
         "SIMULATOR_", "INGEST_", "DB_POOL_", "LOG_LEVEL", "LOG_FORMAT")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.create_server(("0.0.0.0", 0)) as listener:
        yield int(listener.getsockname()[1])


@pytest.fixture
def good_env(database_url: str, db: asyncpg.Pool, redis_url: str, tmp_path: Path) -> dict[str, str]:
    # `db` empties the test database: a Bitbucket workspace an earlier test connected would make the
    # backend refuse to start without its encryption key, a true refusal this table is not about.
    key = tmp_path / "app.pem"
    key.write_text(app_keys().private_pem)
    return {
        **INTERNAL_ENV, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": str(free_port()), "BOT_HOST": "127.0.0.1",
        "BOT_PORT": str(free_port()), "SIMULATOR_PORT": str(free_port()), "WORKER_METRICS_PORT": "0",
        "GITHUB_APP_ID": str(APP_ID), "GITHUB_PRIVATE_KEY_PATH": str(key), "BACKEND_URL": "http://127.0.0.1:9",
        "GITHUB_WEBHOOK_SECRET": "w" * 8 + "0123456789abcdef" * 2, "PRGATE_DATA_DIR": str(tmp_path / "data"),
    }


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    return subprocess.run(
        [sys.executable, "-m", "prgate.cli", *command], env={**base, **env}, cwd=cwd,
        capture_output=True, text=True, timeout=60, check=False,
    )


# (subcommands, the mistake, what the one line must say). "{port}" is a port something listens on.
MISTAKES: list[tuple[tuple[str, ...], dict[str, str], tuple[str, ...]]] = [
    (("backend", "up"), {"BACKEND_PORT": "abc"}, ("BACKEND_PORT", "abc")),
    (("bot", "up"), {"BOT_PORT": "abc"}, ("BOT_PORT", "abc")),
    (("backend", "bot", "worker", "migrate", "simulator", "reconcile", "up"), {"LOG_LEVEL": "verbose"},
     ("LOG_LEVEL", "verbose", "INFO")),
    (("backend", "migrate", "up"), {"LOG_FORMAT": "verbose"}, ("LOG_FORMAT", "verbose", "json")),
    (("backend", "up"), {"INGEST_LANES": "20"}, ("INGEST_LANES", "DB_POOL_MAX")),
    (("worker",), {"WORKER_CONCURRENCY": "0"}, ("WORKER_CONCURRENCY",)),
    (("migrate", "backend"), {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/prgate"},
     ("DATABASE_URL", "cannot connect")),
    (("migrate", "backend"), {"DATABASE_URL": "mysql://nobody@127.0.0.1/prgate"}, ("DATABASE_URL",)),
    (("migrate",), {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/prgate_no_such_database"},
     ("DATABASE_URL", "does not exist")),
    (("bot", "worker"), {"REDIS_URL": "localhost:6379"}, ("REDIS_URL", "redis://")),
    (("backend", "up"), {"BACKEND_PORT": "{port}"}, ("BACKEND_PORT", "in use")),
    (("bot", "up"), {"BOT_PORT": "{port}"}, ("BOT_PORT", "in use")),
    (("worker",), {"WORKER_METRICS_PORT": "{port}"}, ("WORKER_METRICS_PORT", "in use")),
    (("simulator",), {"SIMULATOR_PORT": "{port}"}, ("SIMULATOR_PORT", "in use")),
    (("backend",), {"SESSION_SECRET": ""}, ("SESSION_SECRET",)),
    (("worker", "reconcile"), {"PRGATE_WORKER_SECRETS": ""}, ("PRGATE_WORKER_SECRETS",)),
    (("worker", "bot", "backend"), {"GITHUB_PRIVATE_KEY_PATH": "/nonexistent/app.pem"},
     ("GITHUB_PRIVATE_KEY_PATH", "/nonexistent/app.pem")),
    (("worker",), {"GITHUB_APP_ID": ""}, ("GITHUB_APP_ID",)),
    (("backend",), {"PRGATE_ENCRYPTION_KEY": "not-a-fernet-key"}, ("PRGATE_ENCRYPTION_KEY", "Fernet")),
]
CASES = [
    pytest.param(command, change, says, id=f"{command}-{'-'.join(f'{k}={v}' for k, v in change.items())}")
    for commands, change, says in MISTAKES for command in commands
]


@pytest.mark.parametrize(("command", "change", "says"), CASES)
def test_a_configuration_mistake_is_one_line_and_exit_2(
    command: str, change: dict[str, str], says: tuple[str, ...], good_env: dict[str, str], taken_port: int,
    tmp_path: Path,
) -> None:
    env = {**good_env, **{k: v.replace("{port}", str(taken_port)) for k, v in change.items()}}
    if command == "up":  # `prgate up` with an App configured serves it, without the simulator
        env["WORKER_METRICS_PORT"] = "0"
    result = _run([command], env, tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"prgate {command}: "), lines[0]
    for word in says:
        assert word.replace("{port}", str(taken_port)) in lines[0], lines[0]


def test_the_backend_says_listening_only_once_bound(good_env: dict[str, str], tmp_path: Path) -> None:
    """The log line an operator waits for is true when it appears: the port answers."""
    port = int(good_env["BACKEND_PORT"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "prgate.cli", "backend"], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(_OURS)}, **good_env, "LOG_LEVEL": "INFO"},
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "backend listening" in line:
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    pass  # connected: bound before it said so
                break
        else:
            pytest.fail(f"backend exited with {proc.wait()} without saying it listens")
    finally:
        proc.terminate()
        proc.wait(30)


def test_up_reset_with_a_github_app_configured_refuses_in_one_line(good_env: dict[str, str], tmp_path: Path) -> None:
    """--reset drops the demo's data; with a real App the stack's data is real, so it is a mistake."""
    result = _run(["up", "--reset"], good_env, tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "prgate up: --reset drops the demo's data, and this stack is not the demo (a GitHub App is configured): "
        "leave --reset out"
    ]
    assert not (tmp_path / "data" / "prgate.lock").exists()  # refused before taking the checkout's lock


async def test_a_connected_workspace_needs_the_key_its_token_was_stored_with(
    db: asyncpg.Pool, good_env: dict[str, str], tmp_path: Path
) -> None:
    """PRGATE_ENCRYPTION_KEY unset, or a list without the key a stored token needs: one line, exit 2."""
    stored_with = Fernet.generate_key().decode()
    async with db.acquire() as conn:
        await bitbucket.upsert_workspace(conn, workspace_uuid=str(uuid.uuid4()), slug="acme", name="",
                                         token_ciphertext=Vault([stored_with]).encrypt("t"))
    for keys, says in (("", "is not set"), (Fernet.generate_key().decode(), "does not open")):
        result = await asyncio.to_thread(_run, ["backend"], {**good_env, "PRGATE_ENCRYPTION_KEY": keys}, tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("prgate backend: PRGATE_ENCRYPTION_KEY"), lines[0]
        assert says in lines[0]
        assert stored_with not in result.stderr
