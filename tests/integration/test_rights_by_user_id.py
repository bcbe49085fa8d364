"""docs/security.md, "Rights keyed by login, not user id": whitelists, operators and admin checks follow the GitHub
user id, not the login.

A login can be renamed, and the old one registered by someone else at once (the simulator's
``/_sim/users`` routes do what GitHub does).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg
import pytest

from backend_api.app import create_app
from backend_api.auth.session import SESSION_COOKIE, SessionCodec
from tests.integration import test_owner_api
from tests.integration.test_owner_api import FULL_NAME, Owner, owner_settings, repo_path
from tests.support.ingest import send_pr
from tests.support.payloads import pull_request_payload
from tests.support.rows import snapshot

owner = test_owner_api.owner  # the fixture: a backend with the simulator as GitHub, repository 5001 installed


async def _rename(owner: Owner, login: str, new_login: str) -> None:
    resp = await owner.client.session.patch(f"{owner.sim.url}/_sim/users/{login}", json={"login": new_login})
    assert resp.status == 200, await resp.text()


async def _register(owner: Owner, login: str, user_id: int) -> None:
    resp = await owner.client.session.post(f"{owner.sim.url}/_sim/users", json={"login": login, "id": user_id})
    assert resp.status == 201, await resp.text()


async def _decision(owner: Owner, number: int, login: str, user_id: int) -> str:
    answer = await send_pr(owner.backend, pull_request_payload(
        "opened", number=number, author_login=login, author_id=user_id, head_sha="ab" * 20,
    ))
    return str(answer["decision"])


async def test_a_whitelisted_login_taken_over_after_a_rename_is_gated(owner: Owner) -> None:
    admin = await owner.user("carol", 3003, "admin")
    await _register(owner, "alice", 4001)
    written = await owner.call("PUT", repo_path("settings"), admin,
                               json={"whitelist_logins": ["alice"], "whitelist_user_ids": [1, 2, 3]})
    assert (written["whitelist_logins"], written["whitelist_user_ids"]) == (["alice"], [4001])  # ids: GitHub's

    await _rename(owner, "alice", "alice2")
    await _register(owner, "alice", 6666)  # mallory
    assert await _decision(owner, 21, "alice", 6666) == "GATE"
    assert await _decision(owner, 22, "alice2", 4001) == "EXEMPT"

    # Saving the settings again keeps the id the login had when it was added: the admin meant alice.
    again = await owner.call("PUT", repo_path("settings"), admin,
                             json={"whitelist_logins": ["alice", "friend"], "deadline_seconds": 600},
                             expect=422)
    assert "friend" in again["message"]
    owner.sim.state.ensure_user("friend", 4002)
    again = await owner.call("PUT", repo_path("settings"), admin, json={"whitelist_logins": ["alice", "friend"]})
    assert again["whitelist_user_ids"] == [4001, 4002]


async def test_an_unknown_login_is_422_naming_it_and_nothing_is_written(owner: Owner, db: asyncpg.Pool) -> None:
    admin = await owner.user("carol", 3003, "admin")
    before = await snapshot(db)
    body = await owner.call("PUT", repo_path("settings"), admin,
                            json={"whitelist_logins": ["no-such-user"], "deadline_seconds": 600}, expect=422)
    assert body["error"] == "validation_error"
    assert "no-such-user" in body["message"]
    assert await snapshot(db) == before


async def test_a_session_whose_login_now_belongs_to_an_admin_is_not_an_admin(owner: Owner) -> None:
    """Mallory signs in as `boss`, renames herself; the real boss registers `boss` and is admin."""
    await _register(owner, "boss", 6666)
    mallory = await owner.user("boss", 6666)
    await _rename(owner, "boss", "boss-old")
    await _register(owner, "boss", 7777)
    owner.sim.state.set_permission(FULL_NAME, "boss", "admin")
    body = await owner.call("GET", repo_path("settings"), mallory, write=False, expect=403)
    assert body["error"] == "forbidden"
    boss = await owner.user("boss", 7777)
    await owner.call("GET", repo_path("settings"), boss, write=False)


async def _dashboard(client: Any, codec: SessionCodec, user_id: int, login: str) -> int:
    _, cookie = codec.issue(user_id, login, time.time())
    resp = await client.get("/dashboard", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
    return int(resp.status)


async def test_an_operator_listed_as_login_and_id_is_matched_by_id(
    db: asyncpg.Pool, database_url: str, aiohttp_client: Any, owner: Owner
) -> None:
    settings = owner_settings(database_url, owner.sim.url, PRGATE_OPERATORS="alice:4001")
    client = await aiohttp_client(create_app(settings))
    codec = SessionCodec.from_settings(settings)
    assert await _dashboard(client, codec, 6666, "alice") == 403  # mallory, who registered the freed login
    assert await _dashboard(client, codec, 4001, "alice2") == 200  # alice after her rename


async def test_bare_operator_logins_warn_at_start_up_and_a_bad_id_is_refused(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="backend_api.app"):
        create_app(owner_settings(database_url, "http://127.0.0.1:1", PRGATE_OPERATORS="alice:4001, bob"))
    assert any("bob" in r.getMessage() and "login:id" in r.getMessage() for r in caplog.records)
    assert not any("alice" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="login:id"):
        owner_settings(database_url, "http://127.0.0.1:1", PRGATE_OPERATORS="alice:x")
