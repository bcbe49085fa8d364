"""The whole stack as real processes, shared by the end-to-end tests."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from cryptography.fernet import Fernet

from tests.conftest import INTERNAL_ENV
from tests.support.github_sim import APP_ID, Simulator, app_keys
from tests.support.processes import Fleet, Proc, free_port, wait_http_ok
from tests.support.webhooks import BITBUCKET_MASTER  # the workspace hooks' master secret


@dataclass
class FullStack:
    fleet: Fleet
    env: dict[str, str]
    backend: Proc
    simulator_url: str
    backend_url: str
    bot_url: str

    @property
    def bitbucket_url(self) -> str:
        return f"{self.simulator_url}/bitbucket"

    def start_worker(self, name: str, **extra: str) -> Proc:
        return self.fleet.start(name, "worker", {**self.env, "WORKER_ID": name, **extra})

    async def restart_backend(self) -> None:
        self.backend = self.fleet.start("backend-2", "backend", self.env)
        await wait_http_ok(f"{self.backend_url}/readyz", self.backend)


@asynccontextmanager
async def running_full_stack(database_url: str, redis_url: str, tmp_path: Path, *,
                             extra_env: dict[str, str] | None = None,
                             worker_env: dict[str, str] | None = None, workers: int = 2) -> AsyncIterator[FullStack]:
    """Simulator (GitHub at the root, Bitbucket under /bitbucket), backend, receiver and `workers`
    workers as real processes; `extra_env` for every process, `worker_env` for the workers only."""
    fleet = Fleet()
    ports = {name: free_port() for name in ("backend", "bot", "simulator")}
    key_path = tmp_path / "app.pem"
    key_path.write_text(app_keys().private_pem)
    sim_url = f"http://127.0.0.1:{ports['simulator']}"
    env = {
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, **INTERNAL_ENV,
        "BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": str(ports["backend"]),
        "BACKEND_URL": f"http://127.0.0.1:{ports['backend']}",
        "BACKEND_PUBLIC_URL": f"http://127.0.0.1:{ports['backend']}",
        "BOT_HOST": "127.0.0.1", "BOT_PORT": str(ports["bot"]), "BOT_PUBLIC_URL": f"http://127.0.0.1:{ports['bot']}",
        "SIMULATOR_PORT": str(ports["simulator"]),
        "SIMULATOR_WEBHOOK_URL": f"http://127.0.0.1:{ports['bot']}/webhooks/github",
        "SIMULATOR_SECONDARY_LIMIT_PER_MINUTE": "100000",
        "GITHUB_API_URL": sim_url, "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_WEB_URL": sim_url,
        "GITHUB_CLIENT_ID": "prgate-sim-oauth-client", "GITHUB_CLIENT_SECRET": "prgate-sim-oauth-secret",
        "GITHUB_PRIVATE_KEY_PATH": str(key_path), "GITHUB_WEBHOOK_SECRET": secrets.token_hex(16),
        "BITBUCKET_API_URL": f"{sim_url}/bitbucket", "BITBUCKET_WEB_URL": f"{sim_url}/bitbucket",
        "BITBUCKET_WEBHOOK_SECRET": BITBUCKET_MASTER, "PRGATE_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ARQ_QUEUE_NAME": f"prgate-test-{uuid.uuid4().hex}", "WORKER_METRICS_PORT": "0",
        "WORKER_CLAIM_WAIT_SECONDS": "5", "FORWARD_TIMEOUT_SECONDS": "1", "SWEEP_INTERVAL_SECONDS": "0.5",
        "REDELIVERY_INTERVAL_SECONDS": "0",  # off; tests/e2e/test_redelivery.py starts workers with it on
        "RECONCILE_INTERVAL_SECONDS": "0",  # off; tests/e2e/test_reconcile.py turns it on or runs the CLI
        "CONFIG_REFRESH_INTERVAL_SECONDS": "1",  # installed and inheriting repositories read without a wait
        **(extra_env or {}),
    }
    simulator = fleet.start("simulator", "simulator", env)
    backend = fleet.start("backend", "backend", env)
    bot = fleet.start("bot", "bot", env)
    stack = FullStack(fleet, env, backend, sim_url, env["BACKEND_URL"], f"http://127.0.0.1:{ports['bot']}")
    try:
        await wait_http_ok(f"{stack.simulator_url}/_sim/health", simulator)
        await wait_http_ok(f"{stack.backend_url}/readyz", backend)
        await wait_http_ok(f"{stack.bot_url}/healthz", bot)
        # Only now: a worker's metrics port is the kernel's pick (port 0), and picked while the
        # others were still starting it could take a port chosen for them (seen: the simulator's).
        for i in range(workers):
            stack.start_worker(f"worker-{i}", **(worker_env or {}))
        yield stack
    except BaseException:
        print(fleet.logs())
        raise
    finally:
        fleet.stop_all()


@pytest.fixture
async def full_stack(db: asyncpg.Pool, database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[FullStack]:
    async with running_full_stack(database_url, redis_url, tmp_path) as stack:
        yield stack




def page_backend_env(database_url: str, simulator: Simulator, port: int, key_path: Path, operators: str,
                     extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """A backend process serving the pages, GitHub (OAuth and API) the in-process simulator: the
    environment the page tests (dashboard, settings) share."""
    backend_url = f"http://127.0.0.1:{port}"
    return {
        "DATABASE_URL": database_url, **INTERNAL_ENV,
        "BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": str(port), "BACKEND_PUBLIC_URL": backend_url,
        "GITHUB_API_URL": simulator.url, "GITHUB_WEB_URL": simulator.url,
        "GITHUB_CLIENT_ID": simulator.state.config.oauth_client_id,
        "GITHUB_CLIENT_SECRET": simulator.state.config.oauth_client_secret,
        "GITHUB_APP_ID": str(APP_ID), "GITHUB_PRIVATE_KEY_PATH": str(key_path),
        "PRGATE_OPERATORS": operators, "SWEEP_INTERVAL_SECONDS": "3600", **(extra_env or {}),
    }


@asynccontextmanager
async def page_backend(database_url: str, simulator: Simulator, tmp_path: Path, *, operators: str,
                       extra_env: dict[str, str] | None = None) -> AsyncIterator[str]:
    """The backend as a real process (`page_backend_env`), ready; its URL. Its logs are printed when
    the block fails, and it is stopped after."""
    fleet = Fleet()
    port = free_port()
    key_path = tmp_path / "app.pem"
    key_path.write_text(app_keys().private_pem)
    backend = fleet.start("backend", "backend", page_backend_env(database_url, simulator, port, key_path, operators,
                                                                     extra_env))
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/readyz", backend)
        yield f"http://127.0.0.1:{port}"
    except BaseException:
        print(fleet.logs())
        raise
    finally:
        fleet.stop_all()


async def sim(session: aiohttp.ClientSession, stack: FullStack, path: str, body: dict[str, Any]) -> Any:
    """Drive the simulator's control API (what a person would do on GitHub)."""
    async with session.post(f"{stack.simulator_url}{path}", json=body) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def sim_get(session: aiohttp.ClientSession, stack: FullStack, path: str) -> Any:
    async with session.get(f"{stack.simulator_url}{path}") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()
