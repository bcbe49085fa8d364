"""docs/security.md, "Reopen after timeout, session revocation, wrong-answer rate limit": sessions can be revoked — by
signing out, or by an operator (admin key).

Sessions are signed cookies; the deny list is in PostgreSQL, so a revocation holds on every replica.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from backend_api.app import create_app
from tests.conftest import ADMIN_SECRET, INTERNAL_SECRET
from tests.integration.test_owner_api import _sign_in, owner_settings
from tests.support.github_sim import Simulator
from tests.support.ingest import send_installation
from tests.support.payloads import installation_payload
from tests.support.signed import SignedClient

REVOKE = "/internal/v2/sessions/revoke"


async def _backend(database_url: str, simulator: Simulator, aiohttp_client: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(owner_settings(database_url, simulator.url)))
    return client


def _cookie(client: TestClient[Any, Any]) -> dict[str, str]:
    [morsel] = [m for m in client.session.cookie_jar if m.key == "prgate_session"]
    return {"Cookie": f"prgate_session={morsel.value}"}


async def _status(client: TestClient[Any, Any], headers: dict[str, str]) -> int:
    resp = await client.get("/api/v1/session", headers=headers)
    return int(resp.status)


async def test_a_copied_cookie_is_dead_after_sign_out(
    db: asyncpg.Pool, database_url: str, simulator: Simulator, aiohttp_client: Any
) -> None:
    browser = await _backend(database_url, simulator, aiohttp_client)
    other_replica = await _backend(database_url, simulator, aiohttp_client)
    await _sign_in(browser, "erin")
    stolen = _cookie(browser)
    assert await _status(other_replica, stolen) == 200
    page = await (await browser.get("/dashboard")).text()  # any page with the signed-in bar has the form
    csrf = re.search(r'name=csrf value="([^"]+)"', page) or re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None, page
    out = await browser.post("/auth/logout", data={"csrf": csrf.group(1)})
    assert out.status == 200
    assert await _status(browser, stolen) == 401
    # Another replica: it asked once before (cached for a few seconds), a third never did.
    third = await _backend(database_url, simulator, aiohttp_client)
    assert await _status(third, stolen) == 401
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM revoked_sessions") == 1


async def test_an_operator_revokes_one_session_or_every_session_of_a_user(
    db: asyncpg.Pool, database_url: str, simulator: Simulator, aiohttp_client: Any
) -> None:
    client = await _backend(database_url, simulator, aiohttp_client)
    admin = SignedClient(client, ADMIN_SECRET)
    first = await _backend(database_url, simulator, aiohttp_client)
    second = await _backend(database_url, simulator, aiohttp_client)
    await _sign_in(first, "erin")
    await _sign_in(second, "erin")
    one, two = _cookie(first), _cookie(second)
    sid = (await (await first.get("/api/v1/session")).json())
    assert sid["login"] == "erin"
    # Worker keys cannot revoke; bad bodies are 422 and change nothing.
    refused = await SignedClient(client, INTERNAL_SECRET).post(REVOKE, {"github_user_id": sid["user_id"]})
    assert refused.status == 403
    for bad in ({}, {"session_id": "x"}, {"session_id": "a" * 32, "github_user_id": 1}, {"github_user_id": 0}):
        assert (await admin.post(REVOKE, bad)).status == 422, bad
    assert await _status(client, one) == 200

    answer = await admin.post_json(REVOKE, {"github_user_id": sid["user_id"]})
    assert answer["revoked_before"] is not None
    assert await _status(client, one) == 401
    assert await _status(client, two) == 401
    # A new sign-in after the revocation works; its session can be revoked by id.
    fresh = await _backend(database_url, simulator, aiohttp_client)
    await send_installation(SignedClient(fresh, INTERNAL_SECRET), "installation", installation_payload("created"))
    await _sign_in(fresh, "erin")
    again = _cookie(fresh)
    assert await _status(client, again) == 200
    from backend_api.keys import SESSIONS

    session = client.app[SESSIONS].read(again["Cookie"].split("=", 1)[1], 0)
    assert session is not None
    await admin.post_json(REVOKE, {"session_id": session.sid})
    assert await _status(client, again) == 401
