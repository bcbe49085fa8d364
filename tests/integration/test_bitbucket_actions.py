"""Bitbucket actions through the real executor, against the Bitbucket simulator over real HTTP.

The workspace's token comes from the real backend (its signed token route over the tenancy store,
real PostgreSQL); the write throttle is the real one on real Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from cryptography.fernet import Fernet
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from backend_api.app import create_app
from backend_api.crypto import Vault
from backend_api.store import bitbucket as store
from bot_worker.backend.client import BackendClient
from bot_worker.metrics import Metrics
from bot_worker.providers.bitbucket.runner import BitbucketRunner
from bot_worker.providers.bitbucket.tokens import WorkspaceTokens
from bot_worker.providers.registry import ProviderRegistry
from bot_worker.worker.claim_loop import ClaimLoop
from bot_worker.worker.executor import Executor
from bot_worker.worker.throttle import WriteThrottle
from prgate.simulator import FaultRule
from prgate.simulator.bitbucket.state import BitbucketState
from shared_contracts.actions import ActionType, ClaimedAction, Outcome
from tests.conftest import INTERNAL_SECRET, backend_settings
from tests.support.bitbucket import connect_stored, simulator_server

KEY = Fernet.generate_key().decode()
MARKER = "[//]: # (prgate:pr-comment)"
AUTHOR = "557058:newcomer-0001"


@dataclass
class World:
    sim: BitbucketState
    api_url: str
    tenant_id: int
    pr_id: int
    db: asyncpg.Pool
    workspace_uuid: str


@pytest.fixture
async def world(db: asyncpg.Pool) -> AsyncIterator[World]:
    async with simulator_server() as (sim, api_url):
        ws = sim.add_workspace("acme")
        token = sim.create_token("acme")
        sim.add_repository("acme", "widgets")
        sim.add_user(AUTHOR, nickname="newcomer")
        pr = sim.open_pull_request("acme", "widgets", author=AUTHOR, title="first", source_branch="feature/x")
        bare = ws.uuid.strip("{}")
        tenant_id = await connect_stored(db, KEY, workspace_uuid=bare, slug="acme", token=token.value)
        yield World(sim, api_url, tenant_id, pr.id, db, bare)


@dataclass
class Worker:
    executor: Executor
    tokens: WorkspaceTokens
    metrics: Metrics
    fetches: list[int]
    fetch: Any
    backend: BackendClient


@pytest.fixture
async def worker(world: World, database_url: str, redis_url: str, aiohttp_server: Any) -> AsyncIterator[Worker]:
    backend = await aiohttp_server(create_app(backend_settings(database_url, PRGATE_ENCRYPTION_KEY=KEY)))
    metrics = Metrics(CollectorRegistry(), "worker")
    fetches: list[int] = []
    async with aiohttp.ClientSession() as session, Redis.from_url(redis_url) as redis:
        client = BackendClient(session, str(backend.make_url("/")), INTERNAL_SECRET)

        async def fetch(tenant_id: int) -> Any:
            fetches.append(tenant_id)
            return await client.bitbucket_token(tenant_id)

        tokens = WorkspaceTokens(fetch)
        runner = BitbucketRunner(session, world.api_url, tokens, on_foreign_comment=metrics.foreign_comments.inc,
                                 on_stored_comment_lost=metrics.stored_comments_lost.inc)
        throttle = WriteThrottle(redis, 50, prefix=f"prgate-test-{uuid.uuid4().hex}")
        yield Worker(Executor(ProviderRegistry([runner]), throttle, provider_timeout=3, report_margin=1),
                     tokens, metrics, fetches, fetch, client)


def action(world: World, action_type: ActionType = ActionType.UPSERT_PR_COMMENT, *, body: str = "please verify",
           payload: dict[str, Any] | None = None, comment_id: int | None = None, pr_id: int | None = None,
           tenant_id: int | None = None) -> ClaimedAction:
    return ClaimedAction.model_validate({
        "action_id": 1, "attempt": 1, "lease_expires_at": datetime.now(UTC) + timedelta(seconds=60),
        "provider": "bitbucket", "action_type": action_type,
        "installation_id": tenant_id if tenant_id is not None else world.tenant_id,
        "repo_id": 10**15 + 1, "repo_full_name": "acme/widgets", "pr_number": pr_id or world.pr_id,
        "payload": payload if payload is not None else {"marker": MARKER, "body": f"{MARKER}\n{body}"},
        "comment_id": comment_id,
    })


def lease() -> float:
    return time.monotonic() + 60


def comments(world: World) -> list[str]:
    return [c.raw for c in world.sim.comments_of("acme", "widgets", world.pr_id)]


async def test_comment_upsert_is_idempotent_and_edits_ours(world: World, worker: Worker) -> None:
    first = await worker.executor.run(action(world), lease())
    assert (first.outcome, first.error) == (Outcome.SUCCEEDED, None)
    assert first.comment_id is not None
    again = await worker.executor.run(action(world), lease())
    assert again.outcome is Outcome.SUCCEEDED
    assert again.comment_id == first.comment_id
    assert comments(world) == [f"{MARKER}\nplease verify"]
    edited = await worker.executor.run(action(world, body="verified, thanks"), lease())
    assert edited.comment_id == first.comment_id
    assert comments(world) == [f"{MARKER}\nverified, thanks"]
    # Written by the workspace token's bot, which is what marks it as ours.
    [stored] = world.sim.comments_of("acme", "widgets", world.pr_id)
    assert world.sim.user(stored.user).type == "app_user"
    assert worker.fetches == [world.tenant_id]  # one token, kept for its TTL


async def test_the_backends_html_marker_is_written_as_markdown_bitbucket_does_not_show(
    world: World, worker: Worker
) -> None:
    """The backend's messages carry an HTML comment marker, which Bitbucket's Markdown would print."""
    html = "<!-- prgate:pr-comment -->"
    payload = {"marker": html, "body": f"{html}\nplease verify"}
    first = await worker.executor.run(action(world, payload=payload), lease())
    assert first.outcome is Outcome.SUCCEEDED
    assert comments(world) == [f"{MARKER}\nplease verify"]
    payload["body"] = f"{html}\nverified, thanks"
    again = await worker.executor.run(action(world, payload=payload), lease())
    assert again.comment_id == first.comment_id
    assert comments(world) == [f"{MARKER}\nverified, thanks"]


async def test_remembered_comment_is_edited_directly_and_a_lost_one_searched(world: World, worker: Worker) -> None:
    first = await worker.executor.run(action(world), lease())
    assert first.comment_id is not None
    direct = await worker.executor.run(action(world, body="v2", comment_id=first.comment_id), lease())
    assert direct.comment_id == first.comment_id
    assert comments(world) == [f"{MARKER}\nv2"]
    lost = await worker.executor.run(action(world, body="v3", comment_id=first.comment_id + 999), lease())
    assert (lost.outcome, lost.comment_id) == (Outcome.SUCCEEDED, first.comment_id)
    assert comments(world) == [f"{MARKER}\nv3"]
    assert worker.metrics.registry.get_sample_value("stored_comments_lost_total") == 1


async def test_a_foreign_comment_with_our_marker_is_never_edited(world: World, worker: Worker) -> None:
    world.sim.add_comment("acme", "widgets", world.pr_id, AUTHOR, f"quoting: {MARKER}")
    result = await worker.executor.run(action(world), lease())
    assert result.outcome is Outcome.SUCCEEDED
    assert comments(world) == [f"quoting: {MARKER}", f"{MARKER}\nplease verify"]
    assert worker.metrics.registry.get_sample_value("foreign_marker_comments_total") == 1


async def test_close_comments_then_declines_and_declined_twice_is_success(world: World, worker: Worker) -> None:
    for _ in range(2):
        result = await worker.executor.run(action(world, ActionType.CLOSE_PR_WITH_COMMENT, body="closed"), lease())
        assert (result.outcome, result.error) == (Outcome.SUCCEEDED, None)
        assert world.sim.pull_request("acme", "widgets", world.pr_id).state == "DECLINED"
    assert comments(world) == [f"{MARKER}\nclosed"]


async def test_reopen_only_comments(world: World, worker: Worker) -> None:
    world.sim.decline("acme", "widgets", world.pr_id, None)
    result = await worker.executor.run(action(world, ActionType.REOPEN_PR_WITH_COMMENT, body="verified"), lease())
    assert result.outcome is Outcome.SUCCEEDED
    assert world.sim.pull_request("acme", "widgets", world.pr_id).state == "DECLINED"
    assert comments(world) == [f"{MARKER}\nverified"]


async def test_commit_status_on_the_abbreviated_source_hash(world: World, worker: Worker) -> None:
    head = world.sim.pull_request("acme", "widgets", world.pr_id).source_hash
    for state, expected in (("pending", "INPROGRESS"), ("success", "SUCCESSFUL"), ("failure", "FAILED")):
        payload = {"sha": head[:12], "state": state, "description": f"prgate: {state}",
                   "target_url": "https://prgate.example/verify/abc"}
        result = await worker.executor.run(action(world, ActionType.SET_COMMIT_STATUS, payload=payload), lease())
        assert (result.outcome, result.error) == (Outcome.SUCCEEDED, None)
        [status] = world.sim.statuses_of("acme", "widgets", head)
        assert (status.key, status.state, status.url) == ("prgate", expected, "https://prgate.example/verify/abc")


async def test_the_config_files_status_has_its_own_key_beside_the_gates(world: World, worker: Worker) -> None:
    """`prgate/config` (an invalid `.prgate.yml`, a repository-level action: pr_number 0) is posted
    under `prgate-config`, so it never replaces the gate's `prgate` status on the same commit."""
    head = world.sim.pull_request("acme", "widgets", world.pr_id).source_hash
    gate = {"sha": head[:12], "state": "pending", "description": "verify", "target_url": "https://prgate.example/v"}
    config = {"sha": head[:12], "state": "failure", "context": "prgate/config",
              "description": "acme/widgets:.prgate.yml: deadline_secnds: unknown key"}
    for payload in (gate, config):
        claimed = action(world, ActionType.SET_COMMIT_STATUS, payload=payload).model_copy(update={"pr_number": 0})
        result = await worker.executor.run(claimed, lease())
        assert (result.outcome, result.error) == (Outcome.SUCCEEDED, None)
    statuses = {s.key: s for s in world.sim.statuses_of("acme", "widgets", head)}
    assert set(statuses) == {"prgate", "prgate-config"}
    assert (statuses["prgate"].state, statuses["prgate-config"].state) == ("INPROGRESS", "FAILED")
    assert statuses["prgate-config"].name == "prgate/config"
    assert statuses["prgate-config"].description == config["description"]


@pytest.mark.parametrize(
    ("rule", "outcome", "retry_after"),
    [
        (FaultRule(kind="primary_rate_limit", status=429, retry_after_seconds=90), Outcome.RETRYABLE_FAILURE, 90.0),
        (FaultRule(kind="primary_rate_limit", status=429, retry_after_seconds=5), Outcome.RETRYABLE_FAILURE, 60.0),
        (FaultRule(status=502), Outcome.RETRYABLE_FAILURE, None),
        (FaultRule(status=503), Outcome.RETRYABLE_FAILURE, None),
        (FaultRule(status=403), Outcome.FAILED, None),
        (FaultRule(status=404), Outcome.FAILED, None),
    ],
)
async def test_outcomes_of_bitbucket_errors(
    world: World, worker: Worker, rule: FaultRule, outcome: Outcome, retry_after: float | None
) -> None:
    world.sim.faults.add_rule(rule)
    result = await worker.executor.run(action(world), lease())
    assert result.outcome is outcome, result.error
    assert result.retry_after_seconds == retry_after
    assert result.error is not None
    assert comments(world) == []
    if rule.kind == "primary_rate_limit":
        assert result.rate_limit == "primary"


async def test_a_missing_pull_request_fails_with_a_clear_reason(world: World, worker: Worker) -> None:
    result = await worker.executor.run(action(world, pr_id=999), lease())
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert "not found" in result.error


async def test_a_refused_token_is_asked_again_once(world: World, worker: Worker) -> None:
    assert (await worker.executor.run(action(world), lease())).outcome is Outcome.SUCCEEDED
    # The token is rotated: Bitbucket forgets the old one, the backend stores the new one.
    old = next(t for t in world.sim.tokens.values() if t.kind == "workspace")
    new = world.sim.create_token("acme", name="rotated")
    del world.sim.tokens[old.value]
    async with world.db.acquire() as conn:
        await store.upsert_workspace(conn, workspace_uuid=world.workspace_uuid, slug="acme", name="acme",
                                     token_ciphertext=Vault([KEY]).encrypt(new.value))
    result = await worker.executor.run(action(world, body="after rotation"), lease())
    assert (result.outcome, result.error) == (Outcome.SUCCEEDED, None)
    assert worker.fetches == [world.tenant_id, world.tenant_id]
    # The new token's bot wrote a comment of its own (the old bot's is not its to edit); never a 401 loop.
    assert f"{MARKER}\nafter rotation" in comments(world)

    del world.sim.tokens[new.value]  # revoked on Bitbucket, still stored: refused after one re-ask
    refused = await worker.executor.run(action(world, body="again"), lease())
    assert refused.outcome is Outcome.FAILED
    assert refused.error is not None
    assert "refused" in refused.error
    assert len(worker.fetches) == 3  # the cached token refused, then one fresh ask, refused too: no loop


async def test_a_disconnected_workspace_fails_the_action(world: World, worker: Worker) -> None:
    async with world.db.acquire() as conn:
        await store.disconnect(conn, world.tenant_id)
    result = await worker.executor.run(action(world), lease())
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert "not connected" in result.error
    assert comments(world) == []


async def test_the_write_throttle_holds_per_workspace(world: World, worker: Worker, redis_url: str) -> None:
    async with aiohttp.ClientSession() as session, Redis.from_url(redis_url) as redis:
        runner = BitbucketRunner(session, world.api_url, worker.tokens)
        throttle = WriteThrottle(redis, 1, prefix=f"prgate-test-{uuid.uuid4().hex}")
        executor = Executor(ProviderRegistry([runner]), throttle, provider_timeout=3, report_margin=1)
        assert (await executor.run(action(world), lease())).outcome is Outcome.SUCCEEDED
        held = await executor.run(action(world, body="second"), lease())
        assert (held.outcome, held.rate_limit) == (Outcome.RETRYABLE_FAILURE, "throttle")
        assert held.retry_after_seconds is not None
        assert held.retry_after_seconds > 0
        # Another tenant's budget is its own: it is refused for its own reason (no token), not throttled.
        other = await executor.run(action(world, tenant_id=world.tenant_id + 1), lease())
        assert other.rate_limit is None
    assert comments(world) == [f"{MARKER}\nplease verify"]


async def test_the_token_is_kept_for_its_ttl_and_asked_once_at_a_time(world: World, worker: Worker) -> None:
    now = [1000.0]
    tokens = WorkspaceTokens(worker.fetch, clock=lambda: now[0])
    got = await asyncio.gather(*(tokens.get(world.tenant_id) for _ in range(5)))
    assert len(set(got)) == 1
    assert worker.fetches == [world.tenant_id]
    now[0] += 299  # the backend's default TTL is 300 s
    await tokens.get(world.tenant_id)
    assert len(worker.fetches) == 1
    now[0] += 2
    await tokens.get(world.tenant_id)
    assert len(worker.fetches) == 2


async def _outbox_action(db: asyncpg.Pool, world: World, body: str) -> int:
    """A Bitbucket action as the gate writes it (provider, tenant id, workspace/slug, PR id)."""
    async with db.acquire() as conn:
        action_id: int = await conn.fetchval(
            """INSERT INTO bot_actions (provider, action_type, installation_id, repo_id, repo_full_name, pr_number,
                                        payload, max_attempts)
               VALUES ('bitbucket', 'UPSERT_PR_COMMENT', $1, $2, 'acme/widgets', $3,
                       jsonb_build_object('marker', $4::text, 'body', $5::text), 3)
               RETURNING action_id""",
            world.tenant_id, 10**15 + 7, world.pr_id, MARKER, f"{MARKER}\n{body}",
        )
    return action_id


async def _until_done(db: asyncpg.Pool, action_id: int) -> asyncpg.Record:
    for _ in range(100):
        async with db.acquire() as conn:
            row = await conn.fetchrow("SELECT status, last_error FROM bot_actions WHERE action_id = $1", action_id)
        assert row is not None
        if row["status"] not in ("PENDING", "CLAIMED"):
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"action {action_id} still {row['status']}")


async def test_the_claim_loop_carries_out_outbox_actions_and_the_backend_remembers_the_comment(
    world: World, worker: Worker
) -> None:
    loop = ClaimLoop(worker.backend, worker.executor, worker_id="w-bb", concurrency=1, lease_seconds=60,
                     wait_seconds=0.5)
    task = asyncio.create_task(loop.run())
    try:
        first = await _outbox_action(world.db, world, "please verify")
        assert dict(await _until_done(world.db, first)) == {"status": "DONE", "last_error": None}
        async with world.db.acquire() as conn:
            remembered = await conn.fetchval(
                "SELECT comment_id FROM pr_comments WHERE provider = 'bitbucket' AND pr_number = $1", world.pr_id)
        [stored] = world.sim.comments_of("acme", "widgets", world.pr_id)
        assert remembered == stored.id
        world.sim.request_log.clear()
        second = await _outbox_action(world.db, world, "verified")
        assert (await _until_done(world.db, second))["status"] == "DONE"
        assert comments(world) == [f"{MARKER}\nverified"]
        # The claim carried the remembered id: read and edited directly, the PR's comments never listed.
        comments_path = f"/bitbucket/2.0/repositories/acme/widgets/pullrequests/{world.pr_id}/comments"
        assert [(r.method, r.path) for r in world.sim.request_log] == [
            ("GET", f"{comments_path}/{stored.id}"), ("PUT", f"{comments_path}/{stored.id}"),
        ]
    finally:
        await loop.stop(grace=1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
