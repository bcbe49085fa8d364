"""Mutated real Bitbucket payloads → the real receiver: never a 5xx, always a JSON answer.

Every value of every real body in tests/fixtures/bitbucket/webhooks (down to a depth) is replaced in
turn by a value of each other JSON type, and each result is signed with the workspace's derived
secret and posted under its event key. The backend is a closed port: what the receiver accepts is
parked on Redis (202), the rest must be a 4xx with an ErrorBody, or 202 ignored.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot_worker.webhooks.app import create_receiver_app
from tests.support.bitbucket import FIXTURES, WORKSPACE, post
from tests.support.webhooks import TestQueue, bot_settings, closed_port, fresh_queue

EVENT_KEYS = {
    "createPayload": "pullrequest:created", "pullrequest_created": "pullrequest:created",
    "fulfilled": "pullrequest:fulfilled", "rejected": "pullrequest:rejected", "update": "pullrequest:updated",
}
REPLACEMENTS: tuple[Any, ...] = (None, 0, -1, 2**63, "", "x" * 300, [], {}, True, "{not-a-uuid}")
MAX_DEPTH = 4
PER_FIXTURE = 150  # mutations drawn per body (seeded): ~3 000 requests in all


def event_key(name: str, payload: dict[str, Any]) -> str:
    if "push" in payload:
        return "repo:push"
    return next(key for part, key in EVENT_KEYS.items() if part in name)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if len(prefix) >= MAX_DEPTH:
        return
    children = node.items() if isinstance(node, dict) else enumerate(node[:2]) if isinstance(node, list) else ()
    for key, child in children:
        if key == "links":
            continue  # prgate reads one link; the rest is noise that multiplies the cases
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def mutated(payload: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copied = copy.deepcopy(payload)
    node: Any = copied
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copied


def cases() -> list[tuple[str, str, dict[str, Any]]]:
    rng = random.Random(16)
    found = []
    for file in sorted(FIXTURES.glob("*.json")):
        payload = json.loads(file.read_text())
        key = event_key(file.name, payload)
        every = [(path, value) for path in paths(payload) for value in REPLACEMENTS]
        for path, value in rng.sample(every, min(PER_FIXTURE, len(every))):
            found.append((file.name, key, mutated(payload, path, value)))
        comment = copy.deepcopy(payload)
        comment["comment"] = {"id": 1, "content": {"raw": "/prgate recheck"}, "user": payload.get("actor")}
        found.append((file.name, "pullrequest:comment_created", comment))
    return found


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[TestQueue]:
    async with fresh_queue(redis_url) as q:
        yield q


@pytest.fixture
async def receiver(redis_url: str, queue: TestQueue, aiohttp_client: Any) -> TestClient[Any, Any]:
    with closed_port() as port:
        client: TestClient[Any, Any] = await aiohttp_client(
            create_receiver_app(bot_settings(f"http://127.0.0.1:{port}", redis_url, queue.name))
        )
        return client


async def test_mutated_real_payloads_are_never_a_5xx(receiver: TestClient[Any, Any]) -> None:
    statuses: dict[int, int] = {}
    for name, key, payload in cases():
        workspace = WORKSPACE
        repo = payload.get("repository")
        if isinstance(repo, dict):
            holder = repo.get("workspace") or repo.get("owner")
            raw = holder.get("uuid") if isinstance(holder, dict) else None
            if isinstance(raw, str) and len(raw.strip("{}")) == 36:
                workspace = raw.strip("{}").lower()
        resp = await post(receiver, key, payload, workspace=workspace)
        text = await resp.text()
        assert resp.status < 500, (name, key, resp.status, text)
        assert resp.content_type == "application/json", (name, resp.status, text)
        body = json.loads(text)
        if resp.status >= 400:
            assert {"error", "message"} <= set(body), (name, text)
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
    # The mutations reach every branch: some parked, some ignored, some refused as shapes or workspaces.
    assert statuses.get(202, 0) > 0
    assert statuses.get(422, 0) > 0
    assert statuses.get(401, 0) > 0
