"""'Sign in with Bitbucket' on a Bitbucket challenge's page: the real backend app, the simulator server
(Bitbucket under /bitbucket: its OAuth consumer and ``GET /2.0/user``) and a browser with a cookie jar.

The challenges come from the Bitbucket gate use case (``tests/support/bitbucket_gate.py``).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg
import pytest
from yarl import URL

from backend_api.auth.session import OAUTH_COOKIE, SESSION_COOKIE, SessionCodec, csrf_scope_for_challenge
from backend_api.keys import SESSIONS
from shared_contracts.bitbucket import BitbucketAccount
from shared_contracts.events import IngestResponse
from tests.integration.test_verification import (  # the GitHub page tests' environment, reused
    Env,
    actions_after,
    assert_html,
    csrf_of,
    last_action_id,
    make_env,
    rows,
    signed_in_author,
)
from tests.support import bitbucket_gate as bb
from tests.support.bitbucket_gate import (
    AUTHOR,
    BB_CLIENT_ID,
    HEAD,
    MALLORY,
    add_users,
    bb_settings,
    bitbucket,
    connect_workspace,
)
from tests.support.github_sim import Simulator

__all__ = ["make_env"]  # a fixture this module uses

async def open_bitbucket_pr(env: Env, author: BitbucketAccount = AUTHOR, pr_id: int = 4) -> IngestResponse:
    return await bb.open_bitbucket_pr(env.db, env.base, author, pr_id)


async def gate_bitbucket_pr(env: Env, author: BitbucketAccount = AUTHOR, pr_id: int = 4) -> str:
    return await bb.gate_bitbucket_pr(env.db, env.base, author, pr_id)


async def bitbucket_sign_in(env: Env, browser: aiohttp.ClientSession, who: str, next_path: str | None,
                            ) -> aiohttp.ClientResponse:
    """Start at /auth/bitbucket/login, pick ``who`` on the simulator's authorize page, follow every redirect."""
    params = {"next": next_path} if next_path is not None else {}
    start = await browser.get(f"{env.base}/auth/bitbucket/login", params=params, allow_redirects=False)
    assert start.status == 302, await start.text()
    authorize = URL(start.headers["Location"])
    assert str(authorize.with_query(None)) == f"{env.simulator.url}/bitbucket/site/oauth2/authorize"
    assert authorize.query["client_id"] == BB_CLIENT_ID
    assert authorize.query["redirect_uri"] == f"{env.base}/auth/bitbucket/callback"
    assert authorize.query["response_type"] == "code"
    return await browser.get(authorize.update_query(user=who))


@pytest.fixture
async def bb_env(make_env: Callable[..., Awaitable[Env]], simulator: Simulator, db: asyncpg.Pool) -> Env:
    await connect_workspace(db)
    add_users(simulator, AUTHOR, MALLORY)
    return await make_env(**bb_settings(simulator))


def challenge_csrf(env: Env, cookie_jar: aiohttp.abc.AbstractCookieJar, challenge_id: int) -> str:
    """The form token of whoever is signed in in this jar (the refusal pages show no form to copy it from)."""
    codec: SessionCodec = env.client.app[SESSIONS]
    cookie = next(c.value for c in cookie_jar if c.key == SESSION_COOKIE)
    session = codec.read(cookie, time.time())
    assert session is not None
    return codec.csrf_token(session, csrf_scope_for_challenge(challenge_id))


# ---- the happy path ----------------------------------------------------------------------------------


async def test_the_author_signs_in_with_bitbucket_and_verifies(bb_env: Env, db: asyncpg.Pool) -> None:
    env = bb_env
    token = await gate_bitbucket_pr(env)
    browser = env.browser()

    first = await browser.get(env.page_url(token))
    assert_html(first, 200)
    page = await first.text()
    assert "Sign in with Bitbucket" in page
    assert "Sign in with GitHub" not in page
    assert f'href="{env.simulator.url}/bitbucket/acme/widgets/pull-requests/4"' in page  # BITBUCKET_WEB_URL
    href = re.search(r'<a class=button href="([^"]+)">Sign in with Bitbucket', page)
    assert href is not None
    assert URL(href.group(1).replace("&amp;", "&")).path == "/auth/bitbucket/login"

    signed_in = await bitbucket_sign_in(env, browser, "newcomer", f"/verify/{token}")
    assert str(signed_in.url) == env.page_url(token)  # back on the page, through the callback
    assert signed_in.status == 200, await signed_in.text()
    assert [c.key for c in browser.cookie_jar if c.key == OAUTH_COOKIE] == []  # the state cookie is spent
    form_page = await signed_in.text()
    assert "Signed in as <strong>@newcomer</strong>" in form_page
    before = await last_action_id(db)

    done = await browser.post(env.page_url(token), data={"csrf": csrf_of(form_page), "accept": "yes"},
                              allow_redirects=False)
    assert_html(done, 200)
    assert "You are verified" in await done.text()
    assert "prgate workspace" in await done.text()

    [challenge] = await rows(db, "SELECT * FROM challenges")
    assert (challenge["status"], challenge["provider"]) == ("VERIFIED", "bitbucket")
    assert challenge["resolution"] == "verified by @newcomer"
    [account] = await rows(db, "SELECT user_id FROM bitbucket_accounts WHERE account_id = '557058:author'")
    assert challenge["author_id"] == account["user_id"]  # the webhook's author and the signed-in account: one id
    [contributor] = await rows(db, "SELECT * FROM contributors")
    assert (contributor["installation_id"], contributor["github_user_id"]) == (
        challenge["installation_id"], account["user_id"],
    )  # remembered per workspace: the tenant id is the workspace's
    actions = await actions_after(db, before)
    assert [(a["action_type"], a["provider"]) for a in actions] == [
        ("UPSERT_PR_COMMENT", "bitbucket"), ("SET_COMMIT_STATUS", "bitbucket"),
    ]
    status = actions[1]["payload"]
    status = status if isinstance(status, dict) else json.loads(status)
    assert (status["sha"], status["state"]) == (HEAD, "success")  # the worker writes it as SUCCESSFUL
    assert status["target_url"] == env.page_url(token)
    assert {a["repo_full_name"] for a in actions} == {"acme/widgets"}

    # Signing out of a Bitbucket session works as for GitHub's: the page reads signed out again.
    logout_csrf = re.search(r'action="/auth/logout"><input type=hidden name=csrf value="([^"]+)"', form_page)
    assert logout_csrf is not None
    out = await browser.post(f"{env.base}/auth/logout", data={"csrf": logout_csrf.group(1), "next": "/"},
                             allow_redirects=False)
    assert out.status == 303
    assert [c for c in browser.cookie_jar if c.key == SESSION_COOKIE and c.value] == []


async def test_a_verified_author_is_remembered_for_the_workspace(bb_env: Env, db: asyncpg.Pool) -> None:
    env = bb_env
    token = await gate_bitbucket_pr(env)
    browser = env.browser()
    page = await bitbucket_sign_in(env, browser, "557058:author", f"/verify/{token}")
    done = await browser.post(env.page_url(token), data={"csrf": csrf_of(await page.text()), "accept": "yes"})
    assert done.status == 200
    later = await open_bitbucket_pr(env, pr_id=5)
    assert later.decision is not None
    assert later.decision.value == "VERIFIED_NOOP"
    # Somebody else's first PR in the same workspace is still gated.
    assert await gate_bitbucket_pr(env, MALLORY, pr_id=6)


# ---- who may verify ----------------------------------------------------------------------------------


async def test_another_bitbucket_user_is_refused(bb_env: Env, db: asyncpg.Pool) -> None:
    env = bb_env
    token = await gate_bitbucket_pr(env)
    browser = env.browser()
    page = await bitbucket_sign_in(env, browser, "mallory", f"/verify/{token}")
    assert_html(page, 403)
    text = await page.text()
    assert "Not your pull request" in text
    assert "signed in as @mallory" in text
    assert "sign in to Bitbucket with that account" in text

    [challenge] = await rows(db, "SELECT * FROM challenges")
    before = await last_action_id(db)
    posted = await browser.post(env.page_url(token), data={
        "csrf": challenge_csrf(env, browser.cookie_jar, challenge["challenge_id"]), "accept": "yes"})
    assert_html(posted, 403)
    assert (await rows(db, "SELECT status FROM challenges"))[0]["status"] == "PENDING"
    assert await actions_after(db, before) == []
    assert await rows(db, "SELECT * FROM contributors") == []


async def test_a_github_session_never_verifies_a_bitbucket_challenge(bb_env: Env, db: asyncpg.Pool) -> None:
    env = bb_env
    token = await gate_bitbucket_pr(env)
    browser = env.browser()
    # GitHub's "newcomer" (same login as the Bitbucket author) signs in with GitHub.
    page = await env.sign_in(browser, "newcomer", f"/verify/{token}")
    assert_html(page, 403)
    text = await page.text()
    assert "Sign in with Bitbucket" in text
    assert "You are signed in with GitHub as @newcomer, but this pull request is on Bitbucket" in text

    [challenge] = await rows(db, "SELECT * FROM challenges")
    before = await last_action_id(db)
    posted = await browser.post(env.page_url(token), data={
        "csrf": challenge_csrf(env, browser.cookie_jar, challenge["challenge_id"]), "accept": "yes"})
    assert_html(posted, 403)
    assert (await rows(db, "SELECT status FROM challenges"))[0]["status"] == "PENDING"
    assert await actions_after(db, before) == []

    # Signing in with Bitbucket as the author replaces the session, and then it verifies.
    again = await bitbucket_sign_in(env, browser, "newcomer", f"/verify/{token}")
    assert again.status == 200
    done = await browser.post(env.page_url(token), data={"csrf": csrf_of(await again.text()), "accept": "yes"})
    assert done.status == 200


async def test_a_bitbucket_session_never_verifies_a_github_challenge(bb_env: Env, db: asyncpg.Pool) -> None:
    env = bb_env
    from tests.support.ingest import send_installation
    from tests.support.payloads import installation_payload

    await send_installation(env.backend, "installation",
                            installation_payload("created", repos=[(5001, "octo-org/widgets")]))
    token = await env.gate()
    browser = env.browser()
    page = await bitbucket_sign_in(env, browser, "newcomer", f"/verify/{token}")
    assert_html(page, 403)
    text = await page.text()
    assert "You are signed in with Bitbucket as @newcomer, but this pull request is on GitHub" in text
    assert "Sign in with GitHub" in text

    [challenge] = await rows(db, "SELECT * FROM challenges")
    before = await last_action_id(db)
    posted = await browser.post(env.page_url(token), data={
        "csrf": challenge_csrf(env, browser.cookie_jar, challenge["challenge_id"]), "accept": "yes"})
    assert_html(posted, 403)
    assert (await rows(db, "SELECT status FROM challenges"))[0]["status"] == "PENDING"
    assert await actions_after(db, before) == []

    # The GitHub author still verifies through GitHub's sign-in.
    github_browser, csrf = await signed_in_author(env, token)
    done = await github_browser.post(env.page_url(token), data={"csrf": csrf, "accept": "yes"})
    assert done.status == 200


async def test_a_bitbucket_session_is_signed_out_on_the_operator_pages(bb_env: Env) -> None:
    env = bb_env
    browser = env.browser()
    await bitbucket_sign_in(env, browser, "newcomer", None)
    # The owner API reads it (a Bitbucket account may be admin of a Bitbucket repository,
    # tests/integration/test_bitbucket_owner.py); the operator dashboard, GitHub's, does not.
    owner = await browser.get(f"{env.base}/api/v1/session")
    assert owner.status == 200
    assert ((await owner.json())["login"], (await owner.json())["provider"]) == ("newcomer", "bitbucket")
    dashboard = await browser.get(f"{env.base}/dashboard")
    assert dashboard.status == 401
    metrics = await (await browser.get(f"{env.base}/metrics")).text()
    assert 'backend_sessions_ignored_total{provider="bitbucket"} 1.0' in metrics
    assert 'backend_sign_ins_total{outcome="signed_in",provider="bitbucket"} 1.0' in metrics


# ---- the callback's refusals -------------------------------------------------------------------------


async def test_a_replayed_or_foreign_callback_is_refused(bb_env: Env, db: asyncpg.Pool) -> None:
    env = bb_env
    token = await gate_bitbucket_pr(env)
    browser = env.browser()
    start = await browser.get(f"{env.base}/auth/bitbucket/login", params={"next": f"/verify/{token}"},
                              allow_redirects=False)
    granted = await browser.get(URL(start.headers["Location"]).update_query(user="newcomer"), allow_redirects=False)
    callback = granted.headers["Location"]
    assert URL(callback).path == "/auth/bitbucket/callback"

    other = env.browser()  # the code started in another browser: no state cookie here
    foreign = await other.get(callback, allow_redirects=False)
    assert_html(foreign, 400)
    assert "did not start in this browser" in await foreign.text()

    first = await browser.get(callback, allow_redirects=False)
    assert first.status == 302
    replay = await browser.get(callback, allow_redirects=False)  # the state cookie was cleared
    assert_html(replay, 400)

    # A fresh state with a code Bitbucket already redeemed: Bitbucket refuses it, a 400 page.
    fresh = await browser.get(f"{env.base}/auth/bitbucket/login", allow_redirects=False)
    state = URL(fresh.headers["Location"]).query["state"]
    used = await browser.get(URL(callback).update_query(state=state), allow_redirects=False)
    assert_html(used, 400)
    assert "expired or was already used" in await used.text()
    denied = await browser.get(f"{env.base}/auth/bitbucket/callback", params={"error": "access_denied"})
    assert_html(denied, 400)
    assert (await rows(db, "SELECT status FROM challenges"))[0]["status"] == "PENDING"


async def test_an_account_contradicting_the_stored_one_is_a_409_and_signs_nobody_in(
    bb_env: Env, simulator: Simulator, db: asyncpg.Pool
) -> None:
    """Bitbucket answering `/2.0/user` with the author's account_id under another UUID: refused, nothing written."""
    env = bb_env
    token = await gate_bitbucket_pr(env)
    before = await rows(db, "SELECT account_uuid, account_id, nickname FROM bitbucket_accounts ORDER BY 1")
    bitbucket(simulator).add_user(AUTHOR.account_id or "", uuid=MALLORY.uuid, nickname="newcomer")
    browser = env.browser()
    page = await bitbucket_sign_in(env, browser, "newcomer", f"/verify/{token}")
    assert_html(page, 409)
    assert "Account conflict" in await page.text()
    assert SESSION_COOKIE not in {c.key for c in browser.cookie_jar}
    assert await rows(db, "SELECT account_uuid, account_id, nickname FROM bitbucket_accounts ORDER BY 1") == before
    assert (await rows(db, "SELECT status FROM challenges"))[0]["status"] == "PENDING"
    metrics = await (await browser.get(f"{env.base}/metrics")).text()
    assert 'backend_sign_ins_total{outcome="account_conflict",provider="bitbucket"} 1.0' in metrics


async def test_bitbucket_refusing_our_consumer_is_a_502(
    make_env: Callable[..., Awaitable[Env]], simulator: Simulator, db: asyncpg.Pool
) -> None:
    await connect_workspace(db)
    bitbucket(simulator).add_user("557058:author", uuid=AUTHOR.uuid, nickname="newcomer")
    env = await make_env(**bb_settings(simulator, BITBUCKET_OAUTH_CLIENT_SECRET="not-the-secret"))
    page = await bitbucket_sign_in(env, env.browser(), "newcomer", None)
    assert_html(page, 502)
    assert "could not reach Bitbucket" in await page.text()
    assert await rows(db, "SELECT * FROM bitbucket_accounts") == []


# ---- not configured ------------------------------------------------------------------------------------


async def test_without_an_oauth_consumer_the_page_says_so(
    make_env: Callable[..., Awaitable[Env]], simulator: Simulator, db: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await connect_workspace(db)
    caplog.set_level(logging.WARNING, logger="backend_api.app")
    env = await make_env(**bb_settings(simulator, BITBUCKET_OAUTH_CLIENT_ID="", BITBUCKET_OAUTH_CLIENT_SECRET=""))
    started = [r.getMessage() for r in caplog.records if r.name == "backend_api.app"]
    assert started == [
        "1 Bitbucket workspace(s) connected but BITBUCKET_OAUTH_CLIENT_ID/SECRET are not set: their authors "
        "cannot sign in to verify (docs/verification.md)"
    ]
    token = await gate_bitbucket_pr(env)
    browser = env.browser()
    page = await browser.get(env.page_url(token))
    assert_html(page, 200)
    text = await page.text()
    assert "Bitbucket sign-in is not configured on this prgate" in text
    assert "/auth/bitbucket/login" not in text
    login = await browser.get(f"{env.base}/auth/bitbucket/login", params={"next": f"/verify/{token}"})
    assert_html(login, 503)
    assert "BITBUCKET_OAUTH_CLIENT_ID/SECRET" in await login.text()
    metrics = await (await browser.get(f"{env.base}/metrics")).text()
    assert 'backend_sign_ins_total{outcome="not_configured",provider="bitbucket"} 2.0' in metrics


async def test_no_start_up_warning_without_a_connected_workspace(
    make_env: Callable[..., Awaitable[Env]], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="backend_api.app")
    await make_env()
    assert [r for r in caplog.records if "Bitbucket" in r.getMessage()] == []
