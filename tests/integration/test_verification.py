"""The verification path end to end: a real backend, the simulator's OAuth, a browser with a cookie jar.

The backend listens on a port known in advance so its BACKEND_PUBLIC_URL is real: the gate comment's
link, GitHub's redirect back and every ``Location`` can be followed exactly as a browser would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer, unused_port
from yarl import URL

from backend_api.app import create_app
from backend_api.auth.session import OAUTH_COOKIE, SESSION_COOKIE, csrf_scope_for_challenge
from backend_api.challenges import messages
from backend_api.challenges.verify import answer_hash
from backend_api.gate.deadlines import sweep_all
from backend_api.keys import SESSIONS
from backend_api.settings import BackendSettings
from backend_api.store import repo_settings
from prgate.simulator import SIM_OAUTH, SimulatorConfig
from shared_contracts.owner import RepoSettings
from tests.conftest import INTERNAL_SECRET, backend_settings
from tests.support.github_sim import Simulator
from tests.support.ingest import send_installation, send_pr
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.rows import snapshot
from tests.support.signed import SignedClient

SIM_CLIENT_ID = SimulatorConfig.model_fields["oauth_client_id"].default
SIM_CLIENT_SECRET = SimulatorConfig.model_fields["oauth_client_secret"].default
SHA = "0123456789abcdef0123456789abcdef01234567"
_VERIFY_CSRF = re.compile(r'action="/verify/[^"]+"><input type=hidden name=csrf value="([^"]+)"')


@dataclass
class Env:
    base: str
    client: TestClient[Any, Any]
    backend: SignedClient
    settings: BackendSettings
    simulator: Simulator
    db: asyncpg.Pool
    browsers: list[aiohttp.ClientSession] = field(default_factory=list)

    def browser(self) -> aiohttp.ClientSession:
        """A fresh browser: its own cookie jar (unsafe=True: the servers are on 127.0.0.1)."""
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.browsers.append(session)
        return session

    def page_url(self, token: str) -> str:
        return f"{self.base}/verify/{token}"

    async def gate(self, **payload: Any) -> str:
        """Open a PR through the real ingest endpoint; the link token, read from the gate comment."""
        response = await send_pr(self.backend, pull_request_payload("opened", **payload))
        assert response["decision"] == "GATE", response
        async with self.db.acquire() as conn:
            body = await conn.fetchval(
                """SELECT payload->>'body' FROM bot_actions
                   WHERE challenge_id = $1 AND action_type = 'UPSERT_PR_COMMENT' ORDER BY action_id DESC LIMIT 1""",
                response["challenge_id"],
            )
        token: str = body.split(f"{self.base}/verify/")[1].split()[0]
        return token

    async def sign_in(
        self, browser: aiohttp.ClientSession, login: str, next_path: str | None
    ) -> aiohttp.ClientResponse:
        """Start at /auth/github/login, sign in at the simulator as ``login``, follow every redirect."""
        params = {"next": next_path} if next_path is not None else {}
        start = await browser.get(f"{self.base}/auth/github/login", params=params, allow_redirects=False)
        assert start.status == 302, await start.text()
        authorize = URL(start.headers["Location"])
        assert str(authorize.with_query(None)) == f"{self.simulator.url}/login/oauth/authorize"
        return await browser.get(authorize.update_query(login=login))


@pytest.fixture
async def make_env(
    db: asyncpg.Pool, database_url: str, aiohttp_client: Any, simulator: Simulator
) -> AsyncIterator[Callable[..., Awaitable[Env]]]:
    envs: list[Env] = []

    async def make(**overrides: Any) -> Env:
        port = unused_port()
        base = f"http://127.0.0.1:{port}"
        settings = backend_settings(
            database_url,
            **{
                "BACKEND_PUBLIC_URL": base, "GITHUB_WEB_URL": simulator.url, "GITHUB_API_URL": simulator.url,
                "GITHUB_CLIENT_ID": SIM_CLIENT_ID, "GITHUB_CLIENT_SECRET": SIM_CLIENT_SECRET, **overrides,
            },
        )
        client = await aiohttp_client(TestServer(create_app(settings), port=port))
        env = Env(base, client, SignedClient(client, INTERNAL_SECRET), settings, simulator, db)
        envs.append(env)
        return env

    yield make
    for env in envs:
        for browser in env.browsers:
            await browser.close()


@pytest.fixture
async def env(make_env: Callable[..., Awaitable[Env]]) -> Env:
    env = await make_env()
    await send_installation(
        env.backend, "installation",
        installation_payload("created", repos=[(5001, "octo-org/widgets"), (5002, "octo-org/gadgets")]),
    )
    return env


async def rows(db: asyncpg.Pool, sql: str, *args: object) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return list(await conn.fetch(sql, *args))


async def last_action_id(db: asyncpg.Pool) -> int:
    async with db.acquire() as conn:
        return int(await conn.fetchval("SELECT coalesce(max(action_id), 0) FROM bot_actions"))


async def actions_after(db: asyncpg.Pool, action_id: int) -> list[asyncpg.Record]:
    return await rows(db, "SELECT * FROM bot_actions WHERE action_id > $1 ORDER BY action_id", action_id)


def csrf_of(page: str) -> str:
    match = _VERIFY_CSRF.search(page)
    assert match, page
    return match.group(1)


def assert_html(resp: aiohttp.ClientResponse, status: int) -> None:
    assert resp.status == status
    assert resp.content_type == "text/html"
    assert resp.headers["Referrer-Policy"] == "no-referrer"  # the page URL carries the token


async def signed_in_author(env: Env, token: str, login: str = "newcomer") -> tuple[aiohttp.ClientSession, str]:
    """A browser signed in as ``login`` on the verification page; the page's form CSRF token."""
    browser = env.browser()
    page = await env.sign_in(browser, login, f"/verify/{token}")
    assert str(page.url) == env.page_url(token)
    assert page.status == 200, await page.text()
    return browser, csrf_of(await page.text())


async def verify(
    browser: aiohttp.ClientSession, env: Env, token: str, csrf: str, **form: str
) -> aiohttp.ClientResponse:
    return await browser.post(env.page_url(token), data={"csrf": csrf, "accept": "yes", **form}, allow_redirects=False)


# ---- the happy path ----------------------------------------------------------------------------------


async def test_author_signs_in_and_verifies(env: Env, db: asyncpg.Pool) -> None:
    token = await env.gate()
    browser = env.browser()

    # Signed out: the page describes the challenge and offers "Sign in with GitHub".
    first = await browser.get(env.page_url(token))
    assert_html(first, 200)
    page = await first.text()
    assert "octo-org/widgets" in page
    assert f'href="{env.simulator.url}/octo-org/widgets/pull/7"' in page  # GITHUB_WEB_URL
    assert "octo-org/widgets#7" in page
    assert "@newcomer" in page
    [challenge] = await rows(db, "SELECT * FROM challenges")
    assert messages.format_deadline(challenge["deadline_at"]) in page
    assert "Sign in with GitHub" in page
    assert SESSION_COOKIE not in first.cookies
    sign_in_href = re.search(r'<a class=button href="([^"]+)">Sign in with GitHub', page)
    assert sign_in_href is not None
    login_path = sign_in_href.group(1).replace("&amp;", "&")
    assert URL(login_path).query["next"] == f"/verify/{token}"

    # The button: to GitHub's authorize page with our client id, callback and a state bound by a cookie.
    start = await browser.get(env.base + login_path, allow_redirects=False)
    assert start.status == 302
    authorize = URL(start.headers["Location"])
    assert authorize.query["client_id"] == SIM_CLIENT_ID
    assert authorize.query["redirect_uri"] == f"{env.base}/auth/github/callback"
    assert len(authorize.query["state"]) >= 32
    state_cookie = start.cookies[OAUTH_COOKIE]
    assert state_cookie["httponly"]
    assert state_cookie["samesite"] == "Lax"

    # GitHub signs the user in and sends them back; the callback sets the session and returns to the page.
    back = await browser.get(authorize.update_query(login="newcomer"))
    assert str(back.url) == env.page_url(token)
    assert_html(back, 200)
    callback = back.history[-1]
    assert callback.url.path == "/auth/github/callback"
    session_cookie = callback.cookies[SESSION_COOKIE]
    assert session_cookie["httponly"]
    assert session_cookie["samesite"] == "Lax"
    assert not session_cookie["secure"]  # BACKEND_PUBLIC_URL is http here
    payload = json.loads(base64.urlsafe_b64decode(session_cookie.value.split(".")[1] + "=="))
    assert set(payload) == {"sid", "uid", "login", "exp", "inst", "iat", "prov"}
    assert (payload["uid"], payload["login"], payload["prov"]) == (9001, "newcomer", "github")
    for gho in env.simulator.server.app[SIM_OAUTH].tokens:  # the access token never reaches the browser
        assert gho not in session_cookie.value
    page = await back.text()
    assert "Signed in as <strong>@newcomer</strong>" in page
    assert messages.DEFAULT_CHALLENGE_TEXT.replace("'", "&#x27;") in page
    assert 'name=accept' in page

    mark = await last_action_id(db)
    done = await verify(browser, env, token, csrf_of(page))
    assert_html(done, 200)
    assert "You are verified" in await done.text()

    [challenge] = await rows(db, "SELECT * FROM challenges")
    assert (challenge["status"], challenge["resolution"]) == ("VERIFIED", "verified by @newcomer")
    assert challenge["resolved_at"] is not None
    [contributor] = await rows(db, "SELECT * FROM contributors")
    assert (contributor["installation_id"], contributor["github_user_id"], contributor["login"]) == (
        1001, 9001, "newcomer"
    )
    assert contributor["challenge_id"] == challenge["challenge_id"]
    comment, status = await actions_after(db, mark)
    assert (comment["action_type"], comment["status"], comment["pr_number"]) == ("UPSERT_PR_COMMENT", "PENDING", 7)
    assert comment["payload"] == {"marker": messages.PR_COMMENT_MARKER, "body": messages.verified_comment("newcomer")}
    assert comment["challenge_id"] == challenge["challenge_id"]
    assert status["action_type"] == "SET_COMMIT_STATUS"
    assert status["payload"] == {
        "sha": SHA, "state": "success", "context": "prgate", "description": messages.STATUS_VERIFIED,
        "target_url": env.page_url(token),
    }
    assert (comment["installation_id"], comment["repo_full_name"]) == (1001, "octo-org/widgets")

    # A later pull request by the same author is let through.
    later = await send_pr(env.backend, pull_request_payload("opened", number=8))
    assert later["decision"] == "VERIFIED_NOOP"


async def test_page_links_point_at_github_web_and_texts_are_escaped(env: Env, db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await repo_settings.put(conn, 5001, RepoSettings(
            challenge_text="I accept <script>alert(1)</script> & the CLA",
            challenge_question='Type "<b>yes</b>"',
        ))
    token = await env.gate()
    browser, _ = await signed_in_author(env, token)
    page = await (await browser.get(env.page_url(token))).text()
    assert f'href="{env.simulator.url}/octo-org/widgets/pull/7"' in page
    assert "<script>alert(1)</script>" not in page
    assert "I accept &lt;script&gt;alert(1)&lt;/script&gt; &amp; the CLA" in page
    assert "Type &quot;&lt;b&gt;yes&lt;/b&gt;&quot;" in page
    resp = await browser.get(env.page_url(token))
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Cache-Control"] == "no-store"


async def test_one_verification_resolves_every_open_challenge_of_the_author(env: Env, db: asyncpg.Pool) -> None:
    token = await env.gate()  # octo-org/widgets#7
    await env.gate(repo_id=5002, full_name="octo-org/gadgets", number=3)
    await env.gate(number=9, head_sha="f" * 40)
    async with db.acquire() as conn:
        await conn.execute("UPDATE challenges SET status = 'TIMED_OUT' WHERE pr_number = 9")
    await env.gate(number=10, author_login="someone-else", author_id=4242)
    await send_installation(env.backend, "installation", installation_payload(
        "created", installation_id=2002, account_login="acme", repos=[(7001, "acme/x")]))
    await env.gate(installation_id=2002, repo_id=7001, full_name="acme/x", number=3)

    browser, csrf = await signed_in_author(env, token)
    mark = await last_action_id(db)
    done = await verify(browser, env, token, csrf)
    assert_html(done, 200)
    text = await done.text()
    for pr in ("octo-org/widgets#7", "octo-org/gadgets#3", "octo-org/widgets#9"):
        assert pr in text

    statuses = {(r["repo_full_name"], r["pr_number"]): (r["status"], r["resolution"])
                for r in await rows(db, "SELECT * FROM challenges")}
    [target_id] = [r["challenge_id"] for r in await rows(db, "SELECT * FROM challenges WHERE pr_number = 7")]
    cascade = f"verified by @newcomer (challenge {target_id})"
    assert statuses == {
        ("octo-org/widgets", 7): ("VERIFIED", "verified by @newcomer"),
        ("octo-org/gadgets", 3): ("VERIFIED", cascade),
        ("octo-org/widgets", 9): ("VERIFIED", cascade),
        ("octo-org/widgets", 10): ("PENDING", None),  # another author
        ("acme/x", 3): ("PENDING", None),  # another installation
    }
    actions = [(a["repo_full_name"], a["pr_number"], a["action_type"]) for a in await actions_after(db, mark)]
    assert actions == [
        ("octo-org/widgets", 7, "UPSERT_PR_COMMENT"), ("octo-org/widgets", 7, "SET_COMMIT_STATUS"),
        ("octo-org/gadgets", 3, "UPSERT_PR_COMMENT"), ("octo-org/gadgets", 3, "SET_COMMIT_STATUS"),
        ("octo-org/widgets", 9, "REOPEN_PR_WITH_COMMENT"), ("octo-org/widgets", 9, "SET_COMMIT_STATUS"),
    ]
    [status9] = [
        a for a in await actions_after(db, mark) if a["pr_number"] == 9 and a["action_type"] == "SET_COMMIT_STATUS"
    ]
    assert status9["payload"]["sha"] == "f" * 40


# ---- the challenge itself ------------------------------------------------------------------------------


async def test_question_must_be_answered_right(env: Env, db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await repo_settings.put(conn, 5001, RepoSettings(challenge_question="Which license does this project use?"))
        await conn.execute("UPDATE repo_settings SET challenge_answer_hash = $1 WHERE repo_id = 5001",
                           answer_hash("Apache-2.0"))
    token = await env.gate()
    browser, csrf = await signed_in_author(env, token)
    page = await (await browser.get(env.page_url(token))).text()
    assert "Which license does this project use?" in page
    assert "name=answer" in page

    before = await snapshot(db)
    wrong = await verify(browser, env, token, csrf, answer="MIT")
    assert_html(wrong, 422)
    assert "That answer is not right" in await wrong.text()
    missing = await verify(browser, env, token, csrf)
    assert_html(missing, 422)
    unticked = await browser.post(env.page_url(token), data={"csrf": csrf, "answer": "Apache-2.0"})
    assert_html(unticked, 422)
    assert "tick the box" in await unticked.text()
    after = await snapshot(db)
    assert len(after.pop("verify_wrong_answers")) == 1  # only the wrong answer counts toward the limit
    before.pop("verify_wrong_answers")
    assert after == before

    right = await verify(browser, env, token, csrf, answer="  apache-2.0 ")
    assert_html(right, 200)
    [challenge] = await rows(db, "SELECT status FROM challenges")
    assert challenge["status"] == "VERIFIED"


# ---- refusals: nothing changes -------------------------------------------------------------------------


async def test_someone_else_is_refused_and_can_sign_out(env: Env, db: asyncpg.Pool) -> None:
    token = await env.gate()
    browser = env.browser()
    page = await env.sign_in(browser, "intruder", f"/verify/{token}")
    assert_html(page, 403)
    text = await page.text()
    assert "signed in as @intruder" in text
    assert "opened by @newcomer" in text
    assert 'name=accept' not in text
    assert 'action="/auth/logout"' in text

    # Even with a valid CSRF token for its own session, the intruder cannot verify.
    codec = env.client.app[SESSIONS]
    cookie = browser.cookie_jar.filter_cookies(URL(env.base))[SESSION_COOKIE].value
    session = codec.read(cookie, time.time())
    assert session is not None
    assert session.login == "intruder"
    [challenge] = await rows(db, "SELECT challenge_id FROM challenges")
    forged_csrf = codec.csrf_token(session, csrf_scope_for_challenge(challenge["challenge_id"]))
    before = await snapshot(db)
    refused = await verify(browser, env, token, forged_csrf)
    assert_html(refused, 403)
    assert await snapshot(db) == before

    # Sign out (the form's own CSRF token), then the page offers sign-in again.
    logout_csrf = re.search(r'action="/auth/logout"><input type=hidden name=csrf value="([^"]+)"', text)
    assert logout_csrf is not None
    out = await browser.post(f"{env.base}/auth/logout", data={"csrf": logout_csrf.group(1), "next": f"/verify/{token}"})
    assert str(out.url) == env.page_url(token)
    assert_html(out, 200)
    assert "Sign in with GitHub" in await out.text()
    after = await snapshot(db)
    assert [r["session_id"] for r in after.pop("revoked_sessions")] == [session.sid]  # signed out for good
    before.pop("revoked_sessions")
    assert after == before


async def test_logout_without_its_csrf_token_keeps_the_session(env: Env) -> None:
    token = await env.gate()
    browser, _ = await signed_in_author(env, token)
    resp = await browser.post(f"{env.base}/auth/logout", data={"next": "/"})
    assert_html(resp, 403)
    page = await (await browser.get(env.page_url(token))).text()
    assert "Signed in as <strong>@newcomer</strong>" in page


@pytest.mark.parametrize("case", ["missing", "garbage", "other_challenge", "other_session", "signed_out"])
async def test_bad_csrf_is_403_and_changes_nothing(env: Env, db: asyncpg.Pool, case: str) -> None:
    token = await env.gate()
    other_token = await env.gate(number=8)
    browser, csrf = await signed_in_author(env, token)
    _, csrf_elsewhere = await signed_in_author(env, other_token)
    _, csrf_other_session = await signed_in_author(env, token)
    form: dict[str, str] = {"accept": "yes"}
    if case == "garbage":
        form["csrf"] = "x" * 43
    elif case == "other_challenge":
        form["csrf"] = csrf_elsewhere
    elif case == "other_session":
        form["csrf"] = csrf_other_session
    elif case == "signed_out":
        form["csrf"] = csrf
        browser = env.browser()
    before = await snapshot(db)
    resp = await browser.post(env.page_url(token), data=form)
    assert_html(resp, 403)
    text = await resp.text()
    assert ("Nothing was changed" in text) or ("nothing was submitted" in text)
    assert await snapshot(db) == before


async def test_tampered_session_cookie_reads_as_signed_out(env: Env, db: asyncpg.Pool) -> None:
    token = await env.gate()
    browser, csrf = await signed_in_author(env, token)
    jar = browser.cookie_jar
    value = jar.filter_cookies(URL(env.base))[SESSION_COOKIE].value
    version, payload, mac = value.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["uid"] = 1  # pretend to be someone else, keeping the signature
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for tampered in (f"{version}.{forged}.{mac}", value[:-2] + ("AA" if not value.endswith("AA") else "BB")):
        cookie: SimpleCookie = SimpleCookie()
        cookie[SESSION_COOKIE] = tampered
        jar.update_cookies(cookie, URL(env.base))
        page = await browser.get(env.page_url(token))
        assert_html(page, 200)
        text = await page.text()
        assert "Sign in with GitHub" in text
        assert "Signed in as" not in text
        before = await snapshot(db)
        refused = await verify(browser, env, token, csrf)
        assert_html(refused, 403)
        assert await snapshot(db) == before


async def test_reused_link_after_success_is_409(env: Env, db: asyncpg.Pool) -> None:
    token = await env.gate()
    browser, csrf = await signed_in_author(env, token)
    assert (await verify(browser, env, token, csrf)).status == 200
    before = await snapshot(db)
    again = await verify(browser, env, token, csrf)
    assert_html(again, 409)
    assert "already verified" in await again.text()
    page = await browser.get(env.page_url(token))
    assert_html(page, 409)
    anonymous = await env.browser().get(env.page_url(token))
    assert_html(anonymous, 409)
    assert await snapshot(db) == before


async def test_cancelled_challenge_link_has_expired(env: Env, db: asyncpg.Pool) -> None:
    token = await env.gate()
    browser, csrf = await signed_in_author(env, token)
    closed = await send_pr(env.backend, pull_request_payload("closed"))
    assert closed["decision"] == "CANCELLED"
    before = await snapshot(db)
    page = await browser.get(env.page_url(token))
    assert_html(page, 409)
    assert "can no longer be used" in await page.text()
    submitted = await verify(browser, env, token, csrf)
    assert_html(submitted, 409)
    assert await snapshot(db) == before


@pytest.mark.parametrize("token", ["A" * 43, "short", "has.dots.in.it.that.are.not.allowed", "x" * 200])
async def test_unknown_token_is_404(env: Env, db: asyncpg.Pool, token: str) -> None:
    await env.gate()
    browser, csrf = await signed_in_author(env, await env.gate(number=8))
    before = await snapshot(db)
    page = await browser.get(env.page_url(token))
    assert_html(page, 404)
    assert "not valid" in await page.text()
    assert_html(await verify(browser, env, token, csrf), 404)
    assert await snapshot(db) == before


# ---- after the deadline -------------------------------------------------------------------------------


@pytest.mark.parametrize(("reopen", "expected"), [(True, "REOPEN_PR_WITH_COMMENT"), (False, "UPSERT_PR_COMMENT")])
async def test_timed_out_challenge_can_still_be_verified(
    env: Env, db: asyncpg.Pool, reopen: bool, expected: str
) -> None:
    async with db.acquire() as conn:
        await repo_settings.put(conn, 5001, RepoSettings(reopen_on_verify=reopen))
    token = await env.gate()
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE challenges SET status = 'TIMED_OUT', resolved_at = now(), resolution = $1",
            messages.RESOLUTION_TIMED_OUT_CLOSED,
        )
    browser, csrf = await signed_in_author(env, token)
    page = await (await browser.get(env.page_url(token))).text()
    assert "deadline" in page
    assert "was closed" in page
    mark = await last_action_id(db)
    assert_html(await verify(browser, env, token, csrf), 200)
    comment, status = await actions_after(db, mark)
    assert comment["action_type"] == expected
    assert comment["payload"]["body"] == messages.verified_comment("newcomer")
    assert status["action_type"] == "SET_COMMIT_STATUS"
    [challenge] = await rows(db, "SELECT status FROM challenges")
    assert challenge["status"] == "VERIFIED"


async def test_after_the_sweeper_closes_the_pr_the_new_link_verifies_and_reopens(env: Env, db: asyncpg.Pool) -> None:
    old_token = await env.gate()
    async with db.acquire() as conn:
        await conn.execute("UPDATE challenges SET deadline_at = now() - interval '1 second'")
    assert await sweep_all(db, public_url=env.base, max_attempts=8) == 1
    [close] = await rows(db, "SELECT payload FROM bot_actions WHERE action_type = 'CLOSE_PR_WITH_COMMENT'")
    new_token = close["payload"]["body"].split(f"{env.base}/verify/")[1].split()[0]
    assert (await env.browser().get(env.page_url(old_token))).status == 404  # the sweeper rotated the link
    browser, csrf = await signed_in_author(env, new_token)
    mark = await last_action_id(db)
    assert_html(await verify(browser, env, new_token, csrf), 200)
    assert [a["action_type"] for a in await actions_after(db, mark)] == ["REOPEN_PR_WITH_COMMENT", "SET_COMMIT_STATUS"]


# ---- concurrency -----------------------------------------------------------------------------------------


async def test_concurrent_double_submit_verifies_once(env: Env, db: asyncpg.Pool) -> None:
    token = await env.gate()
    await env.gate(number=8)
    browser, csrf = await signed_in_author(env, token)
    mark = await last_action_id(db)
    first, second = await asyncio.gather(verify(browser, env, token, csrf), verify(browser, env, token, csrf))
    assert sorted([first.status, second.status]) == [200, 409]
    actions = await actions_after(db, mark)
    assert [(a["pr_number"], a["action_type"]) for a in actions] == [
        (7, "UPSERT_PR_COMMENT"), (7, "SET_COMMIT_STATUS"), (8, "UPSERT_PR_COMMENT"), (8, "SET_COMMIT_STATUS"),
    ]
    assert len(await rows(db, "SELECT * FROM contributors")) == 1


async def test_two_links_of_one_author_submitted_at_once_verify_once(env: Env, db: asyncpg.Pool) -> None:
    token_a = await env.gate()
    token_b = await env.gate(number=8)
    browser_a, csrf_a = await signed_in_author(env, token_a)
    browser_b, csrf_b = await signed_in_author(env, token_b)
    mark = await last_action_id(db)
    results = await asyncio.gather(
        verify(browser_a, env, token_a, csrf_a), verify(browser_b, env, token_b, csrf_b)
    )
    assert sorted(r.status for r in results) == [200, 409]
    assert len(await actions_after(db, mark)) == 4
    assert {r["status"] for r in await rows(db, "SELECT status FROM challenges")} == {"VERIFIED"}


# ---- sign-in ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("next_value", ["https://evil.example/x", "//evil.example", "/\\evil.example", "evil.example"])
async def test_next_pointing_elsewhere_is_ignored(env: Env, next_value: str) -> None:
    browser = env.browser()
    landed = await env.sign_in(browser, "newcomer", next_value)
    assert_html(landed, 200)
    assert str(landed.url).startswith(f"{env.base}/auth/github/callback")
    assert "signed in as <strong>@newcomer</strong>" in await landed.text()
    for hop in landed.history:
        assert "evil.example" not in hop.headers.get("Location", "")


async def test_oauth_state_must_match_the_browser(env: Env) -> None:
    browser = env.browser()
    start = await browser.get(f"{env.base}/auth/github/login", params={"next": "/verify/x"}, allow_redirects=False)
    state = URL(start.headers["Location"]).query["state"]
    callback = f"{env.base}/auth/github/callback"
    # A code obtained for someone else's state (login CSRF) is refused before it is ever redeemed.
    wrong = await browser.get(callback, params={"code": "abc", "state": state + "x"})
    assert_html(wrong, 400)
    assert "did not start in this browser" in await wrong.text()
    assert SESSION_COOKIE not in wrong.cookies
    # The state cookie was cleared: even the right state now fails.
    stale = await browser.get(callback, params={"code": "abc", "state": state})
    assert_html(stale, 400)
    # Another browser (no state cookie) cannot use it either.
    other = await env.browser().get(callback, params={"code": "abc", "state": state})
    assert_html(other, 400)
    assert not env.simulator.server.app[SIM_OAUTH].tokens  # nothing was exchanged


async def test_callback_without_code_or_with_an_error_is_400(env: Env) -> None:
    for params in ({}, {"error": "access_denied", "error_description": "The user has denied your application access."}):
        browser = env.browser()
        start = await browser.get(f"{env.base}/auth/github/login", allow_redirects=False)
        state = URL(start.headers["Location"]).query["state"]
        resp = await browser.get(f"{env.base}/auth/github/callback", params={"state": state, **params})
        assert_html(resp, 400)


async def test_used_code_is_400(env: Env) -> None:
    browser = env.browser()
    landed = await env.sign_in(browser, "newcomer", None)
    callback = landed.history[-1] if landed.history[-1].url.path == "/auth/github/callback" else landed
    code, state = callback.url.query["code"], callback.url.query["state"]
    # Replay the callback in a browser that started its own sign-in with the same state cookie value.
    replay = env.browser()
    start = await replay.get(f"{env.base}/auth/github/login", allow_redirects=False)
    new_state = URL(start.headers["Location"]).query["state"]
    resp = await replay.get(f"{env.base}/auth/github/callback", params={"code": code, "state": new_state})
    assert_html(resp, 400)
    assert "expired or was already used" in await resp.text()
    assert state != new_state


async def test_github_unreachable_at_callback_is_502(make_env: Callable[..., Awaitable[Env]]) -> None:
    dead = f"http://127.0.0.1:{unused_port()}"
    env = await make_env(GITHUB_WEB_URL=dead)
    browser = env.browser()
    start = await browser.get(f"{env.base}/auth/github/login", params={"next": "/verify/x"}, allow_redirects=False)
    assert start.headers["Location"].startswith(f"{dead}/login/oauth/authorize")
    state = URL(start.headers["Location"]).query["state"]
    resp = await browser.get(f"{env.base}/auth/github/callback", params={"code": "abc", "state": state})
    assert_html(resp, 502)
    assert "could not reach GitHub" in await resp.text()
    assert SESSION_COOKIE not in resp.cookies


async def test_github_api_unreachable_after_the_exchange_is_502(make_env: Callable[..., Awaitable[Env]]) -> None:
    env = await make_env(GITHUB_API_URL=f"http://127.0.0.1:{unused_port()}")
    landed = await env.sign_in(env.browser(), "newcomer", "/verify/x")
    assert_html(landed, 502)


async def test_github_user_endpoint_failing_is_502(env: Env) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{env.simulator.url}/_sim/faults/rules",
                               json={"path_regex": "^/user$", "status": 503, "count": 1})
        assert resp.status == 201, await resp.text()
    landed = await env.sign_in(env.browser(), "newcomer", "/verify/x")
    assert_html(landed, 502)


async def test_wrong_client_secret_is_502(make_env: Callable[..., Awaitable[Env]]) -> None:
    env = await make_env(GITHUB_CLIENT_SECRET="not-the-secret")
    landed = await env.sign_in(env.browser(), "newcomer", "/verify/x")
    assert_html(landed, 502)


async def test_sign_in_not_configured_is_a_clear_page(make_env: Callable[..., Awaitable[Env]]) -> None:
    env = await make_env(GITHUB_CLIENT_ID="")
    resp = await env.browser().get(f"{env.base}/auth/github/login", allow_redirects=False)
    assert_html(resp, 503)
    assert "not configured" in await resp.text()


async def test_secure_cookies_when_public_url_is_https(make_env: Callable[..., Awaitable[Env]]) -> None:
    env = await make_env(BACKEND_PUBLIC_URL="https://prgate.example")
    resp = await env.browser().get(f"{env.base}/auth/github/login", allow_redirects=False)
    assert resp.cookies[OAUTH_COOKIE]["secure"]
    assert URL(resp.headers["Location"]).query["redirect_uri"] == "https://prgate.example/auth/github/callback"


# ---- wrong answers are rate-limited, across replicas (docs/security.md, "Reopen after timeout, …") -------------------


async def test_wrong_answers_are_limited_per_challenge_across_replicas(
    env: Env, make_env: Callable[..., Awaitable[Env]], db: asyncpg.Pool
) -> None:
    other_replica = await make_env()
    async with db.acquire() as conn:
        await repo_settings.put(conn, 5001, RepoSettings(challenge_question="Which license does this project use?"))
        await conn.execute("UPDATE repo_settings SET challenge_answer_hash = $1 WHERE repo_id = 5001",
                           answer_hash("Apache-2.0"))
    token = await env.gate()
    browser, csrf = await signed_in_author(env, token)
    for guess in ("MIT", "GPL", "BSD"):
        assert_html(await verify(browser, env, token, csrf, answer=guess), 422)
    # A fresh session on another replica shares the challenge's count.
    elsewhere, other_csrf = await signed_in_author(other_replica, token)
    for guess in ("ISC", "MPL"):
        assert_html(await verify(elsewhere, other_replica, token, other_csrf, answer=guess), 422)
    for client, env_, form_csrf in ((browser, env, csrf), (elsewhere, other_replica, other_csrf)):
        refused = await verify(client, env_, token, form_csrf, answer="Apache-2.0")  # even the right one
        assert_html(refused, 429)
        assert "Too many wrong answers" in await refused.text()
        assert refused.headers["Retry-After"] == "900"
    [challenge] = await rows(db, "SELECT status FROM challenges")
    assert challenge["status"] == "PENDING"
    # Once the wrong answers are older than the window, the right answer verifies.
    async with db.acquire() as conn:
        await conn.execute("UPDATE verify_wrong_answers SET failed_at = now() - interval '16 minutes'")
    done = await verify(browser, env, token, csrf, answer="Apache-2.0")
    assert done.status == 200, await done.text()
    assert "You are verified" in await done.text()


async def test_wrong_answers_are_limited_per_session(env: Env, db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await repo_settings.put(conn, 5001, RepoSettings(challenge_question="Which license?"))
        await conn.execute("UPDATE repo_settings SET challenge_answer_hash = $1 WHERE repo_id = 5001",
                           answer_hash("Apache-2.0"))
    first = await env.gate(number=7)
    second = await env.gate(number=8, head_sha="e" * 40)
    browser, csrf = await signed_in_author(env, first)
    for guess in ("a", "b", "c"):
        assert_html(await verify(browser, env, first, csrf, answer=guess), 422)
    page = await (await browser.get(env.page_url(second))).text()
    csrf2 = csrf_of(page)
    for guess in ("d", "e"):
        assert_html(await verify(browser, env, second, csrf2, answer=guess), 422)
    assert_html(await verify(browser, env, second, csrf2, answer="Apache-2.0"), 429)
