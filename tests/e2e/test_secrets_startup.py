"""Every service refuses to start with a missing, short, published or placeholder secret — one line
on stderr naming the variable, exit status 2 — and the backend's internal API can live on a listener
of its own (docs/security.md). Real `prgate` processes."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from shared_contracts import signing
from tests.conftest import INTERNAL_ENV, WORKER_SECRET
from tests.support.github_sim import APP_ID, app_keys
from tests.support.processes import Fleet, free_port, wait_http_ok

PUBLISHED_INTERNAL = "compose-internal-secret-change-me-0123456789abcdef"
PUBLISHED_SESSION = "compose-session-secret-change-me-0123456789abcdef"
CLAIM = "/internal/v2/bot-actions/claim"


def _run(command: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PRGATE_", "SESSION_SECRET"))}
    return subprocess.run(
        [sys.executable, "-m", "prgate.cli", command], env={**base, "LOG_LEVEL": "INFO", **env},
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def _run_all(command: str, envs: list[dict[str, str]]) -> list[subprocess.CompletedProcess[str]]:
    """The same command under each environment, at once: each run is a process of its own, and most of
    its time is the interpreter starting."""
    with ThreadPoolExecutor(max_workers=len(envs)) as pool:
        return list(pool.map(lambda env: _run(command, env), envs))


def _refusal(result: subprocess.CompletedProcess[str], component: str, variable: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"prgate {component}: refusing")]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def service_env(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    key_path = tmp_path / "app.pem"
    key_path.write_text(app_keys().private_pem)
    return {
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, **INTERNAL_ENV,
        "BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": str(free_port()), "BOT_HOST": "127.0.0.1",
        "BOT_PORT": str(free_port()), "WORKER_METRICS_PORT": "0", "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_PRIVATE_KEY_PATH": str(key_path), "GITHUB_WEBHOOK_SECRET": "w" * 8 + "0123456789abcdef" * 2,
        "BACKEND_URL": "http://127.0.0.1:9",
    }


@pytest.mark.parametrize(("component", "variable"), [
    ("backend", "PRGATE_RECEIVER_SECRETS"), ("backend", "PRGATE_WORKER_SECRETS"),
    ("bot", "PRGATE_RECEIVER_SECRETS"), ("worker", "PRGATE_WORKER_SECRETS"),
])
def test_each_service_refuses_a_short_published_placeholder_or_missing_key(
    service_env: dict[str, str], component: str, variable: str
) -> None:
    cases = [
        ("", "is not set"),
        ("too-short-1234", "at least 32"),
        (PUBLISHED_INTERNAL, "published in prgate's repository"),
        ("please-replace-me-with-a-real-secret-0123456789", "placeholder"),
        ("ab" * 20, "distinct characters"),
        (f"{'k' * 4}0123456789abcdef0123456789abcdef,short", "entry 2"),  # every key of a list, not just the first
    ]
    results = _run_all(component, [{**service_env, variable: value} for value, _ in cases])
    for (_, reason), result in zip(cases, results, strict=True):
        line = _refusal(result, component, variable)
        assert reason in line, line


@pytest.mark.parametrize("component", ["backend", "bot", "worker"])
def test_each_service_refuses_the_retired_shared_key(service_env: dict[str, str], component: str) -> None:
    result = _run(component, {**service_env, "PRGATE_INTERNAL_SECRETS": WORKER_SECRET})
    _refusal(result, component, "PRGATE_INTERNAL_SECRETS")


def test_the_backend_refuses_to_start_without_its_own_session_secret(service_env: dict[str, str]) -> None:
    cases = [
        ("", "SESSION_SECRET is not set"),
        (PUBLISHED_SESSION, "published in prgate's repository"),
        ("short-session", "at least 32"),
        (WORKER_SECRET, "differ from every internal key"),  # never the same as (or derived from) a key
    ]
    *results, shared = _run_all("backend", [
        *({**service_env, "SESSION_SECRET": value} for value, _ in cases),
        {**service_env, "PRGATE_ADMIN_SECRETS": INTERNAL_ENV["PRGATE_RECEIVER_SECRETS"]},
    ])
    for (_, reason), result in zip(cases, results, strict=True):
        line = _refusal(result, "backend", "SESSION_SECRET")
        assert reason in line, line
    assert "share a key" in _refusal(shared, "backend", "PRGATE_RECEIVER_SECRETS")


async def test_internal_api_only_on_the_internal_listener(service_env: dict[str, str], db: asyncpg.Pool) -> None:
    """BACKEND_INTERNAL_PORT: /internal/* answers 404 on the public port, and works on its own port."""
    fleet = Fleet()
    public, internal = free_port(), free_port()
    env = {**service_env, "BACKEND_PORT": str(public), "BACKEND_INTERNAL_PORT": str(internal)}
    proc = fleet.start("backend", "backend", env)
    try:
        await wait_http_ok(f"http://127.0.0.1:{public}/readyz", proc)
        body = b'{"worker_id": "w1", "max_actions": 1, "lease_seconds": 60, "wait_seconds": 0}'
        async with aiohttp.ClientSession() as session:
            for port, expected in ((public, 404), (internal, 200)):
                headers = {"Content-Type": "application/json", **signing.sign(WORKER_SECRET, "POST", CLAIM, body)}
                async with session.post(f"http://127.0.0.1:{port}{CLAIM}", data=body, headers=headers) as resp:
                    answer = await resp.json()
                    assert resp.status == expected, (port, answer)
                    assert ("error" in answer) == (expected == 404)
            # The public pages stay on the public port.
            async with session.get(f"http://127.0.0.1:{public}/healthz") as resp:
                assert resp.status == 200
    except BaseException:
        print(fleet.logs())
        raise
    finally:
        fleet.stop_all()
