"""The Bitbucket gate through the backend's signed ingest routes, real PostgreSQL and the Bitbucket
simulator server (the author's and commenter's permissions asked of it with the workspace's token)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from cryptography.fernet import Fernet

from backend_api.app import create_app
from backend_api.gate.deadlines import sweep_all
from backend_api.store import bitbucket as store
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.core.faults import FaultRule
from tests.conftest import INTERNAL_SECRET, backend_settings
from tests.support.bitbucket import connect_stored, simulator_server
from tests.support.signed import SignedClient

KEY = Fernet.generate_key().decode()
WORKSPACE = "6f1c7e0a-3b7d-4c55-9d2e-0a1b2c3d4e5f"
REPO = "0b9e1f2a-7c3d-4e5f-8a9b-1c2d3e4f5a6b"
AUTHOR = {"account_id": "557058:newcomer", "uuid": "11111111-2222-4333-8444-555555555555", "nickname": "newcomer"}
MAINTAINER = {"account_id": "557058:maint", "uuid": "22222222-2222-4333-8444-555555555555", "nickname": "maint"}
PR_ROUTE = "/internal/v2/bitbucket/events/pull-request"
COMMAND_ROUTE = "/internal/v2/bitbucket/events/command"


@dataclass
class World:
    sim: BitbucketState
    backend: SignedClient
    db: asyncpg.Pool


@pytest.fixture
async def world(db: asyncpg.Pool, database_url: str, aiohttp_client: Any) -> AsyncIterator[World]:
    async with simulator_server() as (sim, api_url):
        sim.add_workspace("acme", uuid=WORKSPACE)
        token = sim.create_token("acme")
        sim.add_repository("acme", "widgets", uuid=REPO)
        for who in (AUTHOR, MAINTAINER):
            sim.add_user(who["account_id"], uuid=who["uuid"], nickname=who["nickname"])
        await connect_stored(db, KEY, workspace_uuid=WORKSPACE, slug="acme", token=token.value)
        settings = backend_settings(database_url, PRGATE_ENCRYPTION_KEY=KEY, BITBUCKET_API_URL=api_url)
        backend = SignedClient(await aiohttp_client(create_app(settings)), INTERNAL_SECRET)
        yield World(sim, backend, db)


def pr_event(key: str = "pullrequest:created", *, pr_id: int = 7, head: str = "abcdef012345",
             state: str = "OPEN", author: dict[str, str] = AUTHOR, delivery: str | None = None) -> dict[str, Any]:
    return {
        "delivery_id": delivery or str(uuid.uuid4()), "event_key": key, "workspace_uuid": WORKSPACE,
        "workspace_slug": "acme", "repository": {"uuid": REPO, "full_name": "acme/widgets"},
        "pull_request": {"id": pr_id, "title": "Fix", "state": state, "source_commit": head, "author": author},
        "actor": author,
    }


async def ingest(world: World, body: dict[str, Any], route: str = PR_ROUTE) -> tuple[int, dict[str, Any]]:
    resp = await world.backend.post(route, body)
    return resp.status, await resp.json()


async def rows(world: World, sql: str) -> list[asyncpg.Record]:
    async with world.db.acquire() as conn:
        return list(await conn.fetch(sql))


def permission_calls(world: World) -> int:
    return sum(1 for r in world.sim.request_log if "/permissions/repositories/" in r.path)


async def test_a_first_time_contributor_is_gated_once_with_bitbucket_actions(world: World) -> None:
    body = pr_event()
    status, answer = await ingest(world, body)
    assert status == 200, answer
    assert (answer["status"], answer["decision"]) == ("ACCEPTED", "GATE")
    [challenge] = await rows(world, "SELECT provider, pr_number, head_sha, status FROM challenges")
    assert tuple(challenge) == ("bitbucket", 7, "abcdef012345", "PENDING")
    actions = await rows(world, "SELECT provider, action_type, repo_full_name, payload FROM bot_actions "
                                "ORDER BY action_id")
    assert [(a["provider"], a["action_type"], a["repo_full_name"]) for a in actions] == [
        ("bitbucket", "UPSERT_PR_COMMENT", "acme/widgets"), ("bitbucket", "SET_COMMIT_STATUS", "acme/widgets")]
    assert actions[1]["payload"]["sha"] == "abcdef012345"
    # A retry of the same body under a new X-Request-UUID is a duplicate: the digest is the dedup key too.
    again = {**body, "delivery_id": str(uuid.uuid4()), "body_sha256": "a" * 64}
    first_with_digest = {**pr_event(pr_id=8), "body_sha256": "a" * 64}
    assert (await ingest(world, first_with_digest))[1]["status"] == "ACCEPTED"
    assert (await ingest(world, again))[1]["status"] == "DUPLICATE"
    assert (await ingest(world, body))[1]["status"] == "DUPLICATE"
    assert len(await rows(world, "SELECT 1 FROM challenges")) == 2


async def test_write_permission_exempts_and_the_answer_is_cached(world: World) -> None:
    world.sim.set_permission("acme", "widgets", AUTHOR["account_id"], "write")
    _, answer = await ingest(world, pr_event())
    assert (answer["decision"], answer["reason"]) == ("EXEMPT", "author has write permission")
    asked = permission_calls(world)
    assert asked >= 1
    _, answer = await ingest(world, pr_event("pullrequest:updated", head="fedcba987654"))
    assert answer["decision"] == "EXEMPT"
    assert permission_calls(world) == asked  # within the cache's lifetime Bitbucket is not asked again


async def test_bitbucket_out_of_reach_is_503_and_nothing_is_written(world: World) -> None:
    world.sim.faults.add_rule(FaultRule(method="GET", path_regex="/permissions/repositories/", status=503))
    status, answer = await ingest(world, pr_event(delivery="d-503"))
    assert status == 503, answer
    assert answer["error"] == "unavailable"
    assert await rows(world, "SELECT 1 FROM challenges") == []
    assert await rows(world, "SELECT 1 FROM webhook_deliveries") == []
    status, answer = await ingest(world, pr_event(delivery="d-503"))  # Bitbucket's retry, now answered
    assert (status, answer["decision"]) == (200, "GATE")


async def test_unknown_and_disconnected_workspaces_are_ignored(world: World) -> None:
    stranger = {**pr_event(), "workspace_uuid": str(uuid.uuid4())}
    status, answer = await ingest(world, stranger)
    assert (status, answer["status"], answer["reason"]) == (200, "IGNORED", "unknown workspace")
    async with world.db.acquire() as conn:
        tenant = await store.get_by_uuid(conn, WORKSPACE)
        assert tenant is not None
        await store.disconnect(conn, tenant.tenant_id)
    _, answer = await ingest(world, pr_event())
    assert answer["status"] == "IGNORED"
    assert await rows(world, "SELECT 1 FROM challenges") == []


async def test_declined_or_merged_cancels_the_challenge_and_its_untaken_actions(world: World) -> None:
    await ingest(world, pr_event())
    _, answer = await ingest(world, pr_event("pullrequest:rejected", state="DECLINED"))
    assert answer["decision"] == "CANCELLED"
    assert [r["status"] for r in await rows(world, "SELECT status FROM challenges")] == ["CANCELLED"]
    assert {r["status"] for r in await rows(world, "SELECT status FROM bot_actions")} == {"CANCELLED"}


async def test_the_deadline_declines_with_a_comment_that_does_not_promise_a_reopen(world: World) -> None:
    await ingest(world, pr_event())
    async with world.db.acquire() as conn:
        await conn.execute("UPDATE challenges SET deadline_at = now() - interval '1 second'")
    assert await sweep_all(world.db, public_url="http://prgate.test", max_attempts=8) == 1
    [close] = await rows(
        world, "SELECT provider, payload FROM bot_actions WHERE action_type = 'CLOSE_PR_WITH_COMMENT'"
    )
    assert close["provider"] == "bitbucket"
    assert "open it again" in close["payload"]["body"]
    assert "reopen" not in close["payload"]["body"]


async def test_commands_ask_the_commenters_permission(world: World) -> None:
    await ingest(world, pr_event())
    command = {**pr_event(), "comment_id": 501, "command": "exempt", "actor": AUTHOR}
    _, answer = await ingest(world, command, COMMAND_ROUTE)
    assert answer["decision"] is None  # refused: the author has no write permission
    assert "may not exempt" in answer["reason"]
    world.sim.set_permission("acme", "widgets", MAINTAINER["account_id"], "admin")
    by_maintainer = {**pr_event(), "comment_id": 502, "command": "exempt", "actor": MAINTAINER}
    _, answer = await ingest(world, by_maintainer, COMMAND_ROUTE)
    assert answer["decision"] == "EXEMPT"
    assert [r["status"] for r in await rows(world, "SELECT status FROM challenges")] == ["EXEMPTED"]
    assert {r["provider"] for r in await rows(world, "SELECT provider FROM bot_actions")} == {"bitbucket"}
