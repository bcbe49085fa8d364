"""Shared fixtures: a fresh real PostgreSQL database per test run, truncated between tests."""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backend_api.app import create_app
from backend_api.settings import BackendSettings
from backend_api.store.db import create_pool
from backend_api.store.migrate import apply_migrations
from tests.support.github_sim import APP_ID, Simulator, app_keys
from tests.support.services import postgres_admin_url, redis_base_url, with_database
from tests.support.signed import SignedClient

# Per-component internal keys (shared_contracts.keys, docs/security.md), random per run: a value
# written in this repository is public, and the services refuse those at start-up.
# INTERNAL_SECRET is the workers' key: it opens every internal route but the admin ones (the
# worker replays parked deliveries, so it may ingest too), which is what most tests sign with.
WORKER_SECRET = "test-worker-" + secrets.token_hex(24)
INTERNAL_SECRET = WORKER_SECRET
# A second active worker key, as during a rotation: both verify, the first signs.
ROTATED_SECRET = "test-rotated-" + secrets.token_hex(24)
RECEIVER_SECRET = "test-receiver-" + secrets.token_hex(24)
ADMIN_SECRET = "test-admin-" + secrets.token_hex(24)
SESSION_SECRET = "test-session-" + secrets.token_hex(24)
# The environment every backend, receiver and worker process of a test gets (each reads its own).
INTERNAL_ENV = {
    "PRGATE_RECEIVER_SECRETS": RECEIVER_SECRET,
    "PRGATE_WORKER_SECRETS": f"{WORKER_SECRET},{ROTATED_SECRET}",
    "PRGATE_ADMIN_SECRETS": ADMIN_SECRET,
    "SESSION_SECRET": SESSION_SECRET,
}
TABLES = (
    "github_installations", "github_installation_repositories", "webhook_deliveries", "repo_settings",
    "contributors", "challenges", "bot_actions", "internal_nonces", "github_app_credentials",
    "decided_pull_requests", "reconcile_repairs", "reconcile_runs", "github_app_setup_claims",
    "parked_pull_request_events",
    "revoked_sessions", "revoked_user_sessions", "verify_wrong_answers",
    "pr_comments", "repo_config_files", "repo_config_stale",
    "bitbucket_repositories", "bitbucket_accounts", "bitbucket_workspaces", "api_tokens",
)


# `make test` runs the suite in two processes (pytest-xdist, --dist loadgroup). The tests that start
# prgate's own processes (e2e, chaos: fleets, kills, `prgate up`) take turns in one of them, so at most
# one such fleet runs at a time on a two-core machine; the in-process tests fill the other.
PROCESS_SUITES = {"e2e", "chaos"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_SUITES & set(item.path.relative_to(Path(__file__).parent).parts[:1]):
            item.add_marker(pytest.mark.xdist_group("processes"))


@pytest.fixture(scope="session")
def services() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture(scope="session")
def postgres_admin(services: ExitStack) -> str:
    return services.enter_context(postgres_admin_url(services))


@pytest.fixture(scope="session")
def database_url(postgres_admin: str) -> Iterator[str]:
    """A database of its own for this test run, migrated to head, dropped afterwards."""
    name = f"prgate_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(postgres_admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await apply_migrations(with_database(postgres_admin, name))

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield with_database(postgres_admin, name)
    asyncio.run(drop())


@pytest.fixture(scope="session")
def redis_url(services: ExitStack) -> str:
    return services.enter_context(redis_base_url(services))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test database, emptied before the test."""
    pool = await create_pool(database_url, min_size=1, max_size=10)
    async with pool.acquire() as conn:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    yield pool
    await pool.close()


def backend_settings(database_url: str, **overrides: Any) -> BackendSettings:
    return BackendSettings.model_validate(
        {
            "DATABASE_URL": database_url,
            **INTERNAL_ENV,
            "BACKEND_PUBLIC_URL": "http://prgate.test",
            "SWEEP_INTERVAL_SECONDS": 3600,
            **overrides,
        }
    )


@pytest.fixture
async def backend(db: asyncpg.Pool, database_url: str, aiohttp_client: Any) -> SignedClient:
    client = await aiohttp_client(create_app(backend_settings(database_url)))
    return SignedClient(client, INTERNAL_SECRET)


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    """A fresh GitHub simulator on a real port, with two installations and a PR each."""
    from aiohttp.test_utils import TestServer

    from prgate.simulator import SIM_STATE, SimulatorConfig, create_simulator_app

    config = SimulatorConfig(app_id=APP_ID, app_public_key_pem=app_keys().public_pem, webhooks_on_api_changes=False)
    app = create_simulator_app(config)
    server = TestServer(app)
    await server.start_server()
    state = app[SIM_STATE]
    state.add_installation(1001, "octo-org")
    state.add_repository(1001, 5001, "octo-org/widgets")
    state.upsert_pull_request("octo-org/widgets", 7, author_login="newcomer", author_id=9001)
    state.add_installation(2002, "acme")
    state.add_repository(2002, 7001, "acme/x")
    state.upsert_pull_request("acme/x", 3, author_login="someone", author_id=9002)
    yield Simulator(server, state)
    await server.close()
