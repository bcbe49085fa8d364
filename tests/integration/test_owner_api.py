"""Owner API: GitHub session + admin on the repository (asked of the simulator with the installation token)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from backend_api.app import create_app
from backend_api.auth.session import SESSION_COOKIE, SessionCodec
from backend_api.challenges import messages
from backend_api.challenges.verify import Refusal, RepoRules, check_answer
from backend_api.settings import BackendSettings
from shared_contracts.owner import RepoSettings
from shared_contracts.repo_config import FILE_KEYS
from tests.conftest import INTERNAL_SECRET, backend_settings
from tests.support.github_sim import APP_ID, Simulator, app_keys
from tests.support.ingest import send_installation, send_pr
from tests.support.payloads import installation_payload, installation_repositories_payload, pull_request_payload
from tests.support.rows import snapshot
from tests.support.signed import SignedClient
from tests.support.webhooks import closed_port

REPO = 5001
FULL_NAME = "octo-org/widgets"
HEAD = "0123456789abcdef0123456789abcdef01234567"
SIM_OAUTH_CLIENT = ("prgate-sim-oauth-client", "prgate-sim-oauth-secret")


def owner_settings(database_url: str, api_url: str, **overrides: Any) -> BackendSettings:
    return backend_settings(
        database_url, GITHUB_API_URL=api_url, GITHUB_WEB_URL=api_url, GITHUB_APP_ID=str(APP_ID),
        GITHUB_PRIVATE_KEY=app_keys().private_pem, GITHUB_CLIENT_ID=SIM_OAUTH_CLIENT[0],
        GITHUB_CLIENT_SECRET=SIM_OAUTH_CLIENT[1], **overrides,
    )


@dataclass
class User:
    login: str
    headers: dict[str, str]  # the session cookie
    csrf: str

    def writing(self) -> dict[str, str]:
        return {**self.headers, "X-CSRF-Token": self.csrf}


@dataclass
class Owner:
    client: TestClient[Any, Any]
    backend: SignedClient
    codec: SessionCodec
    sim: Simulator

    async def user(self, login: str, user_id: int, permission: str | None = None,
                   installations: tuple[int, ...] = (1001,)) -> User:
        """A signed-in user (cookie minted with the backend's own codec), with `permission` on the repo,
        who could reach `installations` at sign-in."""
        if permission is not None:
            self.sim.state.set_permission(FULL_NAME, login, permission, user_id)
        _, cookie = self.codec.issue(user_id, login, time.time(), installations)
        headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
        resp = await self.client.get("/api/v1/session", headers=headers)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["login"] == login
        return User(login, headers, body["csrf_token"])

    async def call(self, method: str, path: str, user: User | None, *, json: Any = None,
                   write: bool = True, expect: int = 200) -> Any:
        headers = {} if user is None else (user.writing() if write else user.headers)
        resp = await self.client.request(method, path, headers=headers, json=json)
        assert resp.content_type == "application/json"
        body = await resp.json()
        assert resp.status == expect, (resp.status, body)
        return body


async def gate_pr(backend: SignedClient, number: int, **kwargs: Any) -> int:
    answer = await send_pr(backend, pull_request_payload("opened", number=number, head_sha=HEAD, **kwargs))
    assert answer["decision"] == "GATE", answer
    return int(answer["challenge_id"])


@pytest.fixture
async def owner(db: asyncpg.Pool, database_url: str, aiohttp_client: Any, simulator: Simulator) -> Owner:
    settings = owner_settings(database_url, simulator.url)
    client = await aiohttp_client(create_app(settings))
    backend = SignedClient(client, INTERNAL_SECRET)
    await send_installation(backend, "installation", installation_payload("created"))
    await gate_pr(backend, 7)
    return Owner(client, backend, SessionCodec.from_settings(settings), simulator)


def repo_path(suffix: str, repo_id: int = REPO) -> str:
    return f"/api/v1/repos/{repo_id}/{suffix}"


ROUTES = [
    ("GET", repo_path("settings")),
    ("PUT", repo_path("settings")),
    ("GET", repo_path("challenges")),
    ("GET", repo_path("actions")),
    ("POST", repo_path("pulls/7/exempt")),
]


async def permission_checks(sim: Simulator) -> list[str]:
    return [r.path for r in sim.state.request_log if r.path.endswith("/permission")]


# ---- access ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [*ROUTES, ("GET", "/api/v1/session")])
async def test_signed_out_is_401(owner: Owner, db: asyncpg.Pool, method: str, path: str) -> None:
    before = await snapshot(db)
    body = await owner.call(method, path, None, json={}, expect=401)
    assert body["error"] == "unauthorized"
    assert await snapshot(db) == before
    assert await permission_checks(owner.sim) == []


async def test_a_forged_or_expired_cookie_is_signed_out(owner: Owner) -> None:
    other = SessionCodec(b"another prgate's secret", secure=False)
    _, forged = other.issue(1, "octo-org", time.time())
    resp = await owner.client.get(repo_path("settings"), headers={"Cookie": f"{SESSION_COOKIE}={forged}"})
    assert resp.status == 401
    _, expired = owner.codec.issue(1, "octo-org", time.time() - owner.codec.ttl_seconds - 1)
    resp = await owner.client.get(repo_path("settings"), headers={"Cookie": f"{SESSION_COOKIE}={expired}"})
    assert resp.status == 401


@pytest.mark.parametrize("permission", ["write", "maintain", "triage", "read", "none"])
@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_non_admins_are_403(owner: Owner, db: asyncpg.Pool, permission: str, method: str, path: str) -> None:
    user = await owner.user("dev", 3001, permission)
    before = await snapshot(db)
    body = await owner.call(method, path, user, json=RepoSettings().model_dump(), expect=403)
    assert body["error"] == "forbidden"
    assert "not an admin" in body["message"]
    assert await snapshot(db) == before


async def test_a_user_github_does_not_know_is_403(owner: Owner) -> None:
    user = await owner.user("ghost-user", 3002)
    owner.sim.state.set_permission(FULL_NAME, "ghost-user", "none")
    body = await owner.call("GET", repo_path("settings"), user, expect=403)
    assert body["error"] == "forbidden"


async def test_the_repository_owner_is_admin(owner: Owner) -> None:
    # The simulator makes an account admin of its own repositories, as GitHub does for user accounts.
    user = await owner.user("octo-org", owner.sim.state.ensure_user("octo-org").id)
    body = await owner.call("GET", repo_path("settings"), user)
    assert body["repo_full_name"] == FULL_NAME


async def test_unknown_or_uninstalled_repository_is_404(owner: Owner) -> None:
    admin = await owner.user("carol", 3003, "admin")
    for path in (repo_path("settings", 999_999), repo_path("challenges", 999_999), repo_path("settings", 0),
                 "/api/v1/repos/abc/settings"):
        body = await owner.call("GET", path, admin, expect=404)
        assert body["error"] == "not_found"
    await send_installation(
        owner.backend, "installation_repositories",
        installation_repositories_payload("removed", repos=[(REPO, FULL_NAME)]),
    )
    assert (await owner.call("GET", repo_path("settings"), admin, expect=404))["error"] == "not_found"
    await send_installation(
        owner.backend, "installation_repositories",
        installation_repositories_payload("added", repos=[(REPO, FULL_NAME)]),
    )
    await owner.call("GET", repo_path("settings"), admin)
    await send_installation(owner.backend, "installation", installation_payload("deleted"))
    assert (await owner.call("GET", repo_path("settings"), admin, expect=404))["error"] == "not_found"


async def test_suspended_installation_cannot_be_checked_so_it_is_403(owner: Owner) -> None:
    admin = await owner.user("carol", 3003, "admin")
    owner.sim.state.set_suspended(1001, True)
    body = await owner.call("GET", repo_path("settings"), admin, expect=403)
    assert "suspended" in body["message"]


async def test_csrf_token_is_required_for_writes(owner: Owner, db: asyncpg.Pool) -> None:
    admin = await owner.user("carol", 3003, "admin")
    other_admin = await owner.user("dave", 3004, "admin")
    before = await snapshot(db)
    for method, path in (("PUT", repo_path("settings")), ("POST", repo_path("pulls/7/exempt"))):
        body = {"deadline_seconds": 600}
        for headers in (
            admin.headers,  # none
            {**admin.headers, "X-CSRF-Token": ""},
            {**admin.headers, "X-CSRF-Token": admin.csrf[:-2] + "xx"},
            {**admin.headers, "X-CSRF-Token": other_admin.csrf},  # another session's token
        ):
            resp = await owner.client.request(method, path, headers=headers, json=body)
            assert resp.status == 403, await resp.text()
            assert (await resp.json())["error"] == "csrf_failed"
    assert await snapshot(db) == before
    # Reads need no token.
    await owner.call("GET", repo_path("settings"), admin, write=False)


async def test_after_rename_and_reuse_of_the_name_the_newcomers_admin_cannot_touch_the_old_repository(
    owner: Owner, db: asyncpg.Pool
) -> None:
    carol = await owner.user("carol", 3003, "admin")  # admin of repository 5001, then named octo-org/widgets
    # On GitHub: 5001 is renamed (prgate missed that event, so it still holds the old name), and a new
    # repository 5002 takes the old name; mallory owns it as admin.
    owner.sim.state.rename_repository(REPO, "octo-org/gadgets")
    owner.sim.state.add_repository(1001, 5002, FULL_NAME)
    await send_installation(
        owner.backend, "installation_repositories",
        installation_repositories_payload("added", repos=[(5002, FULL_NAME)]),
    )
    mallory = await owner.user("mallory", 6006, "admin")  # admin of the repository named octo-org/widgets now
    before = await snapshot(db)
    for method, path in (("GET", repo_path("settings")), ("PUT", repo_path("settings")),
                         ("POST", repo_path("pulls/7/exempt"))):
        body = await owner.call(method, path, mallory, json={"deadline_seconds": 600}, expect=403)
        assert body["error"] == "forbidden"
    assert await snapshot(db) == before
    # Her own repository's settings are hers, and writing them leaves 5001's alone.
    await owner.call("PUT", repo_path("settings", 5002), mallory, json={"deadline_seconds": 600})
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM repo_settings WHERE repo_id = $1", REPO) == 0
    # The admin of 5001 (whatever it is called now) still is.
    written = await owner.call("PUT", repo_path("settings"), carol, json={"deadline_seconds": 7200})
    assert written["deadline_seconds"] == 7200
    paths = [r.path for r in owner.sim.state.request_log if r.path.endswith("/permission")]
    assert paths
    assert all(p.startswith("/repositories/") for p in paths)


# ---- settings -------------------------------------------------------------------------------------------


async def test_admin_reads_and_writes_settings_and_the_next_pr_uses_them(owner: Owner, db: asyncpg.Pool) -> None:
    admin = await owner.user("carol", 3003, "admin")
    current = await owner.call("GET", repo_path("settings"), admin, write=False)
    assert current == {
        **RepoSettings().model_dump(), "repo_id": REPO, "repo_full_name": FULL_NAME, "challenge_answer_set": False,
        "sources": {k: "default" for k in FILE_KEYS},
    }
    # GET's answer can be sent back as PUT's body (unknown fields are ignored).
    wanted = {**current, "deadline_seconds": 3600, "whitelist_logins": ["friend"], "warn_only": True}
    owner.sim.state.ensure_user("friend", 9103)
    written = await owner.call("PUT", repo_path("settings"), admin, json=wanted)
    api = {"deadline_seconds": "api", "whitelist_logins": "api", "warn_only": "api"}
    assert written == {**wanted, "whitelist_user_ids": [9103], "challenge_answer_set": False,
                       "sources": {**current["sources"], **api}}
    assert await owner.call("GET", repo_path("settings"), admin, write=False) == written

    await gate_pr(owner.backend, 8, author_login="second", author_id=9102)
    assert (await send_pr(owner.backend, pull_request_payload("opened", number=9, author_login="friend",
                                                             author_id=9103)))["decision"] == "EXEMPT"
    listed = await owner.call("GET", repo_path("challenges"), admin, write=False)
    newest, first = listed["items"][0], listed["items"][-1]
    assert (newest["pr_number"], first["pr_number"]) == (8, 7)

    def lifetime(item: dict[str, Any]) -> timedelta:
        return datetime.fromisoformat(item["deadline_at"]) - datetime.fromisoformat(item["created_at"])

    assert abs(lifetime(newest) - timedelta(hours=1)) < timedelta(minutes=1)
    assert abs(lifetime(first) - timedelta(hours=72)) < timedelta(minutes=1)
    async with db.acquire() as conn:
        body = await conn.fetchval(
            "SELECT payload->>'body' FROM bot_actions WHERE pr_number = 8 AND action_type = 'UPSERT_PR_COMMENT'"
        )
    assert "warn-only" in body


async def test_put_refuses_invalid_settings(owner: Owner, db: asyncpg.Pool) -> None:
    admin = await owner.user("carol", 3003, "admin")
    before = await snapshot(db)
    body = await owner.call("PUT", repo_path("settings"), admin, json={"deadline_seconds": 5}, expect=422)
    assert body["details"][0]["loc"] == ["deadline_seconds"]
    resp = await owner.client.put(repo_path("settings"), headers=admin.writing(), data=b"{nope",
                                  skip_auto_headers=["Content-Type"])
    assert resp.status == 415
    resp = await owner.client.put(repo_path("settings"), data=b"{nope",
                                  headers={**admin.writing(), "Content-Type": "application/json"})
    assert (resp.status, (await resp.json())["error"]) == (400, "malformed_json")
    assert await snapshot(db) == before


def name_path(suffix: str, full_name: str = FULL_NAME) -> str:
    return f"/api/v1/repos/{full_name}/{suffix}"


async def test_put_refuses_unknown_fields_naming_them_and_writes_nothing(owner: Owner, db: asyncpg.Pool) -> None:
    admin = await owner.user("carol", 3003, "admin")
    await owner.call("PUT", repo_path("settings"), admin, json={"warn_only": True, "deadline_seconds": 3600})
    before = await snapshot(db)
    for method in ("PUT", "PATCH"):
        body = await owner.call(method, repo_path("settings"), admin,
                                json={"warn_onyl": False, "gate_draft": True}, expect=422)
        assert body["error"] == "validation_error"
        assert "unknown fields warn_onyl (did you mean warn_only?), gate_draft (did you mean gate_drafts?)" in (
            body["message"])
        assert sorted(d["loc"] for d in body["details"]) == [["gate_draft"], ["warn_onyl"]]
        assert {d["type"] for d in body["details"]} == {"extra_forbidden"}
    assert await snapshot(db) == before
    current = await owner.call("GET", repo_path("settings"), admin, write=False)
    assert (current["warn_only"], current["deadline_seconds"]) == (True, 3600)


async def test_patch_changes_only_the_fields_given(owner: Owner, db: asyncpg.Pool) -> None:
    admin = await owner.user("carol", 3003, "admin")
    owner.sim.state.ensure_user("friend", 9103)
    await owner.call("PUT", repo_path("settings"), admin, json={
        "warn_only": True, "deadline_seconds": 3600, "whitelist_logins": ["friend"],
        "challenge_question": "Which answer?", "challenge_answer": "forty-two", "challenge_text": "Read this.",
    })
    lookups = len(owner.sim.state.request_log)
    patched = await owner.call("PATCH", repo_path("settings"), admin, json={"gate_drafts": True})
    assert patched == {
        **RepoSettings().model_dump(), "gate_drafts": True, "warn_only": True, "deadline_seconds": 3600,
        "whitelist_logins": ["friend"], "whitelist_user_ids": [9103], "challenge_question": "Which answer?",
        "challenge_text": "Read this.", "repo_id": REPO, "repo_full_name": FULL_NAME, "challenge_answer_set": True,
        "sources": {**{k: "default" for k in FILE_KEYS}, **{k: "api" for k in (
            "gate_drafts", "warn_only", "deadline_seconds", "whitelist_logins", "challenge_question",
            "challenge_text")}},
    }
    # A whitelist left alone is not looked up again (the permission check may be; no /users/ call).
    assert not [r for r in list(owner.sim.state.request_log)[lookups:] if r.path.startswith("/users/")]
    # null: back to the default; the answer's null keeps it, a blank removes it (as on PUT).
    reset = await owner.call("PATCH", repo_path("settings"), admin,
                             json={"deadline_seconds": None, "challenge_text": None, "challenge_answer": None})
    assert (reset["deadline_seconds"], reset["challenge_text"], reset["challenge_answer_set"]) == (
        RepoSettings().deadline_seconds, None, True)
    cleared = await owner.call("PATCH", repo_path("settings"), admin, json={"challenge_answer": ""})
    assert cleared["challenge_answer_set"] is False
    assert cleared["warn_only"] is True
    # An empty patch changes nothing; a bad value refuses the whole patch.
    assert await owner.call("PATCH", repo_path("settings"), admin, json={}) == cleared
    before = await snapshot(db)
    body = await owner.call("PATCH", repo_path("settings"), admin, json={"gate_drafts": False, "deadline_seconds": 5},
                            expect=422)
    assert body["details"][0]["loc"] == ["deadline_seconds"]
    assert await snapshot(db) == before
    # GET's answer, edited, goes back as a PATCH (its read-only fields are accepted and dropped).
    again = await owner.call("PATCH", repo_path("settings"), admin, json={**cleared, "exempt_bots": False})
    assert again == {**cleared, "exempt_bots": False, "sources": {**cleared["sources"], "exempt_bots": "api"}}


async def test_patch_needs_the_csrf_token_and_an_admin(owner: Owner, db: asyncpg.Pool) -> None:
    admin = await owner.user("carol", 3003, "admin")
    dev = await owner.user("dev", 3001, "write")
    before = await snapshot(db)
    body = await owner.call("PATCH", repo_path("settings"), admin, json={"warn_only": True}, write=False, expect=403)
    assert body["error"] == "csrf_failed"
    body = await owner.call("PATCH", name_path("settings"), dev, json={"warn_only": True}, expect=403)
    assert body["error"] == "forbidden"
    assert await snapshot(db) == before


async def test_every_owner_route_answers_by_owner_and_repo_name(owner: Owner) -> None:
    admin = await owner.user("carol", 3003, "admin")
    by_id = await owner.call("GET", repo_path("settings"), admin, write=False)
    # GitHub's names ignore case; the answer is the stored repository's.
    assert await owner.call("GET", name_path("settings", "Octo-Org/WIDGETS"), admin, write=False) == by_id
    written = await owner.call("PATCH", name_path("settings"), admin, json={"deadline_seconds": 600})
    assert written["deadline_seconds"] == 600
    assert (await owner.call("GET", repo_path("settings"), admin, write=False))["deadline_seconds"] == 600
    await owner.call("PUT", name_path("settings"), admin, json={"warn_only": True})
    assert (await owner.call("GET", repo_path("settings"), admin, write=False))["deadline_seconds"] == 72 * 3600
    assert (await owner.call("GET", name_path("installation"), admin, write=False))["repo_id"] == REPO
    assert (await owner.call("GET", name_path("challenges"), admin, write=False))["items"][0]["pr_number"] == 7
    assert (await owner.call("GET", name_path("actions"), admin, write=False))["items"]
    exempted = await owner.call("POST", name_path("pulls/7/exempt"), admin)
    assert (exempted["repo_id"], exempted["pr_number"]) == (REPO, 7)


async def test_an_unknown_or_unreachable_name_is_404(owner: Owner, db: asyncpg.Pool) -> None:
    admin = await owner.user("carol", 3003, "admin")
    before = await snapshot(db)
    for path in (name_path("settings", "octo-org/nothing"), name_path("settings", "nobody/widgets"),
                 name_path("settings", "-bad/widgets"), name_path("challenges", "octo-org/w%20x")):
        body = await owner.call("GET", path, admin, write=False, expect=404)
        assert body["error"] == "not_found"
        if path.endswith("/settings"):
            await owner.call("PATCH", path, admin, json={"warn_only": True}, expect=404)
    # Signed out, a name is not even looked up: 401 for known and unknown alike.
    for name in (FULL_NAME, "octo-org/nothing"):
        assert (await owner.call("GET", name_path("settings", name), None, expect=401))["error"] == "unauthorized"
    # A user whose sign-in reached none of the repository's installations learns nothing from its name.
    stranger = await owner.user("mallory", 6006, "admin", installations=(4242,))
    body = await owner.call("GET", name_path("settings"), stranger, write=False, expect=404)
    assert FULL_NAME in body["message"]
    assert "reach" in body["message"]
    assert await snapshot(db) == before
    assert await permission_checks(owner.sim) == []


async def test_a_name_held_twice_after_a_missed_rename_resolves_to_the_newer_repository(owner: Owner) -> None:
    carol = await owner.user("carol", 3003, "admin")  # admin of 5001, which prgate will still call widgets
    owner.sim.state.rename_repository(REPO, "octo-org/gadgets")
    owner.sim.state.add_repository(1001, 5002, FULL_NAME)
    await send_installation(owner.backend, "installation_repositories",
                            installation_repositories_payload("added", repos=[(5002, FULL_NAME)]))
    mallory = await owner.user("mallory", 6006, "admin")  # admin of 5002 only
    body = await owner.call("GET", name_path("settings"), mallory, write=False)
    assert body["repo_id"] == 5002
    assert (await owner.call("GET", repo_path("settings"), carol, write=False))["repo_id"] == REPO
    # By the reused name she reaches 5002, and GitHub says she is no admin there.
    refused = await owner.call("GET", name_path("settings"), carol, write=False, expect=403)
    assert refused["error"] == "forbidden"


async def test_challenge_answer_is_stored_only_as_the_hash_the_verification_page_checks(
    owner: Owner, db: asyncpg.Pool
) -> None:
    admin = await owner.user("carol", 3003, "admin")
    secret = "  The Forty   Second "
    settings = {"challenge_question": "Which answer?", "challenge_answer": secret}
    written = await owner.call("PUT", repo_path("settings"), admin, json=settings)
    assert written["challenge_answer_set"] is True
    assert "challenge_answer" not in written
    async with db.acquire() as conn:
        record = await conn.fetchrow("SELECT * FROM repo_settings WHERE repo_id = $1", REPO)
    assert record is not None
    row = dict(record)
    assert row["challenge_answer_hash"] == hashlib.sha256(b"the forty second").hexdigest()
    assert not any("forty" in str(value).lower() for key, value in row.items() if key != "challenge_question")
    everything = await owner.call("GET", repo_path("settings"), admin, write=False)
    assert "forty" not in str(everything).lower()

    question = RepoSettings(challenge_question="Which answer?")
    rules = RepoRules(settings=question, answer_hash=row["challenge_answer_hash"])
    assert check_answer(rules, "the FORTY second") is None
    assert check_answer(rules, "forty-two") is Refusal.WRONG_ANSWER

    # Absent: kept. Blank: removed.
    kept = await owner.call("PUT", repo_path("settings"), admin, json={"challenge_question": "Which answer?"})
    assert kept["challenge_answer_set"] is True
    cleared = await owner.call("PUT", repo_path("settings"), admin,
                               json={"challenge_question": "Which answer?", "challenge_answer": "   "})
    assert cleared["challenge_answer_set"] is False
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT challenge_answer_hash FROM repo_settings WHERE repo_id = $1", REPO) is None


# ---- challenges and actions -----------------------------------------------------------------------------


async def test_challenges_are_listed_recent_first_in_pages(owner: Owner) -> None:
    admin = await owner.user("carol", 3003, "admin")
    for number in (8, 9):
        await gate_pr(owner.backend, number, author_login=f"dev{number}", author_id=9100 + number)
    first = await owner.call("GET", repo_path("challenges") + "?limit=2", admin, write=False)
    assert [c["pr_number"] for c in first["items"]] == [9, 8]
    assert first["next_before"] == first["items"][-1]["challenge_id"]
    assert set(first["items"][0]) >= {"status", "deadline_at", "author_login", "head_sha"}
    assert "token_hash" not in first["items"][0]
    rest = await owner.call("GET", repo_path("challenges") + f"?limit=2&before={first['next_before']}", admin,
                            write=False)
    assert [c["pr_number"] for c in rest["items"]] == [7]
    assert rest["next_before"] is None
    for bad in ("limit=0", "limit=201", "limit=x", "before=0"):
        body = await owner.call("GET", repo_path("challenges") + f"?{bad}", admin, write=False, expect=422)
        assert body["error"] == "validation_error"


async def test_actions_show_status_attempt_and_last_error(owner: Owner, db: asyncpg.Pool) -> None:
    admin = await owner.user("carol", 3003, "admin")
    async with db.acquire() as conn:
        failed = await conn.fetchval(
            """UPDATE bot_actions SET status = 'FAILED', attempt = 8, last_error = 'GitHub answered 422: nope'
               WHERE action_id = (SELECT min(action_id) FROM bot_actions) RETURNING action_id"""
        )
    listed = await owner.call("GET", repo_path("actions"), admin, write=False)
    by_id = {a["action_id"]: a for a in listed["items"]}
    assert (by_id[failed]["status"], by_id[failed]["attempt"], by_id[failed]["last_error"]) == (
        "FAILED", 8, "GitHub answered 422: nope"
    )
    assert by_id[failed]["next_attempt_at"] is None
    pending = [a for a in listed["items"] if a["status"] == "PENDING"]
    assert pending
    assert all(a["attempt"] == 0 and a["next_attempt_at"] for a in pending)
    assert [a["action_id"] for a in listed["items"]] == sorted(by_id, reverse=True)


# ---- exempt ---------------------------------------------------------------------------------------------


async def test_admin_exempts_a_pull_request(owner: Owner, db: asyncpg.Pool) -> None:
    admin = await owner.user("carol", 3003, "admin")
    async with db.acquire() as conn:
        last_action = await conn.fetchval("SELECT max(action_id) FROM bot_actions")
    body = await owner.call("POST", repo_path("pulls/7/exempt"), admin)
    assert body["already_exempted"] is False
    assert body["exempted_by"] == "carol"
    async with db.acquire() as conn:
        challenge = await conn.fetchrow("SELECT * FROM challenges WHERE challenge_id = $1", body["challenge_id"])
        actions = await conn.fetch("SELECT * FROM bot_actions WHERE action_id > $1 ORDER BY action_id", last_action)
    assert challenge is not None
    assert (challenge["status"], challenge["resolution"]) == ("EXEMPTED", "exempted by carol")
    assert [a["action_id"] for a in actions] == body["enqueued_action_ids"]
    assert [(a["action_type"], a["status"]) for a in actions] == [
        ("UPSERT_PR_COMMENT", "PENDING"), ("SET_COMMIT_STATUS", "PENDING")
    ]
    assert actions[0]["payload"] == {"marker": messages.PR_COMMENT_MARKER,
                                     "body": messages.exempted_comment("newcomer", "carol")}
    assert (actions[1]["payload"]["sha"], actions[1]["payload"]["state"]) == (HEAD, "success")
    assert actions[1]["payload"]["description"] == messages.STATUS_EXEMPTED

    # Again: nothing more to do.
    again = await owner.call("POST", repo_path("pulls/7/exempt"), admin)
    assert (again["already_exempted"], again["enqueued_action_ids"]) == (True, [])
    # The next event on the PR respects the exemption.
    answer = await send_pr(owner.backend, pull_request_payload("synchronize", number=7, head_sha="f" * 40))
    assert answer["decision"] == "EXEMPT"


@pytest.mark.parametrize("number", ["2147483648", "999999999999999999", "\u00b2", "0"])
async def test_exempting_a_pull_request_number_that_cannot_exist_is_404(owner: Owner, number: str) -> None:
    # pr_number is a PostgreSQL INTEGER: a larger number would reach asyncpg and fail there (500).
    admin = await owner.user("carol", 3003, "admin")
    body = await owner.call("POST", repo_path(f"pulls/{number}/exempt"), admin, expect=404)
    assert body["error"] == "not_found"


async def test_exempting_a_timed_out_pr_records_an_exemption(owner: Owner, db: asyncpg.Pool) -> None:
    admin = await owner.user("carol", 3003, "admin")
    async with db.acquire() as conn:
        await conn.execute("UPDATE challenges SET status = 'TIMED_OUT', resolved_at = now()")
    body = await owner.call("POST", repo_path("pulls/7/exempt"), admin)
    async with db.acquire() as conn:
        statuses = [r["status"] for r in await conn.fetch("SELECT status FROM challenges ORDER BY challenge_id")]
    assert statuses == ["TIMED_OUT", "EXEMPTED"]
    assert len(body["enqueued_action_ids"]) == 2


async def test_exempting_an_unknown_pr_is_404(owner: Owner, db: asyncpg.Pool) -> None:
    admin = await owner.user("carol", 3003, "admin")
    before = await snapshot(db)
    body = await owner.call("POST", repo_path("pulls/99/exempt"), admin, expect=404)
    assert "no record of pull request #99" in body["message"]
    assert await snapshot(db) == before


# ---- GitHub -----------------------------------------------------------------------------------------------


async def test_installation_token_and_permission_answers_are_reused(owner: Owner) -> None:
    users = [await owner.user(login, 4000 + i, "admin") for i, login in enumerate(("ann", "ben", "cat"))]
    for user in users:
        for path in (repo_path("settings"), repo_path("challenges"), repo_path("actions")):
            await owner.call("GET", path, user, write=False)
    assert owner.sim.state.tokens_issued == {1001: 1}
    # One permission check per user: the rest came from the 60 s cache.
    assert len(await permission_checks(owner.sim)) == 3


async def test_a_revoked_token_is_replaced_once(owner: Owner) -> None:
    admin = await owner.user("carol", 3003, "admin")
    await owner.call("GET", repo_path("settings"), admin, write=False)
    owner.sim.state.expire_tokens(1001)
    other = await owner.user("dave", 3004, "admin")  # not cached: asks GitHub with the revoked token
    await owner.call("GET", repo_path("settings"), other, write=False)
    assert owner.sim.state.tokens_issued == {1001: 2}


async def test_github_unreachable_is_502(db: asyncpg.Pool, database_url: str, aiohttp_client: Any) -> None:
    with closed_port() as port:
        settings = owner_settings(database_url, f"http://127.0.0.1:{port}")
        client = await aiohttp_client(create_app(settings))
        await send_installation(SignedClient(client, INTERNAL_SECRET), "installation", installation_payload("created"))
        _, cookie = SessionCodec.from_settings(settings).issue(1, "carol", time.time(), (1001,))
        resp = await client.get(repo_path("settings"), headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        assert (resp.status, (await resp.json())["error"]) == (502, "github_unavailable")


async def test_without_app_credentials_it_is_503(backend: SignedClient, database_url: str) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    _, cookie = SessionCodec.from_settings(backend_settings(database_url)).issue(1, "carol", time.time(), (1001,))
    resp = await backend.client.get(repo_path("settings"), headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
    assert (resp.status, (await resp.json())["error"]) == (503, "github_app_not_configured")


async def test_sign_in_through_github_oauth_gives_an_owner_api_session(owner: Owner) -> None:
    """The real flow (the browser test does it with clicks): login → GitHub authorize → callback."""
    owner.sim.state.set_permission(FULL_NAME, "erin", "admin")
    start = await owner.client.get("/auth/github/login", params={"next": "/api/v1/session"}, allow_redirects=False)
    assert start.status == 302
    authorize = URL(start.headers["Location"])
    async with aiohttp.ClientSession() as github:
        resp = await github.get(authorize.update_query(login="erin"), allow_redirects=False)
        assert resp.status == 302
    callback = URL(resp.headers["Location"])
    assert callback.path == "/auth/github/callback"
    done = await owner.client.get(callback.path_qs, allow_redirects=False)
    assert (done.status, done.headers["Location"]) == (302, "/api/v1/session")
    me = await owner.client.get("/api/v1/session")  # the client's cookie jar now holds the session
    session = await me.json()
    assert session["login"] == "erin"
    resp = await owner.client.get(repo_path("settings"))
    assert resp.status == 200
    resp = await owner.client.put(repo_path("settings"), json={"deadline_seconds": 7200},
                                  headers={"X-CSRF-Token": session["csrf_token"]})
    assert (resp.status, (await resp.json())["deadline_seconds"]) == (200, 7200)


async def test_app_jwt_claims_and_token_refresh_five_minutes_before_expiry() -> None:
    """The App client against a simulator sharing its (injected) clock: no waiting, no wall clock."""
    from aiohttp.test_utils import TestServer

    from backend_api.github.app import GitHubApp
    from prgate.simulator import SIM_STATE, SimulatorConfig, create_simulator_app
    from provider_clients.github.app import app_jwt

    now = [1_700_000_000.0]
    claims = jwt.decode(app_jwt(str(APP_ID), app_keys().private_pem, now[0]), app_keys().public_pem,
                        algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims["iss"] == str(APP_ID)
    assert claims["iat"] == now[0] - 60
    assert 0 < claims["exp"] - now[0] <= 600

    config = SimulatorConfig(app_id=APP_ID, app_public_key_pem=app_keys().public_pem, token_ttl_seconds=3600,
                             webhooks_on_api_changes=False)
    sim_app = create_simulator_app(config, clock=lambda: now[0])
    server = TestServer(sim_app)
    await server.start_server()
    try:
        state = sim_app[SIM_STATE]
        state.add_installation(1001, "octo-org")
        state.add_repository(1001, REPO, FULL_NAME)
        state.set_permission(FULL_NAME, "carol", "admin")
        async with aiohttp.ClientSession() as session:
            app = GitHubApp(session, str(server.make_url("")), str(APP_ID), app_keys().private_pem,
                            clock=lambda: now[0])
            first = await app.installation_token(1001)
            now[0] += 3600 - 300 - 1  # 5 minutes and 1 second before expiry: still used
            assert await app.installation_token(1001) == first
            now[0] += 2  # within the last 5 minutes: replaced
            assert await app.installation_token(1001) != first
            assert state.tokens_issued == {1001: 2}

            assert await app.permission(1001, REPO, "carol") == "admin"
            state.set_permission(FULL_NAME, "carol", "write")
            now[0] += 59
            assert await app.permission(1001, REPO, "Carol") == "admin"  # cached, logins ignore case
            now[0] += 2
            assert await app.permission(1001, REPO, "carol") == "write"  # asked again after 60 s
    finally:
        await server.close()


async def test_owner_routes_are_in_the_openapi_document(owner: Owner) -> None:
    doc = await (await owner.client.get("/openapi.json")).json()
    paths = doc["paths"]
    put = paths["/api/v1/repos/{repo_id}/settings"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/RepoSettingsUpdate")
    assert {"401", "403", "404", "422"} <= set(put["responses"])
    assert set(paths["/api/v1/repos/{repo_id}/settings"]) == {"get", "put", "patch"}
    patch = paths["/api/v1/repos/{repo_id}/settings"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/RepoSettingsPatch")
    assert doc["components"]["schemas"]["RepoSettingsPatch"]["additionalProperties"] is False
    assert doc["components"]["schemas"]["RepoSettingsUpdate"]["additionalProperties"] is False
    # Every owner route by name too, with its own operationId and string segments.
    by_id = {p.removeprefix("/api/v1/repos/{repo_id}/") for p in paths if p.startswith("/api/v1/repos/{repo_id}/")}
    by_name = {p.removeprefix("/api/v1/repos/{owner}/{repo}/") for p in paths
               if p.startswith("/api/v1/repos/{owner}/{repo}/")}
    assert by_name == by_id - {"github-app-status"}
    named = paths["/api/v1/repos/{owner}/{repo}/settings"]
    assert set(named) == {"get", "put", "patch"}
    assert [(p["name"], p["in"], p["schema"]["type"]) for p in named["patch"]["parameters"]] == [
        ("owner", "path", "string"), ("repo", "path", "string"), ("provider", "query", "string")]
    assert named["patch"]["parameters"][2]["schema"]["enum"] == ["github", "bitbucket"]
    ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert "patch_repo_settings_by_name" in ids
    for path in ("/api/v1/session", "/api/v1/repos/{repo_id}/challenges", "/api/v1/repos/{repo_id}/actions"):
        assert "get" in paths[path]
    exempt = paths["/api/v1/repos/{repo_id}/pulls/{number}/exempt"]["post"]
    assert [p["name"] for p in exempt["parameters"]] == ["repo_id", "number"]
    schemas = doc["components"]["schemas"]
    assert "challenge_answer" in schemas["RepoSettingsUpdate"]["properties"]
    assert "challenge_answer" not in schemas["OwnerRepoSettings"]["properties"]
    assert "challenge_answer_set" in schemas["OwnerRepoSettings"]["properties"]


# ---- no repository name for anyone but its admins (docs/security.md, "Private repository names …") -------------------


async def test_install_status_names_the_repository_only_to_its_admins(owner: Owner, db: asyncpg.Pool) -> None:
    """The repository is private: its name, account and installation are its owner's business."""
    owner.sim.state.repo_by_id(REPO).private = True
    public = await owner.client.get(f"/api/v1/repos/{REPO}/github-app-status")
    assert await public.json() == {"repo_id": REPO, "installed": True}
    stranger = await owner.user("mallory", 6006, "none")
    # Signed in, the public answer is the same; the details and every refusal name no repository.
    resp = await owner.client.get(f"/api/v1/repos/{REPO}/github-app-status", headers=stranger.headers)
    assert await resp.json() == {"repo_id": REPO, "installed": True}
    for method, path in [("GET", repo_path("installation")), *ROUTES]:
        for user in (None, stranger):
            resp = await owner.client.request(method, path, headers=user.writing() if user else {},
                                              json=RepoSettings().model_dump())
            text = await resp.text()
            assert resp.status in (401, 403), (resp.status, text)
            assert "widgets" not in text, text
            assert "octo-org" not in text, text
    admin = await owner.user("carol", 3003, "admin")
    details = await owner.call("GET", repo_path("installation"), admin, write=False)
    assert details == {
        "repo_id": REPO, "repo_full_name": FULL_NAME, "installed": True, "installation_id": 1001,
        "installation_status": "ACTIVE", "account_login": "octo-org", "repository_selection": "selected",
    }


async def test_the_public_status_is_the_same_for_never_installed_and_unknown(owner: Owner) -> None:
    for repo_id in (999_999, 7001):  # unknown to prgate / installed on GitHub but not known here
        resp = await owner.client.get(f"/api/v1/repos/{repo_id}/github-app-status")
        assert await resp.json() == {"repo_id": repo_id, "installed": False}


# ---- a stranger never makes prgate spend another tenant's installation token
# (docs/security.md, "A signed-in stranger makes prgate mint and spend a victim installation's token") -----------------


async def _sign_in(client: TestClient[Any, Any], login: str) -> str:
    """The real OAuth flow against the simulator; the client's cookie jar holds the session. The CSRF token."""
    start = await client.get("/auth/github/login", params={"next": "/api/v1/session"}, allow_redirects=False)
    async with aiohttp.ClientSession() as github:
        resp = await github.get(URL(start.headers["Location"]).update_query(login=login), allow_redirects=False)
    done = await client.get(URL(resp.headers["Location"]).path_qs, allow_redirects=False)
    assert done.status == 302, await done.text()
    return str((await (await client.get("/api/v1/session")).json())["csrf_token"])


async def test_a_stranger_never_causes_a_token_mint_for_another_tenant_and_is_rate_limited(
    db: asyncpg.Pool, database_url: str, aiohttp_client: Any, simulator: Simulator
) -> None:
    settings = owner_settings(database_url, simulator.url, OWNER_API_CHECKS_PER_MINUTE="5")
    client = await aiohttp_client(create_app(settings))
    await send_installation(SignedClient(client, INTERNAL_SECRET), "installation", installation_payload("created"))
    simulator.state.ensure_user("mallory", 6006)
    csrf = await _sign_in(client, "mallory")  # she reaches none of the App's installations
    simulator.state.request_log.clear()
    answers = []
    for _ in range(8):
        resp = await client.put(repo_path("settings"), json={"deadline_seconds": 600}, headers={"X-CSRF-Token": csrf})
        answers.append((resp.status, (await resp.json())["error"]))
    assert answers == [(403, "forbidden")] * 5 + [(429, "rate_limited")] * 3
    asked = [(r.method, r.path) for r in simulator.state.request_log]
    assert not [a for a in asked if a[1].endswith("/access_tokens") or a[1].endswith("/permission")], asked
    # The installation's own admin signs in, is listed the installation, and gets through.
    simulator.state.set_permission(FULL_NAME, "erin", "admin")
    admin = await aiohttp_client(create_app(settings))
    await _sign_in(admin, "erin")
    assert (await admin.get(repo_path("settings"))).status == 200
    assert ("GET", "/user/installations") in [(r.method, r.path) for r in simulator.state.request_log]


async def test_refusals_are_cached_longer_than_admin_answers() -> None:
    """A stranger probing repositories costs GitHub one permission check per 5 minutes, not per minute."""
    from aiohttp.test_utils import TestServer

    from backend_api.github.app import REFUSAL_TTL_SECONDS, GitHubApp
    from prgate.simulator import SIM_STATE, SimulatorConfig, create_simulator_app

    now = [1_700_000_000.0]
    config = SimulatorConfig(app_id=APP_ID, app_public_key_pem=app_keys().public_pem, webhooks_on_api_changes=False)
    sim_app = create_simulator_app(config, clock=lambda: now[0])
    server = TestServer(sim_app)
    await server.start_server()
    try:
        state = sim_app[SIM_STATE]
        state.add_installation(1001, "octo-org")
        state.add_repository(1001, REPO, FULL_NAME)
        state.set_permission(FULL_NAME, "dev", "write", 3001)
        async with aiohttp.ClientSession() as session:
            app = GitHubApp(session, str(server.make_url("")), str(APP_ID), app_keys().private_pem,
                            clock=lambda: now[0])
            assert await app.permission(1001, REPO, "dev", 3001) == "write"
            now[0] += 61
            assert await app.permission(1001, REPO, "dev", 3001) == "write"
            now[0] += REFUSAL_TTL_SECONDS - 60
            assert await app.permission(1001, REPO, "dev", 3001) == "write"
        checks = [r for r in state.request_log if r.path.endswith("/permission")]
        assert len(checks) == 2
    finally:
        await server.close()
