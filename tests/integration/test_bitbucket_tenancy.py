"""Bitbucket workspaces as tenants through the real backend app and the Bitbucket simulator server:
connect, connect again, refusals, disconnect, re-discovery; the token never in an answer or a log."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from backend_api.app import create_app
from backend_api.auth.session import SESSION_COOKIE, SessionCodec
from bot_worker.backend.client import BackendClient
from bot_worker.jobs import bitbucket_discovery as discovery
from bot_worker.jobs.context import DiscoveryContext
from bot_worker.jobs.lock import fleet_lock
from bot_worker.metrics import Metrics
from prgate.simulator.bitbucket.app import PREFIX, create_bitbucket_app
from prgate.simulator.bitbucket.http import BB_STATE
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.core.app import mount
from prgate.simulator.core.faults import FaultConfig, FaultProfile, FaultRule
from provider_clients.bitbucket.hook_secret import bare_uuid, derive
from shared_contracts import signing
from tests.conftest import ADMIN_SECRET, INTERNAL_SECRET, backend_settings
from tests.support.outbox import seed_actions
from tests.support.signed import SignedClient

KEY = Fernet.generate_key().decode()
MASTER = "bb-master-" + "0123456789abcdef" * 2
BOT_URL = "https://bot.prgate.test"
WORKSPACES = "/api/v1/bitbucket/workspaces"
EVENTS = {
    "pullrequest:created", "pullrequest:updated", "pullrequest:fulfilled", "pullrequest:rejected",
    "pullrequest:comment_created", "repo:push", "repo:commit_status_created", "repo:commit_status_updated",
}


@dataclass
class Sim:
    state: BitbucketState
    api_url: str


@pytest.fixture
async def bb_sim() -> AsyncIterator[Sim]:
    root = web.Application()
    bitbucket = create_bitbucket_app()
    mount(root, PREFIX, bitbucket)
    server = TestServer(root)
    await server.start_server()
    yield Sim(bitbucket[BB_STATE], str(server.make_url(PREFIX)))
    await server.close()


class Operator:
    """The backend app, called as the CLI does: signed with the admin key."""

    def __init__(self, signed: SignedClient) -> None:
        self.signed = signed

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else b""
        headers = {**signing.sign(ADMIN_SECRET, method, path, data), "Content-Type": "application/json"}
        resp = await self.signed.client.request(method, path, data=data or None, headers=headers)
        text = await resp.text()
        self.texts.append(text)
        return resp.status, json.loads(text) if text else None, dict(resp.headers)

    texts: list[str]
    codec: SessionCodec

    async def connect(self, workspace: str, token: str, expect: int = 200) -> Any:
        status, body, _ = await self.request("POST", WORKSPACES, {"workspace": workspace, "token": token})
        assert status == expect, (status, body)
        return body

    async def token(self, tenant_id: int) -> tuple[int, Any]:
        resp = await self.signed.post(f"/internal/v2/bitbucket/tenants/{tenant_id}/token", {})
        text = await resp.text()
        return resp.status, json.loads(text)


async def _operator(database_url: str, aiohttp_client: Any, sim: Sim, keys: str = KEY) -> Operator:
    settings = backend_settings(
        database_url, PRGATE_ENCRYPTION_KEY=keys, BITBUCKET_API_URL=sim.api_url, BITBUCKET_WEBHOOK_SECRET=MASTER,
        BOT_PUBLIC_URL=BOT_URL, PRGATE_OPERATORS="boss:42",
    )
    op = Operator(SignedClient(await aiohttp_client(create_app(settings)), INTERNAL_SECRET))
    op.texts = []
    op.codec = SessionCodec.from_settings(settings)
    return op


@pytest.fixture
async def operator(db: asyncpg.Pool, database_url: str, aiohttp_client: Any, bb_sim: Sim) -> Operator:
    return await _operator(database_url, aiohttp_client, bb_sim)


def _workspace(sim: Sim, slug: str, repos: int = 3) -> str:
    sim.state.add_workspace(slug)
    for i in range(repos):
        sim.state.add_repository(slug, f"repo-{i:03d}")
    return sim.state.create_token(slug).value


async def _row(db: asyncpg.Pool, slug: str) -> asyncpg.Record | None:
    async with db.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM bitbucket_workspaces WHERE slug = $1", slug)


async def test_connect_registers_one_hook_with_the_derived_secret_and_discovers_every_page(
    operator: Operator, bb_sim: Sim, db: asyncpg.Pool
) -> None:
    token = _workspace(bb_sim, "acme", repos=105)  # more than one page of 100
    answer = await operator.connect("acme", token)
    ws_uuid = bare_uuid(bb_sim.state.workspace("acme").uuid)
    assert ws_uuid is not None
    assert answer["workspace_uuid"] == ws_uuid
    assert answer["repositories"] == 105
    assert answer["hook"] == "created"
    assert answer["tenant_id"] >= 10**15
    [hook] = bb_sim.state.hooks_of("acme")
    assert hook.url == f"{BOT_URL}/webhooks/bitbucket/{ws_uuid}"
    assert hook.secret == derive(MASTER.encode(), ws_uuid)
    assert set(hook.events) == EVENTS
    async with db.acquire() as conn:
        stored = await conn.fetchval("SELECT count(*) FROM bitbucket_repositories WHERE removed_at IS NULL")
        ciphertext = await conn.fetchval("SELECT token_ciphertext FROM bitbucket_workspaces")
    assert stored == 105
    assert token.encode() not in bytes(ciphertext)
    status, got = await operator.token(answer["tenant_id"])
    assert status == 200
    assert got["token"] == token


async def test_connecting_again_replaces_the_token_and_updates_the_one_hook(
    operator: Operator, bb_sim: Sim
) -> None:
    first_token = _workspace(bb_sim, "acme")
    first = await operator.connect("acme", first_token)
    second_token = bb_sim.state.create_token("acme", "rotated").value
    bb_sim.state.add_repository("acme", "later")
    second = await operator.connect("acme", second_token)
    assert second["tenant_id"] == first["tenant_id"]
    assert second["hook"] == "updated"
    assert second["added_repositories"] == ["acme/later"]
    assert len(bb_sim.state.hooks_of("acme")) == 1
    assert (await operator.token(first["tenant_id"]))[1]["token"] == second_token


async def test_two_workspaces_get_different_secrets_and_tokens(operator: Operator, bb_sim: Sim) -> None:
    a = await operator.connect("acme", _workspace(bb_sim, "acme"))
    b = await operator.connect("other", _workspace(bb_sim, "other"))
    [hook_a], [hook_b] = bb_sim.state.hooks_of("acme"), bb_sim.state.hooks_of("other")
    assert hook_a.secret != hook_b.secret
    assert hook_a.url != hook_b.url
    assert hook_b.secret == derive(MASTER.encode(), b["workspace_uuid"])
    assert (await operator.token(a["tenant_id"]))[1]["workspace_slug"] == "acme"
    assert (await operator.token(b["tenant_id"]))[1]["workspace_slug"] == "other"


async def test_a_refused_token_an_unknown_workspace_and_bitbucket_down_write_nothing(
    operator: Operator, bb_sim: Sim, db: asyncpg.Pool
) -> None:
    token = _workspace(bb_sim, "acme")
    body = await operator.connect("acme", "not-a-token", expect=422)
    assert body["error"] == "token_refused"
    assert body["message"].startswith("the token was refused")
    body = await operator.connect("nowhere", token, expect=422)
    assert body["error"] == "unknown_workspace"
    bb_sim.state.faults.add_rule(FaultRule(method="POST", path_regex="/hooks$", status=503))
    status, body, headers = await operator.request("POST", WORKSPACES, {"workspace": "acme", "token": token})
    assert status == 503
    assert body["error"] == "unavailable"
    assert int(headers["Retry-After"]) > 0
    assert await _row(db, "acme") is None
    assert bb_sim.state.hooks_of("acme") == []
    status, body, _ = await operator.request("POST", WORKSPACES, {"workspace": "acme", "tokne": token})
    assert status == 422
    assert "did you mean token" in body["message"]


async def test_only_an_operator_manages_workspaces(operator: Operator, bb_sim: Sim) -> None:
    token = _workspace(bb_sim, "acme")
    client = operator.signed.client
    assert (await client.post(WORKSPACES, json={"workspace": "acme", "token": token})).status == 401
    # the workers' key opens the internal routes, not the operator's
    resp = await operator.signed.post(WORKSPACES, {"workspace": "acme", "token": token})
    assert resp.status == 401
    assert (await client.get(WORKSPACES)).status == 401
    assert bb_sim.state.hooks_of("acme") == []


async def test_disconnect_deletes_the_hook_cancels_the_work_and_closes_the_token_route(
    operator: Operator, bb_sim: Sim, db: asyncpg.Pool
) -> None:
    connected = await operator.connect("acme", _workspace(bb_sim, "acme"))
    other = await operator.connect("other", _workspace(bb_sim, "other"))
    tenant = connected["tenant_id"]
    [pending, claimed] = await seed_actions(db, 2, installation_id=tenant, repo="acme/repo-000", repo_id=tenant + 1)
    [untouched] = await seed_actions(db, 1, installation_id=other["tenant_id"], repo="other/repo-000",
                                     repo_id=other["tenant_id"] + 1)
    async with db.acquire() as conn:
        await conn.execute("""UPDATE bot_actions SET status = 'CLAIMED', lease_owner = 'w',
                              lease_expires_at = now() + interval '1 minute' WHERE action_id = $1""", claimed)
        await conn.execute(
            """INSERT INTO challenges (installation_id, repo_id, repo_full_name, pr_number, pr_id, author_id,
                                       author_login, status, deadline_at, provider)
               VALUES ($1::bigint, $1::bigint + 1, 'acme/repo-000', 1, 1, 1, 'x', 'PENDING',
                       now() + interval '1 day', 'bitbucket')""",
            tenant,
        )
    status, answer, _ = await operator.request("DELETE", f"{WORKSPACES}/acme")
    assert status == 200, answer
    assert answer["hook_deleted"] is True
    assert (answer["cancelled_actions"], answer["cancelled_challenges"]) == (2, 1)
    assert bb_sim.state.hooks_of("acme") == []
    assert len(bb_sim.state.hooks_of("other")) == 1
    async with db.acquire() as conn:
        statuses = dict(await conn.fetch("SELECT action_id, status FROM bot_actions"))
    assert statuses == {pending: "CANCELLED", claimed: "CANCELLED", untouched: "PENDING"}
    assert (await operator.token(tenant))[0] == 404
    assert (await operator.token(other["tenant_id"]))[0] == 200
    status, listing, _ = await operator.request("GET", WORKSPACES)
    assert status == 200
    assert {i["slug"]: i["status"] for i in listing["items"]} == {"acme": "DISCONNECTED", "other": "ACTIVE"}
    # again: already disconnected, nothing more to do; then purge deletes the rows
    assert (await operator.request("DELETE", f"{WORKSPACES}/acme"))[0] == 200
    status, answer, _ = await operator.request("DELETE", f"{WORKSPACES}/acme?purge=true")
    assert status == 200
    assert answer["purged"] is True
    assert await _row(db, "acme") is None
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM bot_actions WHERE installation_id = $1", tenant) == 0
    assert (await operator.request("DELETE", f"{WORKSPACES}/acme"))[0] == 404
    assert (await operator.request("DELETE", f"{WORKSPACES}/acme?purge=maybe"))[0] == 400


async def test_rediscovery_picks_up_new_and_deleted_repositories_and_records_failures(
    operator: Operator, bb_sim: Sim, db: asyncpg.Pool
) -> None:
    await operator.connect("acme", _workspace(bb_sim, "acme", repos=2))
    await operator.connect("other", _workspace(bb_sim, "other", repos=1))
    bb_sim.state.add_repository("acme", "fresh")
    bb_sim.state.remove_repository("acme", "repo-000")  # deleted on Bitbucket
    for token in [t for t, v in bb_sim.state.tokens.items() if v.workspace == "other"]:
        del bb_sim.state.tokens[token]  # the operator revoked other's token
    resp = await operator.signed.post("/internal/v2/bitbucket/rediscover", {})
    assert resp.status == 200
    report = {w["slug"]: w for w in (await resp.json())["workspaces"]}
    assert report["acme"]["added"] == ["acme/fresh"]
    assert report["acme"]["removed"] == ["acme/repo-000"]
    assert report["acme"]["error"] is None
    assert "refused" in report["other"]["error"]
    async with db.acquire() as conn:
        live = {r["full_name"] for r in await conn.fetch(
            "SELECT full_name FROM bitbucket_repositories WHERE removed_at IS NULL")}
        other_error = await conn.fetchval("SELECT last_error FROM bitbucket_workspaces WHERE slug = 'other'")
    assert live == {"acme/repo-001", "acme/fresh", "other/repo-000"}  # other keeps its repositories
    assert "refused" in other_error


async def test_the_token_is_in_no_answer_and_no_log_line(
    operator: Operator, bb_sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = _workspace(bb_sim, "acme")
    await operator.connect("acme", token)
    await operator.connect("acme", token)
    await operator.connect("acme", token + "x", expect=422)
    await operator.request("GET", WORKSPACES)
    await operator.signed.post("/internal/v2/bitbucket/rediscover", {})
    await operator.request("DELETE", f"{WORKSPACES}/acme")
    assert operator.texts
    assert all(token not in text for text in operator.texts)
    logged = [json.dumps(r.__dict__, default=str) + r.getMessage() for r in caplog.records]
    assert logged
    assert all(token not in line for line in logged)


async def test_the_workers_job_rediscovers_under_the_fleet_lock_and_counts(
    operator: Operator, bb_sim: Sim, redis_url: str
) -> None:
    await operator.connect("acme", _workspace(bb_sim, "acme", repos=1))
    bb_sim.state.add_repository("acme", "fresh")
    metrics = Metrics(CollectorRegistry(), "worker")
    async with aiohttp.ClientSession() as session, Redis.from_url(redis_url) as redis:
        ctx = DiscoveryContext(redis, uuid.uuid4().hex)
        backend = BackendClient(session, str(operator.signed.client.make_url("")), INTERNAL_SECRET)
        async with fleet_lock(redis, discovery.lock_key(ctx.key_prefix), 60_000) as held:
            assert held is not None
            assert await discovery.rediscover(ctx, backend, metrics) is None  # another replica runs it
        report = await discovery.rediscover(ctx, backend, metrics)
    assert report is not None
    assert [(w.slug, w.added, w.removed) for w in report.workspaces] == [("acme", ["acme/fresh"], [])]
    sample = metrics.registry.get_sample_value
    assert sample("bitbucket_discovery_total", {"outcome": "skipped"}) == 1
    assert sample("bitbucket_discovery_total", {"outcome": "listed"}) == 1
    assert sample("bitbucket_repositories_changed_total", {"change": "added"}) == 1


async def test_a_signed_in_operator_manages_workspaces_with_the_csrf_token(operator: Operator, bb_sim: Sim) -> None:
    token = _workspace(bb_sim, "acme")
    client = operator.signed.client
    boss, boss_cookie = operator.codec.issue(42, "boss", time.time())
    _, other_cookie = operator.codec.issue(7, "someone", time.time())
    as_boss = {"Cookie": f"{SESSION_COOKIE}={boss_cookie}"}
    resp = await client.get(WORKSPACES, headers={"Cookie": f"{SESSION_COOKIE}={other_cookie}"})
    assert resp.status == 403
    assert (await client.get(WORKSPACES, headers=as_boss)).status == 200
    resp = await client.post(WORKSPACES, json={"workspace": "acme", "token": token}, headers=as_boss)
    assert resp.status == 403
    assert (await resp.json())["error"] == "csrf_failed"
    csrf = {**as_boss, "X-CSRF-Token": operator.codec.csrf_token(boss, "owner-api")}
    resp = await client.post(WORKSPACES, json={"workspace": "acme", "token": token}, headers=csrf)
    assert resp.status == 200, await resp.text()
    assert (await client.delete(f"{WORKSPACES}/acme", headers=as_boss)).status == 403
    assert (await client.delete(f"{WORKSPACES}/acme", headers=csrf)).status == 200
    assert bb_sim.state.hooks_of("acme") == []


async def test_two_connects_at_once_leave_one_hook(operator: Operator, bb_sim: Sim) -> None:
    token = _workspace(bb_sim, "acme")
    # Slow answers, so the three interleave: without the slug's lock each would find no hook.
    bb_sim.state.faults.configure(FaultConfig(default=FaultProfile(latency_ms=50)))
    answers = await asyncio.gather(*(operator.connect("acme", token) for _ in range(3)))
    assert sorted(a["hook"] for a in answers) == ["created", "updated", "updated"]
    assert len(bb_sim.state.hooks_of("acme")) == 1


async def test_the_encryption_key_rotates_without_losing_a_token(
    operator: Operator, bb_sim: Sim, database_url: str, aiohttp_client: Any, db: asyncpg.Pool
) -> None:
    token = _workspace(bb_sim, "acme")
    tenant = (await operator.connect("acme", token))["tenant_id"]
    new_key = Fernet.generate_key().decode()
    # 1. the new key first, the old one still listed: the stored token reads; a reconnect re-encrypts
    rotating = await _operator(database_url, aiohttp_client, bb_sim, keys=f"{new_key},{KEY}")
    assert (await rotating.token(tenant))[1]["token"] == token
    await rotating.connect("acme", token)
    # 2. the old key dropped: still readable, since the reconnect wrote it under the new one
    rotated = await _operator(database_url, aiohttp_client, bb_sim, keys=new_key)
    assert (await rotated.token(tenant))[1]["token"] == token
    # and the old key alone no longer opens it
    status, body = await operator.token(tenant)
    assert status == 503
    assert token not in json.dumps(body)


async def test_an_operator_api_token_manages_workspaces_and_a_tenant_token_does_not(
    operator: Operator, bb_sim: Sim
) -> None:
    token = _workspace(bb_sim, "acme")
    await operator.connect("acme", token)

    async def mint(body: dict[str, Any]) -> str:
        resp = await operator.signed.post("/internal/v2/api-tokens", body, sign_with=ADMIN_SECRET)
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["token"])

    as_operator = {"Authorization": f"Bearer {await mint({'name': 'ops', 'scope': 'operator'})}"}
    as_tenant = {"Authorization": f"Bearer {await mint({'name': 'acme', 'scope': 'workspace', 'workspace': 'acme'})}"}
    client = operator.signed.client
    resp = await client.get(WORKSPACES, headers=as_operator)
    assert resp.status == 200
    assert [i["slug"] for i in (await resp.json())["items"]] == ["acme"]
    assert (await client.get(WORKSPACES, headers=as_tenant)).status == 403
    assert (await client.delete(f"{WORKSPACES}/acme", headers=as_tenant)).status == 403
    assert (await client.get(WORKSPACES, headers={"Authorization": "Bearer prgate_nope"})).status == 401
    resp = await client.post(WORKSPACES, json={"workspace": "acme", "token": token}, headers=as_operator)
    assert resp.status == 200, await resp.text()
    assert (await client.delete(f"{WORKSPACES}/acme", headers=as_operator)).status == 200
