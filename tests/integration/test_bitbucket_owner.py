"""Owner API for Bitbucket repositories: a Bitbucket session, and Bitbucket saying (asked with the
workspace's token, through the simulator server) that the account is an admin of the repository.

Real parts: the backend app, PostgreSQL, the simulator server (GitHub at its root, Bitbucket under
/bitbucket: tokens, repositories, permissions, fault rules). Sessions are minted with the backend's
own codec for accounts stored as "Sign in with Bitbucket" stores them (the sign-in itself is driven
in tests/e2e/test_bitbucket_settings_page.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet

from backend_api.app import create_app
from backend_api.auth.session import SESSION_COOKIE, SessionCodec
from backend_api.store import bitbucket as bitbucket_store
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.core.faults import FaultRule
from shared_contracts.actions import Provider
from shared_contracts.bitbucket import BitbucketAccount
from tests.conftest import INTERNAL_SECRET
from tests.integration.test_owner_api import REPO, User, gate_pr, owner_settings
from tests.support import bitbucket_gate as bb
from tests.support.bitbucket import connect_stored
from tests.support.bitbucket_gate import AUTHOR, REPO_UUID, WORKSPACE_UUID, bb_settings, bitbucket
from tests.support.github_sim import Simulator
from tests.support.ingest import send_installation
from tests.support.payloads import installation_payload
from tests.support.rows import snapshot
from tests.support.signed import SignedClient

KEY = Fernet.generate_key().decode()
OTHER_UUID = "5a5a5a5a-1b1b-4c2c-8d3d-4e4e4e4e4e4e"

ALICE = BitbucketAccount(uuid="aaaaaaaa-0000-4000-8000-000000000001", account_id="557058:alice", nickname="alice")
WALT = BitbucketAccount(uuid="aaaaaaaa-0000-4000-8000-000000000002", account_id="557058:walt", nickname="walt")
GINA = BitbucketAccount(uuid="aaaaaaaa-0000-4000-8000-000000000003", account_id="557058:gina", nickname="gina")
STRANGER = BitbucketAccount(uuid="aaaaaaaa-0000-4000-8000-000000000004", account_id="557058:stranger",
                            nickname="stranger")


@dataclass
class World:
    client: TestClient[Any, Any]
    backend: SignedClient
    codec: SessionCodec
    sim: BitbucketState
    db: asyncpg.Pool
    widgets: int  # acme/widgets' backend id
    gizmos: int  # globex/gizmos' (another workspace)

    async def user(self, who: BitbucketAccount) -> User:
        """A Bitbucket session of ``who``, whose account row is the one sign-in writes."""
        async with self.db.acquire() as conn:
            ids = await bitbucket_store.user_ids(conn, [bitbucket_store.AccountInfo(
                account_uuid=who.uuid, account_id=who.account_id, nickname=who.nickname)])
        _, cookie = self.codec.issue(ids[who.uuid], who.nickname, time.time(), (), Provider.BITBUCKET)
        headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
        resp = await self.client.get("/api/v1/session", headers=headers)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert (body["login"], body["provider"]) == (who.nickname, "bitbucket")
        return User(who.nickname, headers, body["csrf_token"])

    async def github_user(self, login: str, user_id: int, permission: str | None, sim: Simulator) -> User:
        if permission is not None:
            sim.state.set_permission("octo-org/widgets", login, permission, user_id)
        _, cookie = self.codec.issue(user_id, login, time.time(), (1001,))
        headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
        body = await (await self.client.get("/api/v1/session", headers=headers)).json()
        return User(login, headers, body["csrf_token"])

    async def call(self, method: str, path: str, user: User, *, json: Any = None, expect: int = 200) -> Any:
        resp = await self.client.request(method, path, headers=user.writing(), json=json)
        assert resp.content_type == "application/json"
        body = await resp.json()
        assert resp.status == expect, (resp.status, body)
        return body

    def permission_asks(self) -> list[tuple[str, str | None]]:
        """(path, credential) of every permission lookup Bitbucket served."""
        return [(r.path, r.credential) for r in self.sim.request_log if "/permissions/repositories/" in r.path]


@pytest.fixture
async def world(db: asyncpg.Pool, database_url: str, aiohttp_client: Any, simulator: Simulator) -> World:
    sim = bitbucket(simulator)
    for slug, uuid, repo, repo_uuid in (("acme", WORKSPACE_UUID, "widgets", REPO_UUID),
                                        ("globex", OTHER_UUID, "gizmos", None)):
        sim.add_workspace(slug, uuid=uuid)
        sim.add_repository(slug, repo, uuid=repo_uuid)
    for account in (ALICE, WALT, GINA, STRANGER, AUTHOR):
        sim.add_user(account.account_id or "", uuid=account.uuid, nickname=account.nickname)
    sim.set_permission("acme", "widgets", ALICE.account_id or "", "admin")
    sim.set_permission("acme", "widgets", WALT.account_id or "", "write")
    sim.set_permission("globex", "gizmos", GINA.account_id or "", "admin")
    ids: dict[str, int] = {}
    for slug, uuid, repo in (("acme", WORKSPACE_UUID, "widgets"), ("globex", OTHER_UUID, "gizmos")):
        tenant = await connect_stored(db, KEY, workspace_uuid=uuid, slug=slug, token=sim.create_token(slug).value)
        stored = sim.repository(slug, repo)
        async with db.acquire() as conn:
            ids[repo], _ = await bitbucket_store.recorded_repository(conn, tenant, bitbucket_store.DiscoveredRepository(
                repo_uuid=stored.uuid.strip("{}"), full_name=f"{slug}/{repo}", main_branch="main", private=True))
    settings = owner_settings(database_url, simulator.url, PRGATE_ENCRYPTION_KEY=KEY, **bb_settings(simulator))
    client = await aiohttp_client(create_app(settings))
    backend = SignedClient(client, INTERNAL_SECRET)
    await send_installation(backend, "installation", installation_payload("created"))  # GitHub's octo-org/widgets
    await gate_pr(backend, 7)
    sim.request_log.clear()
    return World(client, backend, SessionCodec.from_settings(settings), sim, db, ids["widgets"], ids["gizmos"])


def by_id(repo_id: int, suffix: str) -> str:
    return f"/api/v1/repos/{repo_id}/{suffix}"


def by_name(full_name: str, suffix: str) -> str:
    return f"/api/v1/repos/{full_name}/{suffix}?provider=bitbucket"


# ---- an admin ---------------------------------------------------------------------------------------


async def test_a_bitbucket_admin_edits_by_id_and_by_name(world: World) -> None:
    alice = await world.user(ALICE)
    for known in (WALT, GINA):  # signed in once: their accounts are known, so whitelistable
        await world.user(known)
    body = await world.call("PUT", by_id(world.widgets, "settings"), alice,
                            json={"deadline_seconds": 7200, "whitelist_logins": ["WALT", "557058:gina"]})
    async with world.db.acquire() as conn:
        known = await bitbucket_store.accounts_named(conn, ["walt", "557058:gina"])
    assert body["whitelist_logins"] == ["WALT", "557058:gina"]
    assert body["whitelist_user_ids"] == [known["walt"][0], known["557058:gina"][0]]  # nickname, account_id
    assert (body["repo_id"], body["repo_full_name"], body["deadline_seconds"]) == (world.widgets, "acme/widgets", 7200)

    named = await world.call("GET", by_name("acme/widgets", "settings"), alice)
    assert (named["repo_id"], named["deadline_seconds"]) == (world.widgets, 7200)
    patched = await world.call("PATCH", by_name("ACME/Widgets", "settings"), alice, json={"warn_only": True})
    assert (patched["warn_only"], patched["deadline_seconds"]) == (True, 7200)
    install = await world.call("GET", by_id(world.widgets, "installation"), alice)
    assert (install["installed"], install["account_login"], install["repo_full_name"]) == (True, "acme",
                                                                                           "acme/widgets")
    # Bitbucket was asked with acme's own token, once per session within the cache's time.
    assert {cred for _, cred in world.permission_asks()} == {"workspace:acme"}
    assert all(path.endswith("/workspaces/acme/permissions/repositories/widgets") for path, _ in
               world.permission_asks())


async def test_challenges_actions_and_exempt_of_a_bitbucket_pull_request(world: World) -> None:
    await bb.gate_bitbucket_pr(world.db, "http://prgate.test", AUTHOR, 4)
    alice = await world.user(ALICE)
    [challenge] = (await world.call("GET", by_id(world.widgets, "challenges"), alice))["items"]
    assert (challenge["pr_number"], challenge["status"], challenge["author_login"]) == (4, "PENDING", "newcomer")
    actions = (await world.call("GET", by_name("acme/widgets", "actions"), alice))["items"]
    assert {a["action_type"] for a in actions} == {"UPSERT_PR_COMMENT", "SET_COMMIT_STATUS"}

    done = await world.call("POST", by_id(world.widgets, "pulls/4/exempt"), alice)
    assert (done["exempted_by"], done["already_exempted"]) == ("alice", False)
    async with world.db.acquire() as conn:
        status = await conn.fetchval("SELECT status FROM challenges WHERE challenge_id = $1", challenge["challenge_id"])
        providers = await conn.fetch("SELECT provider, repo_full_name FROM bot_actions WHERE action_id = ANY($1)",
                                     done["enqueued_action_ids"])
    assert status == "EXEMPTED"
    assert {(r["provider"], r["repo_full_name"]) for r in providers} == {("bitbucket", "acme/widgets")}


async def test_an_unknown_bitbucket_nickname_refuses_the_write(world: World) -> None:
    alice = await world.user(ALICE)
    before = await snapshot(world.db)
    body = await world.call("PUT", by_id(world.widgets, "settings"), alice,
                            json={"whitelist_logins": ["nobody-here"]}, expect=422)
    assert body["error"] == "validation_error"
    assert "nobody-here" in body["message"]
    assert await snapshot(world.db) == before


# ---- who is refused ---------------------------------------------------------------------------------


async def test_a_write_only_user_is_403_and_writes_nothing(world: World) -> None:
    walt = await world.user(WALT)
    before = await snapshot(world.db)
    for method, path in (("PUT", by_id(world.widgets, "settings")), ("GET", by_name("acme/widgets", "settings")),
                         ("POST", by_id(world.widgets, "pulls/4/exempt"))):
        body = await world.call(method, path, walt, json={}, expect=403)
        assert (body["error"], "Bitbucket says write" in body["message"]) == ("forbidden", True)
    assert await snapshot(world.db) == before


async def test_no_permission_at_all_by_name_is_as_unknown(world: World) -> None:
    stranger = await world.user(STRANGER)
    body = await world.call("GET", by_name("acme/widgets", "settings"), stranger, expect=404)
    assert body["error"] == "not_found"
    body = await world.call("GET", by_id(world.widgets, "settings"), stranger, expect=403)
    assert "Bitbucket says none" in body["message"]


async def test_a_github_session_is_never_admin_of_a_bitbucket_repository(world: World, simulator: Simulator) -> None:
    # A GitHub admin of octo-org/widgets whose login is a Bitbucket admin's nickname: still not one.
    github_alice = await world.github_user("alice", 77, "admin", simulator)
    before = await snapshot(world.db)
    for path in (by_id(world.widgets, "settings"), by_name("acme/widgets", "settings")):
        body = await world.call("PUT", path, github_alice, json={"warn_only": True}, expect=403)
        assert body["error"] == "wrong_provider"
        assert "signed in with GitHub" in body["message"]
    assert await snapshot(world.db) == before
    assert world.permission_asks() == []  # never even asked
    # ... and the same session is an admin of its GitHub repository.
    assert (await world.call("GET", by_id(REPO, "settings"), github_alice))["repo_id"] == REPO


async def test_a_bitbucket_session_is_never_admin_of_a_github_repository(world: World, simulator: Simulator) -> None:
    simulator.state.set_permission("octo-org/widgets", "alice", "admin", 77)
    alice = await world.user(ALICE)
    for path in (by_id(REPO, "settings"), "/api/v1/repos/octo-org/widgets/settings"):
        body = await world.call("PUT", path, alice, json={"warn_only": True}, expect=403)
        assert body["error"] == "wrong_provider"
        assert "signed in with Bitbucket" in body["message"]
    # By name, GitHub is the default provider; ?provider=bitbucket names no such Bitbucket repository.
    body = await world.call("GET", by_name("octo-org/widgets", "settings"), alice, expect=404)
    assert body["error"] == "not_found"


async def test_an_admin_of_one_workspace_cannot_touch_another(world: World) -> None:
    alice, gina = await world.user(ALICE), await world.user(GINA)
    before = await snapshot(world.db)
    body = await world.call("PUT", by_id(world.gizmos, "settings"), alice, json={"warn_only": True}, expect=403)
    assert "Bitbucket says none" in body["message"]
    await world.call("PUT", by_id(world.widgets, "settings"), gina, json={"warn_only": True}, expect=403)
    await world.call("GET", by_name("acme/widgets", "settings"), gina, expect=404)
    assert await snapshot(world.db) == before
    # Each repository's permission was asked with its own workspace's token only.
    assert sorted(set(world.permission_asks())) == [
        ("/bitbucket/2.0/workspaces/acme/permissions/repositories/widgets", "workspace:acme"),
        ("/bitbucket/2.0/workspaces/globex/permissions/repositories/gizmos", "workspace:globex"),
    ]
    # Her own repository she may edit.
    assert (await world.call("PATCH", by_id(world.gizmos, "settings"), gina, json={"warn_only": True}))["warn_only"]


@pytest.mark.parametrize("status", [500, 503])
async def test_bitbucket_failing_the_permission_check_is_502(world: World, status: int) -> None:
    alice = await world.user(ALICE)
    world.sim.faults.add_rule(FaultRule(path_regex="/permissions/repositories/", status=status, count=1))
    before = await snapshot(world.db)
    body = await world.call("PUT", by_id(world.widgets, "settings"), alice, json={"warn_only": True}, expect=502)
    assert body["error"] == "bitbucket_unavailable"
    assert await snapshot(world.db) == before
    # Not remembered as "no permission": the next call asks again and passes.
    assert (await world.call("PATCH", by_id(world.widgets, "settings"), alice, json={"warn_only": True}))["warn_only"]


async def test_a_disconnected_workspace_is_404(world: World) -> None:
    alice = await world.user(ALICE)
    async with world.db.acquire() as conn:
        tenant = (await bitbucket_store.get_by_slug(conn, "acme"))
        assert tenant is not None
        await bitbucket_store.disconnect(conn, tenant.tenant_id)
    body = await world.call("GET", by_id(world.widgets, "settings"), alice, expect=404)
    assert "not connected" in body["message"]


async def test_without_the_workspace_token_admin_rights_are_not_guessed(world: World) -> None:
    alice = await world.user(ALICE)
    async with world.db.acquire() as conn:
        await conn.execute("UPDATE bitbucket_workspaces SET token_ciphertext = NULL WHERE slug = 'acme'")
    body = await world.call("GET", by_id(world.widgets, "settings"), alice, expect=503)
    assert body["error"] == "bitbucket_not_configured"
    assert world.permission_asks() == []
