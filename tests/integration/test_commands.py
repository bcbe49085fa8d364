"""`/prgate recheck` and `/prgate exempt`: enrichment by the receiver (simulator), decision by the backend."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from backend_api.app import create_app
from backend_api.challenges import messages
from backend_api.store import challenges
from bot_worker.webhooks.app import create_receiver_app
from tests.conftest import backend_settings
from tests.support.github_sim import APP_ID, Simulator, app_keys
from tests.support.ingest import send_installation, send_pr
from tests.support.payloads import fixture, installation_payload, pull_request_payload
from tests.support.signed import SignedClient
from tests.support.webhooks import bot_settings, fresh_queue, post_webhook

COMMAND_PATH = "/internal/v2/github/events/pr-command"
HEAD = "0123456789abcdef0123456789abcdef01234567"


def command(name: str, *, permission: str = "none", sender: str = "someone", sender_id: int = 4242,
            comment_id: int = 555, delivery_id: str | None = None) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id or str(uuid.uuid4()), "event": "issue_comment", "installation_id": 1001,
        "repository": {"id": 5001, "full_name": "octo-org/widgets", "private": False},
        "pull_request": {"id": 500_100_007, "number": 7, "title": "t", "state": "open", "draft": False,
                         "head_sha": HEAD, "author": {"id": 9001, "login": "newcomer", "type": "User"},
                         "author_association": "NONE"},
        "comment_id": comment_id, "command": name,
        "sender": {"id": sender_id, "login": sender, "type": "User"}, "sender_permission": permission,
    }


@pytest.fixture
async def gated(backend: SignedClient) -> SignedClient:
    await send_installation(backend, "installation", installation_payload("created"))
    assert (await send_pr(backend, pull_request_payload("opened")))["decision"] == "GATE"
    return backend


async def actions(db: asyncpg.Pool, after: int = 0) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return list(await conn.fetch("SELECT * FROM bot_actions WHERE action_id > $1 ORDER BY action_id", after))


async def challenge_statuses(db: asyncpg.Pool) -> list[str]:
    async with db.acquire() as conn:
        return [r["status"] for r in await conn.fetch("SELECT status FROM challenges ORDER BY challenge_id")]


@pytest.mark.parametrize("permission", ["admin", "maintain", "write"])
async def test_exempt_by_a_maintainer_resolves_the_challenge(
    gated: SignedClient, db: asyncpg.Pool, permission: str
) -> None:
    mark = (await actions(db))[-1]["action_id"]
    resp = await gated.post_json(COMMAND_PATH, command("exempt", permission=permission, sender="lead"))
    assert (resp["decision"], resp["reason"]) == ("EXEMPT", "exempted by lead")
    assert await challenge_statuses(db) == ["EXEMPTED"]
    comment, status = await actions(db, mark)
    assert comment["payload"]["body"] == messages.exempted_comment("newcomer", "lead")
    assert (status["payload"]["state"], status["payload"]["description"]) == ("success", messages.STATUS_EXEMPTED)


@pytest.mark.parametrize("permission", ["triage", "read", "none"])
async def test_exempt_by_anyone_else_gets_a_reply_and_changes_nothing(
    gated: SignedClient, db: asyncpg.Pool, permission: str
) -> None:
    mark = (await actions(db))[-1]["action_id"]
    resp = await gated.post_json(COMMAND_PATH, command("exempt", permission=permission, comment_id=77))
    assert resp["decision"] is None
    assert await challenge_statuses(db) == ["PENDING"]
    [reply] = await actions(db, mark)
    assert reply["payload"]["marker"] == messages.reply_marker(77)
    assert "needs write access" in reply["payload"]["body"]


async def test_unknown_command_gets_a_reply(gated: SignedClient, db: asyncpg.Pool) -> None:
    mark = (await actions(db))[-1]["action_id"]
    await gated.post_json(COMMAND_PATH, command("dance", comment_id=78))
    [reply] = await actions(db, mark)
    assert reply["payload"]["body"] == messages.unknown_command_reply(78, "someone", "dance")


async def test_recheck_by_anyone_lets_a_verified_author_through(gated: SignedClient, db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await challenges.record_verified(conn, 1001, 9001, "newcomer", None)
    resp = await gated.post_json(COMMAND_PATH, command("recheck"))
    assert resp["decision"] == "VERIFIED_NOOP"
    assert await challenge_statuses(db) == ["VERIFIED"]


async def test_recheck_of_a_pr_prgate_never_saw_gates_it(backend: SignedClient, db: asyncpg.Pool) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    resp = await backend.post_json(COMMAND_PATH, command("recheck"))
    assert resp["decision"] == "GATE"
    assert await challenge_statuses(db) == ["PENDING"]


async def test_exempt_after_timeout_is_remembered(gated: SignedClient, db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await conn.execute("UPDATE challenges SET status = 'TIMED_OUT'")
    resp = await gated.post_json(COMMAND_PATH, command("exempt", permission="write", sender="lead"))
    assert resp["decision"] == "EXEMPT"
    assert await challenge_statuses(db) == ["TIMED_OUT", "EXEMPTED"]
    # The author reopening it later is not gated again.
    again = await send_pr(gated, pull_request_payload("reopened"))
    assert again["decision"] == "EXEMPT"


async def test_duplicate_command_delivery_is_applied_once(gated: SignedClient, db: asyncpg.Pool) -> None:
    body = command("exempt", permission="admin", delivery_id="cmd-1")
    await gated.post_json(COMMAND_PATH, body)
    count = len(await actions(db))
    again = await gated.post_json(COMMAND_PATH, body)
    assert again["status"] == "DUPLICATE"
    assert len(await actions(db)) == count


async def test_command_from_a_bot_is_ignored(gated: SignedClient, db: asyncpg.Pool) -> None:
    body = command("exempt", permission="admin")
    body["sender"]["type"] = "Bot"
    resp = await gated.post_json(COMMAND_PATH, body)
    assert resp["status"] == "IGNORED"
    assert await challenge_statuses(db) == ["PENDING"]


@pytest.mark.parametrize("bad", [{"command": "Not Valid"}, {"sender_permission": "owner"}, {"comment_id": "x"}])
async def test_malformed_command_is_422(gated: SignedClient, bad: dict[str, Any]) -> None:
    resp = await gated.post(COMMAND_PATH, {**command("exempt"), **bad})
    assert resp.status == 422


# ---- through the receiver, enriched from the simulator --------------------------------------------------


@pytest.fixture
async def receiver(
    db: asyncpg.Pool, database_url: str, redis_url: str, simulator: Simulator, aiohttp_client: Any
) -> AsyncIterator[TestClient[Any, Any]]:
    backend = TestServer(create_app(backend_settings(database_url)))
    await backend.start_server()
    async with fresh_queue(redis_url) as queue:
        settings = bot_settings(str(backend.make_url("")), redis_url, queue.name).model_copy(update={
            "github_api_url": simulator.url, "github_app_id": str(APP_ID),
            "github_private_key": SecretStr(app_keys().private_pem),
        })
        client = await aiohttp_client(create_receiver_app(settings))
        await post_webhook(client, "installation", installation_payload("created"))
        await post_webhook(client, "pull_request", pull_request_payload("opened", head_sha=HEAD))
        yield client
    await backend.close()


def comment_payload(body: str, login: str, user_id: int, *, on_pr: bool = True) -> dict[str, Any]:
    payload = fixture("issue_comment.created.0.json")
    payload["installation"] = {"id": 1001}
    payload["repository"].update({"id": 5001, "full_name": "octo-org/widgets"})
    payload["issue"]["number"] = 7
    if on_pr:
        payload["issue"]["pull_request"] = {"url": "https://api.github.com/repos/octo-org/widgets/pulls/7"}
    else:
        payload["issue"].pop("pull_request", None)
    payload["comment"].update({"body": body, "id": 991})
    payload["comment"]["user"].update({"login": login, "id": user_id, "type": "User"})
    return payload


async def test_exempt_through_the_receiver_checks_permission_on_github(
    receiver: TestClient[Any, Any], simulator: Simulator, db: asyncpg.Pool
) -> None:
    simulator.state.set_permission("octo-org/widgets", "lead", "maintain")
    simulator.state.set_permission("octo-org/widgets", "visitor", "read")
    refused = await post_webhook(receiver, "issue_comment", comment_payload("/prgate exempt", "visitor", 31))
    assert refused.status == 200, await refused.text()
    assert await challenge_statuses(db) == ["PENDING"]
    accepted = await post_webhook(receiver, "issue_comment", comment_payload("/prgate exempt\nthanks!", "lead", 32))
    body = await accepted.json()
    assert (body["decision"], body["reason"]) == ("EXEMPT", "exempted by lead")
    assert await challenge_statuses(db) == ["EXEMPTED"]


@pytest.mark.parametrize(
    ("text", "on_pr"),
    [("looks good to me", True), ("please /prgate exempt", True), ("/prgate exempt", False)],
)
async def test_other_comments_are_not_forwarded(
    receiver: TestClient[Any, Any], db: asyncpg.Pool, text: str, on_pr: bool
) -> None:
    resp = await post_webhook(receiver, "issue_comment", comment_payload(text, "lead", 32, on_pr=on_pr))
    assert resp.status == 202
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE event_name = 'issue_comment'") == 0


async def test_github_unreachable_during_enrichment_is_503(
    receiver: TestClient[Any, Any], simulator: Simulator
) -> None:
    from prgate.simulator import FaultRule

    simulator.state.faults.add_rule(FaultRule(path_regex="/permission$", status=502, count=5))
    resp = await post_webhook(receiver, "issue_comment", comment_payload("/prgate exempt", "lead", 32))
    assert resp.status == 503
    assert json.loads(await resp.text())["error"] == "unavailable"
