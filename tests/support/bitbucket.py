"""Bitbucket webhook test helpers: real payloads, signed with a workspace's derived secret and posted."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from backend_api.crypto import Vault
from backend_api.store.bitbucket import upsert_workspace
from prgate.simulator.bitbucket.app import PREFIX, create_bitbucket_app
from prgate.simulator.bitbucket.config import BitbucketConfig
from prgate.simulator.bitbucket.http import BB_STATE
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.core.app import mount
from provider_clients.bitbucket.hook_secret import derive
from tests.support.webhooks import BITBUCKET_MASTER

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitbucket" / "webhooks"
# The workspace of the cloud__* payloads (nfalco79) and another one.
WORKSPACE = "7d3a178a-a087-4756-b2da-2f9eadf50ba8"
OTHER = "2f053ac1-4c69-4188-8014-43c976bf1c7c"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def secret_of(workspace: str, master: str = BITBUCKET_MASTER) -> str:
    return derive(master.encode(), workspace)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post(
    client: TestClient[Any, Any], event_key: str, payload: Any, *, workspace: str = WORKSPACE,
    secret: str | None = None, raw: bytes | None = None, request_uuid: str | None = None,
    drop: tuple[str, ...] = (), replace: dict[str, str] | None = None,
) -> ClientResponse:
    """Sign and POST one delivery with Bitbucket's headers, to `workspace`'s URL."""
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Event-Key": event_key,
        "X-Request-UUID": request_uuid or str(uuid.uuid4()),
        "X-Attempt-Number": "1",
        "X-Hub-Signature": sign(secret if secret is not None else secret_of(workspace), body),
        "User-Agent": "Bitbucket-Webhooks/2.0",
    }
    for name in drop:
        headers.pop(name)
    headers.update(replace or {})
    return await client.post(f"/webhooks/bitbucket/{workspace}", data=body, headers=headers)




@asynccontextmanager
async def simulator_server(config: BitbucketConfig | None = None) -> AsyncIterator[tuple[BitbucketState, str]]:
    """The Bitbucket simulator mounted under its prefix, as `prgate simulator` serves it (server.py): its
    state and the API URL clients use (`BITBUCKET_API_URL`). No webhooks on API changes by default."""
    root = web.Application()
    app = create_bitbucket_app(config or BitbucketConfig(webhooks_on_api_changes=False))
    mount(root, PREFIX, app)
    server = TestServer(root)
    await server.start_server()
    try:
        yield app[BB_STATE], str(server.make_url(PREFIX))
    finally:
        await server.close()


async def connect_stored(db: asyncpg.Pool, key: str, *, workspace_uuid: str, slug: str, token: str) -> int:
    """A connected workspace as the connect flow stores it (its token encrypted with `key`): its tenant id."""
    async with db.acquire() as conn:
        row = await upsert_workspace(conn, workspace_uuid=workspace_uuid, slug=slug, name=slug,
                                     token_ciphertext=Vault([key]).encrypt(token))
    return row.tenant_id
