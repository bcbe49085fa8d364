"""Registering prgate's GitHub App from its manifest: backend pages, the simulator's manifest flow,
the stored credentials, the signed internal endpoint and ``prgate github-app create``.

The backend listens on a port known in advance so its BACKEND_PUBLIC_URL (the manifest's
``redirect_url``) is real and a browser with a cookie jar can follow GitHub's redirect back.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import io
import json
import re
import secrets
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer, unused_port
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from yarl import URL

from backend_api.app import create_app
from backend_api.auth.session import SESSION_COOKIE
from backend_api.github.manifest import DEFAULT_EVENTS, GitHubAppCredentials, render_manifest
from backend_api.keys import SESSIONS
from backend_api.web.manifest import MANIFEST_COOKIE
from prgate import github_app_cli
from prgate.simulator import SimulatorConfig
from prgate.simulator.github.manifest import SIM_MANIFESTS
from shared_contracts import signing
from tests.conftest import ADMIN_SECRET, INTERNAL_SECRET, RECEIVER_SECRET, backend_settings
from tests.support.github_sim import Simulator

REPO_ROOT = Path(__file__).resolve().parents[2]
HOOKS_URL = "https://hooks.prgate.example"  # BOT_PUBLIC_URL: the receiver, not the backend
SETUP_CLAIMS = "/internal/v2/github-app/setup-claims"
CREDENTIALS = "/internal/v2/github-app/credentials/latest"
_FORM = re.compile(
    r'<form id=manifest-form method=post action="([^"]+)"><input type=hidden name=manifest value="([^"]+)">'
)


@dataclass
class Env:
    base: str
    client: TestClient[Any, Any]
    simulator: Simulator
    db: asyncpg.Pool
    browsers: list[aiohttp.ClientSession] = field(default_factory=list)

    def browser(self) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.browsers.append(session)
        return session

    async def open_claim(self, claim: str | None = None, secret: str = ADMIN_SECRET) -> str:
        """Register a one-time setup claim, as ``prgate github-app create`` does."""
        claim = claim or secrets.token_urlsafe(24)
        resp = await self.signed_post(SETUP_CLAIMS, {"claim": claim}, secret)
        assert resp.status == 200, await resp.text()
        return claim

    async def signed_post(self, path: str, body: Any, secret: str = ADMIN_SECRET) -> aiohttp.ClientResponse:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **signing.sign(secret, "POST", path, data)}
        return await self.client.post(path, data=data, headers=headers)

    async def start(self, browser: aiohttp.ClientSession, **query: str) -> tuple[URL, str]:
        """Open /github-app/new (under a fresh open claim unless one is given): the form's action (on
        the simulator) and the manifest it posts."""
        if "claim" not in query:
            query["claim"] = await self.open_claim()
        resp = await browser.get(f"{self.base}/github-app/new", params=query)
        text = await resp.text()
        assert resp.status == 200, text
        match = _FORM.search(text)
        assert match, text
        return URL(html.unescape(match.group(1))), html.unescape(match.group(2))

    async def confirm_on_github(self, browser: aiohttp.ClientSession, action: URL, manifest: str) -> URL:
        """Post the manifest as the browser would and confirm at once; the redirect back to prgate."""
        resp = await browser.post(action.update_query(login="app-maker"), data={"manifest": manifest},
                                  allow_redirects=False)
        assert resp.status == 302, await resp.text()
        return URL(resp.headers["Location"])

    async def signed_get(self, path_qs: str, secret: str = ADMIN_SECRET) -> aiohttp.ClientResponse:
        headers = signing.sign(secret, "GET", path_qs, b"")
        return await self.client.get(path_qs, headers=headers)


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
            **{"BACKEND_PUBLIC_URL": base, "BOT_PUBLIC_URL": HOOKS_URL, "GITHUB_WEB_URL": simulator.url,
               "GITHUB_API_URL": simulator.url, **overrides},
        )
        client = await aiohttp_client(TestServer(create_app(settings), port=port))
        env = Env(base, client, simulator, db)
        envs.append(env)
        return env

    yield make
    for env in envs:
        for browser in env.browsers:
            await browser.close()


@pytest.fixture
async def env(make_env: Callable[..., Awaitable[Env]]) -> Env:
    return await make_env()


async def stored(db: asyncpg.Pool) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return list(await conn.fetch("SELECT * FROM github_app_credentials ORDER BY app_id"))


# ---- the manifest -------------------------------------------------------------------------------------


def test_app_yml_is_the_rendered_manifest() -> None:
    on_disk = yaml.safe_load((REPO_ROOT / "app.yml").read_text())
    assert on_disk == render_manifest("https://prgate.example.com", "https://prgate.example.com/webhooks/github")


def test_manifest_leaves_out_events_github_always_sends() -> None:
    manifest = render_manifest("https://p.example/", "https://hooks.example/webhooks/github", "prgate-staging")
    assert manifest["name"] == "prgate-staging"
    assert manifest["hook_attributes"]["url"] == "https://hooks.example/webhooks/github"
    assert manifest["redirect_url"] == "https://p.example/github-app/callback"
    assert manifest["callback_urls"] == ["https://p.example/auth/github/callback"]
    assert manifest["default_permissions"]["members"] == "read"
    assert set(manifest["default_events"]) == set(DEFAULT_EVENTS) == {"pull_request", "issue_comment", "push"}
    assert not {"installation", "installation_repositories"} & set(manifest["default_events"])


# ---- the whole flow -----------------------------------------------------------------------------------


async def test_manifest_flow_creates_and_stores_the_app(env: Env, db: asyncpg.Pool) -> None:
    browser = env.browser()
    claim = await env.open_claim()
    page = await browser.get(f"{env.base}/github-app/new", params={"claim": claim})
    csp = page.headers["Content-Security-Policy"]
    assert f"form-action {env.simulator.url}" in csp
    assert "script-src 'nonce-" in csp
    action, manifest_json = await env.start(browser, claim=claim)
    assert str(action.with_query(None)) == f"{env.simulator.url}/settings/apps/new"
    assert len(action.query["state"]) >= 32
    manifest = json.loads(manifest_json)
    # The receiver's public URL by default: the backend answers 404 at {BACKEND_PUBLIC_URL}/webhooks/github.
    assert manifest == render_manifest(env.base, f"{HOOKS_URL}/webhooks/github")
    assert (await browser.get(f"{env.base}/webhooks/github")).status == 404

    back = await env.confirm_on_github(browser, action, manifest_json)
    assert str(back.with_query(None)) == f"{env.base}/github-app/callback"
    assert back.query["state"] == action.query["state"]

    done = await browser.get(back)
    text = await done.text()
    assert done.status == 200, text
    [row] = await stored(db)
    assert f"<dd>{row['app_id']}</dd>" in text
    assert row["slug"] in text
    assert row["html_url"] in text
    assert row["owner_login"] == "app-maker"
    for secret in (row["client_secret"], row["webhook_secret"], row["private_key_pem"]):
        assert secret
        assert secret not in text
    assert MANIFEST_COOKIE not in {c.key for c in browser.cookie_jar}  # state spent

    # What GitHub's simulator holds for the App matches what the backend stored.
    sim_app = env.simulator.server.app[SIM_MANIFESTS].apps[row["app_id"]]
    assert (sim_app.slug, sim_app.client_id) == (row["slug"], row["client_id"])

    # The key is a valid RSA key and the simulator accepts the new App's JWT.
    key = serialization.load_pem_private_key(row["private_key_pem"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert len(row["private_key_pem"]) > 1500
    env.simulator.state.add_installation(3003, "new-org")
    now = int(time.time())
    token = jwt.encode({"iat": now - 60, "exp": now + 500, "iss": str(row["app_id"])}, key, algorithm="RS256")
    async with aiohttp.ClientSession() as gh:
        minted = await gh.post(f"{env.simulator.url}/app/installations/3003/access_tokens",
                               headers={"Authorization": f"Bearer {token}"})
        assert minted.status == 201, await minted.text()
        # The original App's key is still the only one accepted for its own id.
        forged = jwt.encode({"iat": now - 60, "exp": now + 500, "iss": "424242"}, key, algorithm="RS256")
        refused = await gh.post(f"{env.simulator.url}/app/installations/3003/access_tokens",
                                headers={"Authorization": f"Bearer {forged}"})
        assert refused.status == 401

    # The CLI's endpoint: the admin key only, by claim, once.
    unsigned = await env.client.get(f"{CREDENTIALS}?claim={claim}")
    assert unsigned.status == 401
    for other_key in (RECEIVER_SECRET, INTERNAL_SECRET):  # the receiver's and the workers' keys
        refused = await env.signed_get(f"{CREDENTIALS}?claim={claim}", other_key)
        assert refused.status == 403
        assert (await refused.json())["error"] == "forbidden"
    no_claim = await env.signed_get(CREDENTIALS)
    assert no_claim.status == 400
    assert (await no_claim.json())["error"] == "bad_request"
    other = await env.signed_get(f"{CREDENTIALS}?claim=" + "d" * 32)
    assert other.status == 404
    assert len(await stored(db)) == 1  # nothing refused above touched the row
    resp = await env.signed_get(f"{CREDENTIALS}?claim={claim}")
    assert resp.status == 200
    creds = GitHubAppCredentials.model_validate(await resp.json())
    assert creds.app_id == row["app_id"]
    assert creds.private_key_pem == row["private_key_pem"]
    # Handed out once: the database no longer holds the App's secrets.
    assert await stored(db) == []
    again = await env.signed_get(f"{CREDENTIALS}?claim={claim}")
    assert again.status == 404


async def test_org_registration_posts_to_the_org_page(env: Env, db: asyncpg.Pool) -> None:
    browser = env.browser()
    action, manifest_json = await env.start(browser, org="octo-org", webhook_url="https://hooks.example/webhooks/github")
    assert action.path == "/organizations/octo-org/settings/apps/new"
    assert json.loads(manifest_json)["hook_attributes"]["url"] == "https://hooks.example/webhooks/github"
    back = await env.confirm_on_github(browser, action, manifest_json)
    assert (await browser.get(back)).status == 200
    [row] = await stored(db)
    assert row["owner_login"] == "octo-org"
    assert row["claim_hash"] is not None

    claim = await env.open_claim()
    bad = await browser.get(f"{env.base}/github-app/new", params={"org": "-nope-", "claim": claim})
    assert bad.status == 400
    bad_hook = await browser.get(f"{env.base}/github-app/new",
                                 params={"webhook_url": "javascript:alert(1)", "claim": claim})
    assert bad_hook.status == 400


async def test_callback_refuses_a_foreign_or_missing_state(env: Env, db: asyncpg.Pool) -> None:
    browser = env.browser()
    action, manifest_json = await env.start(browser)
    back = await env.confirm_on_github(browser, action, manifest_json)

    # The right code with another state: refused before the code is spent.
    wrong = await browser.get(back.update_query(state="not-the-state"))
    assert wrong.status == 400
    assert "did not start in this browser" in await wrong.text()
    # Another browser (no state cookie) with the exact URL: refused as well.
    stranger = await env.browser().get(back)
    assert stranger.status == 400
    assert await stored(db) == []
    assert back.query["code"] in env.simulator.server.app[SIM_MANIFESTS].codes  # still unspent


async def test_a_code_converts_once(env: Env, db: asyncpg.Pool) -> None:
    browser = env.browser()
    action, manifest_json = await env.start(browser)
    back = await env.confirm_on_github(browser, action, manifest_json)
    assert (await browser.get(back)).status == 200

    # Replayed with a fresh state of this browser: GitHub no longer knows the code.
    action2, _ = await env.start(browser)
    replay = await browser.get(back.update_query(state=action2.query["state"]))
    text = await replay.text()
    assert replay.status == 400, text
    assert "already used" in text
    assert len(await stored(db)) == 1


# ---- who may register an App --------------------------------------------------------------------------


async def test_a_stranger_cannot_register_an_app_before_one_is_configured(env: Env, db: asyncpg.Pool) -> None:
    """GITHUB_APP_ID unset: only the holder of a one-time setup claim opened with an admin key may start."""
    stranger = env.browser()
    for params in ({}, {"claim": secrets.token_urlsafe(24)}):  # none, or one nobody registered
        resp = await stranger.get(f"{env.base}/github-app/new", params=params)
        assert resp.status == 403
        assert "prgate github-app create" in await resp.text()
        assert MANIFEST_COOKIE not in {c.key for c in stranger.cookie_jar}

    # Only the admin key opens a claim: the receiver's and the workers' keys are refused.
    for key in (RECEIVER_SECRET, INTERNAL_SECRET):
        refused = await env.signed_post(SETUP_CLAIMS, {"claim": secrets.token_urlsafe(24)}, key)
        assert refused.status == 403
        assert (await refused.json())["error"] == "forbidden"
    malformed = await env.signed_post(SETUP_CLAIMS, {"claim": "short"})
    assert malformed.status == 422

    # An expired claim is closed.
    expired = await env.open_claim()
    async with db.acquire() as conn:
        await conn.execute("UPDATE github_app_setup_claims SET expires_at = now() - interval '1 second'")
    assert (await stranger.get(f"{env.base}/github-app/new", params={"claim": expired})).status == 403

    # A claim works once: after its App is stored, the same URL is refused.
    claim = await env.open_claim()
    browser = env.browser()
    action, manifest_json = await env.start(browser, claim=claim)
    assert (await browser.get(await env.confirm_on_github(browser, action, manifest_json))).status == 200
    assert (await env.browser().get(f"{env.base}/github-app/new", params={"claim": claim})).status == 403
    assert len(await stored(db)) == 1


async def test_two_browsers_on_one_claim_store_one_app(env: Env, db: asyncpg.Pool) -> None:
    claim = await env.open_claim()
    first, second = env.browser(), env.browser()
    action1, manifest1 = await env.start(first, claim=claim)
    action2, manifest2 = await env.start(second, claim=claim)
    assert (await first.get(await env.confirm_on_github(first, action1, manifest1))).status == 200
    late = await second.get(await env.confirm_on_github(second, action2, manifest2))
    assert late.status == 400
    assert "already used" in await late.text()
    assert len(await stored(db)) == 1


async def test_only_operators_may_register_once_an_app_is_configured(
    make_env: Callable[..., Awaitable[Env]],
) -> None:
    env = await make_env(GITHUB_APP_ID="424242", PRGATE_OPERATORS="boss")
    codec = env.client.app[SESSIONS]

    anonymous = await env.browser().get(f"{env.base}/github-app/new")
    assert anonymous.status == 403
    assert "GITHUB_APP_ID is set" in await anonymous.text()
    callback = await env.browser().get(f"{env.base}/github-app/callback", params={"code": "x", "state": "y"})
    assert callback.status == 403

    outsider = env.browser()
    _, cookie = codec.issue(1, "someone", time.time())
    outsider.cookie_jar.update_cookies({SESSION_COOKIE: cookie}, URL(env.base))
    assert (await outsider.get(f"{env.base}/github-app/new")).status == 403

    operator = env.browser()
    _, cookie = codec.issue(2, "Boss", time.time())
    operator.cookie_jar.update_cookies({SESSION_COOKIE: cookie}, URL(env.base))
    action, manifest_json = await env.start(operator)
    back = await env.confirm_on_github(operator, action, manifest_json)
    assert (await operator.get(back)).status == 200


# ---- the simulator's side -----------------------------------------------------------------------------


async def test_simulator_validates_manifests_and_shows_a_confirmation(simulator: Simulator) -> None:
    async with aiohttp.ClientSession() as gh:
        for raw, reason in (("", "No manifest"), ("[1]", "JSON object"), ("{", "not valid JSON"),
                            ('{"url": "https://x"}', "redirect_url")):
            resp = await gh.post(f"{simulator.url}/settings/apps/new", data={"manifest": raw})
            assert resp.status == 422
            assert reason in await resp.text()
        manifest = json.dumps(render_manifest("http://prgate.test", "http://prgate.test/webhooks/github"))
        page = await gh.post(f"{simulator.url}/settings/apps/new?state=s1", data={"manifest": manifest},
                             allow_redirects=False)
        text = await page.text()
        assert page.status == 200
        assert "pull_requests: write" in text
        assert "name=confirm value=1" in text
        confirmed = await gh.post(f"{simulator.url}/settings/apps/new",
                                  data={"manifest": manifest, "state": "s1", "confirm": "1", "login": "octocat"},
                                  allow_redirects=False)
        assert confirmed.status == 302
        code = URL(confirmed.headers["Location"]).query["code"]
        first = await gh.post(f"{simulator.url}/app-manifests/{code}/conversions")
        app = await first.json()
        assert first.status == 201
        assert app["owner"]["login"] == "octocat"
        assert app["events"] == ["pull_request", "issue_comment", "push"]
        assert app["pem"].startswith("-----BEGIN RSA PRIVATE KEY-----")
        assert app["html_url"].endswith(f"/apps/{app['slug']}")
        assert (await gh.post(f"{simulator.url}/app-manifests/{code}/conversions")).status == 404
        assert (await gh.post(f"{simulator.url}/app-manifests/unknown/conversions")).status == 404


async def test_simulator_codes_expire_after_an_hour(simulator: Simulator) -> None:
    store = simulator.server.app[SIM_MANIFESTS]
    code = store.grant({"url": "https://x", "redirect_url": "https://x/cb"}, simulator.state.ensure_user("a"))
    store.codes[code] = store.codes[code].__class__(
        store.codes[code].manifest, store.codes[code].owner, simulator.state.now() - 1
    )
    async with aiohttp.ClientSession() as gh:
        assert (await gh.post(f"{simulator.url}/app-manifests/{code}/conversions")).status == 404


# ---- the CLI --------------------------------------------------------------------------------------------


def _creds(**overrides: Any) -> GitHubAppCredentials:
    data: dict[str, Any] = {
        "app_id": 77, "slug": "prgate-x", "client_id": "Iv1.abc", "client_secret": "cs-secret",
        "webhook_secret": "wh-secret",
        "private_key_pem": "-----BEGIN RSA PRIVATE KEY-----\nAAA\n-----END RSA PRIVATE KEY-----",
        "owner_login": "octo", "html_url": "https://github.com/apps/prgate-x",
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    return GitHubAppCredentials.model_validate({**data, **overrides})


def test_cli_writes_the_env_file_and_a_private_key_file(tmp_path: Path) -> None:
    output = tmp_path / "conf" / ".env.github-app"
    env_path, key_path = github_app_cli.write_credentials(
        _creds(), output, now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert key_path == tmp_path / "conf" / "github-app.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    assert key_path.read_text().endswith("-----END RSA PRIVATE KEY-----\n")
    values = dict(
        line.split("=", 1) for line in env_path.read_text().splitlines() if line and not line.startswith("#")
    )
    assert values == {
        "GITHUB_APP_ID": "77", "GITHUB_CLIENT_ID": "Iv1.abc", "GITHUB_CLIENT_SECRET": "cs-secret",
        "GITHUB_WEBHOOK_SECRET": "wh-secret", "GITHUB_PRIVATE_KEY_PATH": str(key_path),
    }
    assert "BEGIN" not in env_path.read_text()  # the key lives in its own file only

    with pytest.raises(github_app_cli.CliError, match="--force"):
        github_app_cli.write_credentials(_creds(app_id=78), output)
    github_app_cli.write_credentials(_creds(app_id=78), output, force=True)
    assert "GITHUB_APP_ID=78" in env_path.read_text()
    assert sorted(p.name for p in output.parent.iterdir()) == [".env.github-app", "github-app.pem"]  # no temp files


def test_cli_url_carries_claim_org_and_webhook() -> None:
    url = URL(github_app_cli.new_app_url("https://p.example/", "k" * 32, "octo-org", "https://h.example/webhooks/github"))
    assert str(url.with_query(None)) == "https://p.example/github-app/new"
    assert dict(url.query) == {"claim": "k" * 32, "org": "octo-org", "webhook_url": "https://h.example/webhooks/github"}


async def test_cli_create_end_to_end(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRGATE_ADMIN_SECRETS", ADMIN_SECRET)
    monkeypatch.setenv("BACKEND_URL", env.base)
    monkeypatch.delenv("BACKEND_PUBLIC_URL", raising=False)
    monkeypatch.setattr(github_app_cli, "POLL_INTERVAL_SECONDS", 0.05)
    args = argparse.Namespace(
        org=None, public_url=None, webhook_url=None, backend_url=None, output=str(tmp_path / ".env.github-app"),
        key_output=None, timeout=20.0, force=False,
    )
    out = io.StringIO()
    task = asyncio.create_task(github_app_cli._create(args, out))
    for _ in range(200):
        if "/github-app/new?" in out.getvalue():
            break
        await asyncio.sleep(0.02)
    url = next(word for word in out.getvalue().split() if "/github-app/new?" in word)
    assert url.startswith(f"{env.base}/github-app/new?claim=")

    # Someone else registers an App meanwhile: the CLI must not pick it up.
    other = env.browser()
    action, manifest_json = await env.start(other)
    assert (await other.get(await env.confirm_on_github(other, action, manifest_json))).status == 200

    browser = env.browser()
    resp = await browser.get(url)
    match = _FORM.search(await resp.text())
    assert match
    back = await env.confirm_on_github(browser, URL(html.unescape(match.group(1))), html.unescape(match.group(2)))
    assert (await browser.get(back)).status == 200
    assert await asyncio.wait_for(task, 10) == 0

    # The CLI took its own App (deleted from the database as it was handed out), not the other one.
    [others] = await stored(env.db)
    text = (tmp_path / ".env.github-app").read_text()
    values = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    mine = env.simulator.server.app[SIM_MANIFESTS].apps[int(values["GITHUB_APP_ID"])]
    assert mine.id != others["app_id"]
    key = serialization.load_pem_private_key((tmp_path / "github-app.pem").read_bytes(), password=None)
    assert key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode().strip() == mine.public_key_pem.strip()
    assert values["GITHUB_CLIENT_SECRET"] not in out.getvalue()  # secrets are never printed
    assert "installations/new" in out.getvalue()


async def test_cli_gives_up_after_its_timeout_and_on_a_wrong_secret(env: Env) -> None:
    async with aiohttp.ClientSession() as session:
        for wrong in ("wrong-secret", INTERNAL_SECRET):  # unknown (401), or another component's (403)
            with pytest.raises(github_app_cli.CliError, match="PRGATE_ADMIN_SECRETS"):
                await github_app_cli.fetch_credentials(session, env.base, wrong, "e" * 32)
            with pytest.raises(github_app_cli.CliError, match="PRGATE_ADMIN_SECRETS"):
                await github_app_cli.register_claim(session, env.base, wrong, "e" * 32)
        clock = iter(range(100))
        poller = github_app_cli.Poller(
            lambda: github_app_cli.fetch_credentials(session, env.base, ADMIN_SECRET, "e" * 32),
            timeout=3, out=io.StringIO(), clock=lambda: float(next(clock)), sleep=lambda _s: asyncio.sleep(0),
        )
        with pytest.raises(github_app_cli.CliError, match="within 3 s"):
            await poller.run()


async def test_signing_in_first_keeps_the_claim(make_env: Callable[..., Awaitable[Env]]) -> None:
    """An App is configured, so only an operator may register another: the browser signs in first, and
    lands back on the very URL the CLI printed, claim included (it used to come back without it)."""
    env = await make_env(GITHUB_APP_ID="424242", PRGATE_OPERATORS="boss",
                         GITHUB_CLIENT_ID=SimulatorConfig.model_fields["oauth_client_id"].default,
                         GITHUB_CLIENT_SECRET=SimulatorConfig.model_fields["oauth_client_secret"].default)
    claim = await env.open_claim()
    printed = github_app_cli.new_app_url(env.base, claim)
    browser = env.browser()
    refused = await browser.get(printed)
    assert refused.status == 403
    sign_in = re.search(r'href="(/auth/github/login\?next=[^"]+)"', await refused.text())
    assert sign_in, await refused.text()
    start = await browser.get(f"{env.base}{html.unescape(sign_in.group(1))}", allow_redirects=False)
    authorize = URL(start.headers["Location"])
    landed = await browser.get(authorize.update_query(login="boss"))
    assert str(landed.url) == printed
    assert landed.status == 200, await landed.text()
    match = _FORM.search(await landed.text())
    assert match
    back = await env.confirm_on_github(browser, URL(html.unescape(match.group(1))), html.unescape(match.group(2)))
    assert (await browser.get(back)).status == 200
    resp = await env.signed_get(f"{CREDENTIALS}?claim={claim}")  # what the waiting CLI polls
    assert resp.status == 200, await resp.text()


async def test_cli_checks_the_public_url_before_printing_it(env: Env) -> None:
    async with aiohttp.ClientSession() as session:
        await github_app_cli.check_public_url(session, env.base)
        with pytest.raises(github_app_cli.CliError, match="BACKEND_PUBLIC_URL"):
            await github_app_cli.check_public_url(session, f"http://127.0.0.1:{unused_port()}")
        with pytest.raises(github_app_cli.CliError, match="not prgate's API document"):
            await github_app_cli.check_public_url(session, env.simulator.url)  # something else answers there
