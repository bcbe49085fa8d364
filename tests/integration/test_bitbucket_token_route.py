"""`POST /internal/v2/bitbucket/tenants/{tenant_id}/token`: the workers' signed way to a workspace's token."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from cryptography.fernet import Fernet

from backend_api.app import create_app
from backend_api.crypto import Vault
from backend_api.store import bitbucket as store
from tests.conftest import ADMIN_SECRET, INTERNAL_SECRET, RECEIVER_SECRET, backend_settings
from tests.support.signed import SignedClient

KEY = Fernet.generate_key().decode()


def _path(tenant_id: int) -> str:
    return f"/internal/v2/bitbucket/tenants/{tenant_id}/token"


@pytest.fixture
async def bb_backend(db: asyncpg.Pool, database_url: str, aiohttp_client: Any) -> SignedClient:
    settings = backend_settings(database_url, PRGATE_ENCRYPTION_KEY=KEY, BITBUCKET_TOKEN_TTL_SECONDS=120)
    return SignedClient(await aiohttp_client(create_app(settings)), INTERNAL_SECRET)


async def _connected(db: asyncpg.Pool, slug: str, token: str) -> int:
    async with db.acquire() as conn:
        row = await store.upsert_workspace(conn, workspace_uuid=str(uuid.uuid4()), slug=slug, name=slug,
                                           token_ciphertext=Vault([KEY]).encrypt(token))
    return row.tenant_id


async def test_the_worker_gets_the_tenants_own_token(bb_backend: SignedClient, db: asyncpg.Pool) -> None:
    a = await _connected(db, "acme", "token-a")
    b = await _connected(db, "other", "token-b")
    got = await bb_backend.post_json(_path(a), {})
    assert got == {"tenant_id": a, "workspace_slug": "acme", "token": "token-a", "ttl_seconds": 120}
    assert (await bb_backend.post_json(_path(b), {}))["token"] == "token-b"


async def test_unknown_and_disconnected_tenants_are_404(bb_backend: SignedClient, db: asyncpg.Pool) -> None:
    tenant = await _connected(db, "acme", "token-a")
    resp = await bb_backend.post(_path(tenant + 1000), {})
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    async with db.acquire() as conn:
        await store.disconnect(conn, tenant)
    resp = await bb_backend.post(_path(tenant), {})
    assert resp.status == 404
    assert "token" not in await resp.text()
    assert (await bb_backend.client.post(_path(0))).status in (401, 404)


@pytest.mark.parametrize(("key", "status"), [(None, 401), (RECEIVER_SECRET, 403), (ADMIN_SECRET, 403)],
                         ids=["unsigned", "receiver-key", "admin-key"])  # the keys are random per run
async def test_only_the_workers_key_opens_it(
    bb_backend: SignedClient, db: asyncpg.Pool, key: str | None, status: int
) -> None:
    tenant = await _connected(db, "acme", "token-a")
    if key is None:
        resp = await bb_backend.client.post(_path(tenant), json={})
    else:
        resp = await bb_backend.post(_path(tenant), {}, sign_with=key)
    assert resp.status == status
    assert "token-a" not in await resp.text()


async def test_without_the_encryption_key_the_token_cannot_be_read(
    db: asyncpg.Pool, database_url: str, aiohttp_client: Any
) -> None:
    tenant = await _connected(db, "acme", "token-a")
    client = SignedClient(await aiohttp_client(create_app(backend_settings(database_url))), INTERNAL_SECRET)
    resp = await client.post(_path(tenant), {})
    assert resp.status == 503
    assert "PRGATE_ENCRYPTION_KEY" in (await resp.json())["message"]
    rotated_away = backend_settings(database_url, PRGATE_ENCRYPTION_KEY=Fernet.generate_key().decode())
    client = SignedClient(await aiohttp_client(create_app(rotated_away)), INTERNAL_SECRET)
    resp = await client.post(_path(tenant), {})
    assert resp.status == 503
    assert "token-a" not in await resp.text()
