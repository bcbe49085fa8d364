"""Mutated Bitbucket wire events → the backend's Bitbucket routes: never a 5xx, always JSON.

The schemathesis run (test_schemathesis.py) signs with the worker's key, so the receiver-only event
routes answer it 403 before reading a body. Here each valid event (a connected workspace, its
repository, a first-time author: the path through identity mapping, the permission ask and the gate)
has every field, down to a depth, replaced in turn by a value of each other JSON type or dropped,
and is posted signed with the receiver's key. A 4xx must carry an error body; the unmutated events
are accepted, so the cases reach the gate and not only the validator.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet

from backend_api.app import create_app
from prgate.simulator.bitbucket.app import PREFIX, create_bitbucket_app
from prgate.simulator.bitbucket.http import BB_STATE
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.core.app import mount
from provider_clients.bitbucket.hook_secret import bare_uuid
from shared_contracts import signing
from tests.conftest import ADMIN_SECRET, RECEIVER_SECRET, backend_settings
from tests.support.signed import SignedClient

PR_ROUTE = "/internal/v2/bitbucket/events/pull-request"
COMMAND_ROUTE = "/internal/v2/bitbucket/events/command"
REPLACEMENTS: tuple[Any, ...] = (None, 0, -1, 2**63, 1.5, "", "x" * 5000, [], {}, True, "{not-a-uuid}",
                                 "00000000-0000-4000-8000-000000000000")
DROP = object()
MAX_DEPTH = 3
PER_BODY = 220  # mutations drawn per event (seeded)


def paths(node: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if len(prefix) >= MAX_DEPTH or not isinstance(node, dict):
        return
    for key, child in node.items():
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def mutated(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copied = copy.deepcopy(body)
    node: Any = copied
    for key in path[:-1]:
        node = node[key]
    if value is DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return copied


@pytest.fixture
async def connected(db: asyncpg.Pool, database_url: str, aiohttp_client: Any) -> AsyncIterator[
        tuple[SignedClient, dict[str, Any]]]:
    """The backend with one workspace connected through its operator route (the simulator is its
    Bitbucket), and the identifiers an event of that workspace carries."""
    root = web.Application()
    bitbucket = create_bitbucket_app()
    mount(root, PREFIX, bitbucket)
    server = TestServer(root)
    await server.start_server()
    state: BitbucketState = bitbucket[BB_STATE]
    ws = state.add_workspace("acme")
    repo = state.add_repository("acme", "widgets")
    token = state.create_token("acme").value
    settings = backend_settings(database_url, PRGATE_ENCRYPTION_KEY=Fernet.generate_key().decode(),
                                BITBUCKET_API_URL=str(server.make_url(PREFIX)),
                                BITBUCKET_WEBHOOK_SECRET="fuzz-master-" + "a" * 32, BOT_PUBLIC_URL="https://bot.test")
    client = SignedClient(await aiohttp_client(create_app(settings)), RECEIVER_SECRET)
    data = json.dumps({"workspace": "acme", "token": token}).encode()
    path = "/api/v1/bitbucket/workspaces"
    resp = await client.client.post(path, data=data, headers={**signing.sign(ADMIN_SECRET, "POST", path, data),
                                                               "Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    ids = {"workspace_uuid": bare_uuid(ws.uuid), "repo_uuid": bare_uuid(repo.uuid)}
    yield client, ids
    await server.close()


def events(ids: dict[str, Any]) -> dict[str, dict[str, Any]]:
    author = {"uuid": "11111111-2222-4333-8444-555555555555", "account_id": "557058:author",
              "nickname": "newcomer", "display_name": "New Comer", "type": "user"}
    base = {
        "workspace_uuid": ids["workspace_uuid"], "workspace_slug": "acme",
        "repository": {"uuid": ids["repo_uuid"], "full_name": "acme/widgets", "private": True,
                       "main_branch": "main"},
        "pull_request": {"id": 7, "title": "Fix", "state": "OPEN", "draft": False, "source_commit": "abcdef012345",
                         "source_branch": "fix", "destination_branch": "main",
                         "html_url": "https://bitbucket.org/acme/widgets/pull-requests/7", "author": author},
        "actor": author,
    }
    return {
        PR_ROUTE: {"delivery_id": "d", "event": "pullrequest", "event_key": "pullrequest:created", **base},
        COMMAND_ROUTE: {"delivery_id": "d", "event": "pullrequest:comment_created", "comment_id": 99,
                        "command": "recheck", **base},
    }


def cases(bodies: dict[str, dict[str, Any]]) -> list[tuple[str, tuple[str, ...], Any]]:
    rng = random.Random(1616)
    drawn = []
    for route, body in bodies.items():
        every = [(route, path, value) for path in paths(body) for value in (*REPLACEMENTS, DROP)]
        drawn += rng.sample(every, min(PER_BODY, len(every)))
    return drawn


async def test_mutated_bitbucket_events_never_5xx_in_the_backend(
    connected: tuple[SignedClient, dict[str, Any]], db: asyncpg.Pool
) -> None:
    client, ids = connected
    bodies = events(ids)
    # The unmutated events are accepted: the mutations start from bodies that reach the gate.
    for route, body in bodies.items():
        resp = await client.post(route, {**body, "delivery_id": str(uuid.uuid4())})
        assert resp.status == 200, (route, resp.status, await resp.text())
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM challenges WHERE provider = 'bitbucket'") == 1

    statuses: dict[int, int] = {}
    for route, path, value in cases(bodies):
        body = mutated(bodies[route], path, value)
        if path != ("delivery_id",):
            body["delivery_id"] = str(uuid.uuid4())  # each case its own delivery: no dedup short-cut
        resp = await client.post(route, body)
        text = await resp.text()
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        assert resp.status < 500, (route, path, value, resp.status, text)
        assert resp.content_type == "application/json", (route, path, value, text)
        if resp.status >= 400:
            error = json.loads(text)
            assert isinstance(error.get("error"), str), (route, path, value, text)
            assert error["error"], (route, path, value, text)
    # Both kinds of answer were reached: refusals and events that went through.
    assert statuses.get(200, 0) > 0, statuses
    assert any(400 <= s < 500 for s in statuses), statuses


async def test_an_account_id_paired_with_another_uuid_is_refused_and_writes_nothing(
    connected: tuple[SignedClient, dict[str, Any]], db: asyncpg.Pool
) -> None:
    """Found by the mutations above (it was a 500): Atlassian pairs an account_id with one UUID."""
    client, ids = connected
    body = events(ids)[PR_ROUTE]
    assert (await client.post(PR_ROUTE, {**body, "delivery_id": str(uuid.uuid4())})).status == 200
    impostor = {**body["actor"], "uuid": "00000000-0000-4000-8000-000000000000"}
    async with db.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM webhook_deliveries")
    for twisted in ({**body, "actor": impostor},  # against the stored pairing
                    {**body, "actor": impostor, "pull_request": {**body["pull_request"], "id": 8,
                                                                 "author": {**impostor, "uuid": str(uuid.uuid4())}}}):
        resp = await client.post(PR_ROUTE, {**twisted, "delivery_id": str(uuid.uuid4())})
        assert resp.status == 422, await resp.text()
        assert (await resp.json())["error"] == "account_conflict"
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM bitbucket_accounts") == 1
        assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == before
        assert await conn.fetchval("SELECT count(*) FROM challenges") == 1
