"""docs/security.md, "A captured `closed` body replayed under a fresh delivery id", through real processes: a captured
body replayed under a fresh
X-GitHub-Delivery is a duplicate, and state-destroying events act only as GitHub confirms them."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import asyncpg

from prgate.simulator.github.webhooks import webhook_headers
from provider_clients.github.app import app_jwt
from tests.e2e.conftest import FullStack, sim
from tests.e2e.test_gate_e2e import install, open_pr, our_comments
from tests.support.github_sim import APP_ID, app_keys
from tests.support.payloads import installation_payload
from tests.support.processes import eventually


async def _challenges(db: asyncpg.Pool) -> list[str]:
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT status FROM challenges WHERE repo_id = 9500 ORDER BY challenge_id")
    return [r["status"] for r in rows]


async def _post_webhook(
    session: aiohttp.ClientSession, stack: FullStack, event: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    """What someone holding a captured, validly signed body can do: send it under a fresh delivery id."""
    headers = webhook_headers(stack.env["GITHUB_WEBHOOK_SECRET"], event, body, str(uuid.uuid4()))
    async with session.post(f"{stack.bot_url}/webhooks/github", data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def _captured_body(session: aiohttp.ClientSession, stack: FullStack, delivery_id: int) -> bytes:
    """The exact bytes GitHub (the simulator) sent: its stored payload, serialized as it sends it."""
    token = app_jwt(str(APP_ID), app_keys().private_pem)
    async with session.get(f"{stack.simulator_url}/app/hook/deliveries/{delivery_id}",
                           headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        payload = (await resp.json())["request"]["payload"]
    return json.dumps(payload, separators=(",", ":")).encode()


async def test_a_replayed_closed_body_is_a_duplicate_and_a_genuine_close_still_cancels(
    full_stack: FullStack, db: asyncpg.Pool
) -> None:
    stack = full_stack
    async with aiohttp.ClientSession() as session:
        await install(session, stack, 95, "replay", 9500, "replay/app")
        await open_pr(session, stack, "replay/app", 1, "newcomer", 701)
        await eventually(lambda: _count(our_comments(session, stack, "replay/app", 1), 1), timeout=30)

        # A genuine close: GitHub closes the PR and sends the webhook; the challenge is cancelled.
        closed = await sim(session, stack, "/_sim/pulls", {
            "repo": "replay/app", "number": 1, "state": "closed", "webhook": "closed",
        })
        assert closed["deliveries"][0]["status_code"] == 200

        async def cancelled() -> bool:
            return await _challenges(db) == ["CANCELLED"]

        await eventually(cancelled, timeout=30)

        # Reopened: gated again.
        await sim(session, stack, "/_sim/pulls", {
            "repo": "replay/app", "number": 1, "state": "open", "webhook": "reopened",
        })

        async def pending_again() -> bool:
            return await _challenges(db) == ["CANCELLED", "PENDING"]

        await eventually(pending_again, timeout=30)

        # The captured `closed` body, same bytes and valid signature, under a fresh delivery id.
        body = await _captured_body(session, stack, closed["deliveries"][0]["id"])
        status, answer = await _post_webhook(session, stack, "pull_request", body)
        assert (status, answer["status"]) == (200, "DUPLICATE")
        assert await _challenges(db) == ["CANCELLED", "PENDING"]


async def test_a_closed_event_for_a_pull_request_github_says_is_open_cancels_nothing(
    full_stack: FullStack, db: asyncpg.Pool
) -> None:
    stack = full_stack
    async with aiohttp.ClientSession() as session:
        await install(session, stack, 95, "replay", 9500, "replay/app")
        await open_pr(session, stack, "replay/app", 1, "newcomer", 701)
        await eventually(lambda: _count(our_comments(session, stack, "replay/app", 1), 1), timeout=30)
        # A `closed` body never seen before (late, or from another capture), while the PR is open.
        sent = await sim(session, stack, "/_sim/pulls", {"repo": "replay/app", "number": 1, "webhook": "closed"})
        assert sent["deliveries"][0]["status_code"] == 200
        async with db.acquire() as conn:
            reason = await conn.fetchval(
                "SELECT reason FROM webhook_deliveries WHERE delivery_id = $1", sent["deliveries"][0]["guid"]
            )
        assert reason == "closed, but GitHub says the pull request is open"
        assert await _challenges(db) == ["PENDING"]


async def test_a_forged_installation_deleted_for_a_live_installation_deletes_nothing(
    full_stack: FullStack, db: asyncpg.Pool
) -> None:
    stack = full_stack
    async with aiohttp.ClientSession() as session:
        await install(session, stack, 95, "replay", 9500, "replay/app")
        payload = installation_payload("deleted", installation_id=95, account_login="replay", account_id=950)
        status, answer = await _post_webhook(session, stack, "installation", json.dumps(payload).encode())
        assert (status, answer["status"]) == (202, "ignored")
        async with db.acquire() as conn:
            assert await conn.fetchval(
                "SELECT status FROM github_installations WHERE installation_id = 95"
            ) == "ACTIVE"

        # Uninstalled on GitHub for real: GitHub answers 404 and the deletion is honoured.
        async with session.delete(f"{stack.simulator_url}/_sim/installations/95", json={"webhook": True}) as resp:
            assert resp.status == 200

        async def deleted() -> bool:
            async with db.acquire() as conn:
                return await conn.fetchval(
                    "SELECT status FROM github_installations WHERE installation_id = 95"
                ) == "DELETED"

        await eventually(deleted, timeout=30)


async def _count(bodies: Any, n: int) -> bool:
    return len(await bodies) == n


async def test_a_closed_that_github_cannot_confirm_is_refused_with_503_and_acted_on_when_redelivered(
    full_stack: FullStack, db: asyncpg.Pool
) -> None:
    """GitHub unreachable while confirming: the delivery fails at GitHub (503), nothing is cancelled
    and nothing is lost; GitHub's redelivery of the same delivery then cancels."""
    stack = full_stack
    async with aiohttp.ClientSession() as session:
        await install(session, stack, 95, "replay", 9500, "replay/app")
        await open_pr(session, stack, "replay/app", 1, "newcomer", 701)
        await eventually(lambda: _count(our_comments(session, stack, "replay/app", 1), 1), timeout=30)
        rule = {"method": "GET", "path_regex": r"/repositories/9500/pulls/1$", "status": 502, "count": 50}
        async with session.post(f"{stack.simulator_url}/_sim/faults/rules", json=rule) as resp:
            assert resp.status == 201
        closed = await sim(session, stack, "/_sim/pulls", {
            "repo": "replay/app", "number": 1, "state": "closed", "webhook": "closed",
        })
        assert closed["deliveries"][0]["status_code"] == 503
        assert await _challenges(db) == ["PENDING"]

        async with session.delete(f"{stack.simulator_url}/_sim/faults") as resp:
            assert resp.status == 200
        token = app_jwt(str(APP_ID), app_keys().private_pem)
        async with session.post(f"{stack.simulator_url}/app/hook/deliveries/{closed['deliveries'][0]['id']}/attempts",
                                headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 202, await resp.text()

        async def cancelled() -> bool:
            return await _challenges(db) == ["CANCELLED"]

        await eventually(cancelled, timeout=30)
