"""Register prgate's GitHub App from its manifest (docs/github-app.md).

``GET /github-app/new?org=&webhook_url=&claim=`` renders a page whose form posts the manifest
(:func:`backend_api.github.manifest.render_manifest`) to ``{GITHUB_WEB_URL}/settings/apps/new``
(or ``/organizations/{org}/settings/apps/new``) with a random ``state`` bound to this browser by a
signed cookie. GitHub shows its confirmation page and redirects to ``GET /github-app/callback``
with ``code`` and ``state``; the callback checks the state, trades the code at
``POST {GITHUB_API_URL}/app-manifests/{code}/conversions``, stores the answer
(``store.app_credentials``) and shows the App's id, slug and link, never a secret.

``claim`` is a random value chosen by ``prgate github-app create``, which first registers it with
``POST /internal/v2/github-app/setup-claims`` signed with an admin key (``PRGATE_ADMIN_SECRETS``):
it is the one-time setup token in the URL the CLI prints. It travels in the state cookie, is
used up by the callback, and is stored hashed with the App, so the CLI fetches the App its user
created and no other.

Who may use it: only a browser holding an open setup claim (registered, under an hour old, not
used yet) — a stranger who finds ``/github-app/new`` before the App exists cannot register one
into this prgate. While ``GITHUB_APP_ID`` is set, the browser must also be signed in as an
operator (``PRGATE_OPERATORS``). Everyone else gets a 403 page.

``GET /internal/v2/github-app/credentials/latest?claim=`` (admin key, in the route table) answers
the credentials stored under that claim once, and deletes them (docs/security.md).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from backend_api.github.api import GitHubUnavailable
from backend_api.github.manifest import (
    AppCredentials,
    ConversionRefused,
    SetupClaimRequest,
    SetupClaimResponse,
    convert,
    default_webhook_url,
    render_manifest,
)
from backend_api.http.errors import json_error, json_response, read_model
from backend_api.keys import DB_POOL, HTTP_CLIENT, SESSIONS, SETTINGS
from backend_api.owner.access import is_operator
from backend_api.store import app_credentials
from backend_api.web import templates as t
from backend_api.web.revocation import current_session

log = logging.getLogger(__name__)

# GitHub keeps a manifest code valid for an hour; a person may read the confirmation page that long.
MANIFEST_STATE_TTL_SECONDS = 3600
MANIFEST_COOKIE = "prgate_manifest"
COOKIE_PATH = "/github-app"
_STATE_PREFIX = "github-app-manifest:"
_ORG_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?$")
_CLAIM_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_MAX_URL_CHARS = 2000


# ---- pure pieces ----------------------------------------------------------------------------------


def valid_org(org: str) -> bool:
    return bool(_ORG_RE.match(org))


def valid_claim(claim: str) -> bool:
    return bool(_CLAIM_RE.match(claim))


def http_url(value: str) -> str | None:
    """``value`` when it is an absolute http(s) URL without credentials, else ``None``."""
    if not value or len(value) > _MAX_URL_CHARS:
        return None
    url = URL(value)
    if not url.is_absolute() or url.scheme not in ("http", "https") or not url.host or url.user or url.password:
        return None
    return value


def registration_url(github_web_url: str, org: str | None, state: str) -> str:
    base = github_web_url.rstrip("/")
    path = f"/organizations/{quote(org, safe='')}/settings/apps/new" if org else "/settings/apps/new"
    return str(URL(f"{base}{path}").with_query(state=state))


def page_headers(github_web_url: str, nonce: str) -> dict[str, str]:
    """The usual page headers, but the form may post to GitHub and one inline script may run."""
    origin = str(URL(github_web_url).origin())
    return {
        **t.SECURITY_HEADERS,
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
            f"form-action {origin}; frame-ancestors 'none'; base-uri 'none'"
        ),
    }


def new_app_page(action: str, manifest_json: str, org: str | None, nonce: str) -> str:
    where = f"the organization <strong>{t.esc(org)}</strong>" if org else "your personal account"
    body = (
        f"<p>prgate will ask GitHub to create its App under {where}. GitHub shows what the App may do "
        "and asks you to confirm; then it sends you back here.</p>"
        f'<form id=manifest-form method=post action="{t.esc(action)}">'
        f'<input type=hidden name=manifest value="{t.esc(manifest_json)}">'
        "<p><button type=submit>Create the GitHub App on GitHub</button></p></form>"
        f'<script nonce="{t.esc(nonce)}">document.getElementById("manifest-form").submit();</script>'
    )
    return t.layout("Create prgate's GitHub App", body)


def created_page(creds: AppCredentials, public_url: str) -> str:
    install = f"{creds.html_url.rstrip('/')}/installations/new"
    return (
        "<p class=ok role=status>GitHub created the App. Its credentials are stored in prgate's database.</p>"
        "<dl>"
        f"<dt>App id</dt><dd>{creds.id}</dd>"
        f"<dt>Slug</dt><dd>{t.esc(creds.slug)}</dd>"
        f"<dt>Owner</dt><dd>@{t.esc(creds.owner.login)}</dd>"
        f'<dt>On GitHub</dt><dd><a href="{t.esc(creds.html_url)}">{t.esc(creds.html_url)}</a></dd>'
        "</dl>"
        "<h2>Next steps</h2><ol>"
        "<li>If you started from <code>prgate github-app create</code>, it is writing the env file and "
        "the private key now. Otherwise run <code>prgate github-app create</code> once to fetch them.</li>"
        "<li>Set <code>GITHUB_APP_ID</code>, <code>GITHUB_CLIENT_ID</code>, <code>GITHUB_CLIENT_SECRET</code>, "
        "<code>GITHUB_WEBHOOK_SECRET</code> and <code>GITHUB_PRIVATE_KEY_PATH</code> on every prgate process "
        "(with Helm: the values and the Secret, see docs/operations.md) and restart them.</li>"
        f'<li><a href="{t.esc(install)}">Install the App</a> on the organizations and repositories to gate.</li>'
        "</ol>"
        f"<p>Webhooks go to the URL in the App's settings; sign-in comes back to "
        f"<code>{t.esc(public_url.rstrip('/'))}/auth/github/callback</code>.</p>"
    )


# ---- access ---------------------------------------------------------------------------------------


async def _refused(request: web.Request) -> web.Response | None:
    """``None`` when this request may register an App, else the 403 page."""
    settings = request.app[SETTINGS]
    if not settings.github_app_id:
        return None
    session = await current_session(request)
    if session is not None and is_operator(settings.operators, session.login, session.user_id):
        return None
    who = f"You are signed in as @{session.login}, which is not" if session else "You are not signed in as"
    # Back to this very URL after sign-in: its ?claim= is what ties the App to the waiting CLI.
    extra = "" if session else t.sign_in_button(request.path_qs)
    return t.error_page(
        403, "Not allowed",
        f"This prgate already has a GitHub App (GITHUB_APP_ID is set). {who} one of its operators "
        "(PRGATE_OPERATORS), who alone may register another.",
        extra,
    )


def _set_state_cookie(response: web.StreamResponse, value: str, secure: bool) -> None:
    response.set_cookie(
        MANIFEST_COOKIE, value, max_age=MANIFEST_STATE_TTL_SECONDS, path=COOKIE_PATH, secure=secure, httponly=True,
        samesite="Lax",
    )


def _clear_state_cookie(response: web.StreamResponse, secure: bool) -> None:
    response.del_cookie(MANIFEST_COOKIE, path=COOKIE_PATH, secure=secure, httponly=True, samesite="Lax")


# ---- handlers -------------------------------------------------------------------------------------


def _no_claim_page() -> web.Response:
    return t.error_page(
        403, "Not allowed",
        "An App is registered from the URL that <code>prgate github-app create</code> prints, within an hour "
        "and once. Run it again and open the new URL.",
    )


@t.html_errors
async def new_app(request: web.Request) -> web.StreamResponse:
    refused = await _refused(request)
    if refused is not None:
        return refused
    settings = request.app[SETTINGS]
    org = request.query.get("org", "").strip() or None
    if org is not None and not valid_org(org):
        return t.error_page(400, "Bad organization", "That is not a valid GitHub organization name.")
    claim = request.query.get("claim", "")
    if claim and not valid_claim(claim):
        return t.error_page(400, "Bad request", "The claim parameter is malformed; copy the URL prgate printed.")
    if not claim:
        return _no_claim_page()
    async with request.app[DB_POOL].acquire() as conn:
        if not await app_credentials.claim_open(conn, claim):
            return _no_claim_page()
    raw_webhook = request.query.get("webhook_url", "")
    webhook_url = http_url(raw_webhook) if raw_webhook else default_webhook_url(settings.bot_public_url)
    if webhook_url is None:
        return t.error_page(400, "Bad webhook URL", "webhook_url must be an absolute http(s) URL.")
    name = request.query.get("name", "").strip() or "prgate"

    codec = request.app[SESSIONS]
    state, cookie = codec.new_oauth_state(f"{_STATE_PREFIX}{claim}", time.time(), MANIFEST_STATE_TTL_SECONDS)
    manifest = render_manifest(settings.public_url, webhook_url, name)
    nonce = secrets.token_urlsafe(16)
    response = web.Response(
        text=new_app_page(
            registration_url(settings.github_web_url, org, state.state), json.dumps(manifest), org, nonce
        ),
        content_type="text/html", charset="utf-8", headers=page_headers(settings.github_web_url, nonce),
    )
    _set_state_cookie(response, cookie, codec.secure)
    return response


@t.html_errors
async def callback(request: web.Request) -> web.StreamResponse:
    refused = await _refused(request)
    if refused is not None:
        return refused
    settings = request.app[SETTINGS]
    codec = request.app[SESSIONS]
    expected = codec.read_oauth_state(request.cookies.get(MANIFEST_COOKIE), time.time())
    start_again = '<p><a class=button href="/github-app/new">Start again</a></p>'

    def refuse(status: int, title: str, message: str) -> web.Response:
        response = t.error_page(status, title, message, start_again)
        _clear_state_cookie(response, codec.secure)
        return response

    returned = request.query.get("state", "")
    if (
        expected is None
        or expected.next_path is None
        or not expected.next_path.startswith(_STATE_PREFIX)
        or not returned
        or not codec.state_matches(expected, returned)
    ):
        return refuse(
            400, "Registration expired",
            "This App registration did not start in this browser, or it took too long. Please start again.",
        )
    claim = expected.next_path.removeprefix(_STATE_PREFIX)
    if not claim:  # a state cookie issued before setup claims existed
        return refuse(400, "Registration expired", "Please start again from `prgate github-app create`.")
    code = request.query.get("code", "")
    if not _CODE_RE.match(code):
        return refuse(400, "Registration failed", "GitHub sent no valid code. Please start again.")
    try:
        creds = await convert(request.app[HTTP_CLIENT], settings, code)
    except ConversionRefused as exc:
        log.info("github app manifest: conversion refused", extra={"error": str(exc)})
        return refuse(
            400, "Code already used or expired",
            "GitHub does not know this code any more: it was already used (the App was created then) or "
            "it is older than an hour. Look for the App in your GitHub settings, or start again.",
        )
    except GitHubUnavailable as exc:
        log.warning("github app manifest: GitHub unavailable: %s", exc)
        return refuse(502, "GitHub unavailable", "prgate could not reach GitHub to finish creating the App. Try again.")

    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        # The claim is used up with the App stored under it, or neither happens.
        if not await app_credentials.consume_claim(conn, claim):
            fresh = None
        else:
            fresh = await app_credentials.insert(conn, creds, claim)
    if fresh is None:
        log.warning("github app manifest: setup claim used or expired before the callback",
                    extra={"app_id": creds.id})
        return refuse(
            400, "Registration already finished",
            "This setup URL was already used, or is older than an hour. GitHub created the App (look for it in "
            "your GitHub settings); run `prgate github-app create` again to register another.",
        )
    log.info("github app registered", extra={"app_id": creds.id, "slug": creds.slug, "stored": fresh})
    response = t.page("prgate's GitHub App is ready", created_page(creds, settings.public_url))
    _clear_state_cookie(response, codec.secure)
    return response


async def internal_register_claim(request: web.Request) -> web.Response:
    """Admin key (the middleware checked): open a one-time setup claim for an hour."""
    req = await read_model(request, SetupClaimRequest)
    async with request.app[DB_POOL].acquire() as conn:
        expires_at = await app_credentials.register_claim(conn, req.claim, MANIFEST_STATE_TTL_SECONDS)
    return json_response(SetupClaimResponse(expires_at=expires_at.isoformat()))


async def internal_latest_credentials(request: web.Request) -> web.Response:
    """Admin key (the middleware checked): the App created under ``claim``, once — it is deleted as
    it is answered, so the database keeps no App secret after the CLI wrote its files."""
    claim = request.query.get("claim", "")
    if not claim:
        return json_error(400, "bad_request", "claim is required: the one `prgate github-app create` registered")
    if not valid_claim(claim):
        return json_error(400, "bad_request", "claim is malformed")
    async with request.app[DB_POOL].acquire() as conn:
        creds = await app_credentials.take(conn, claim=claim)
    if creds is None:
        return json_error(404, "not_found", "no GitHub App was registered under this claim (or it was fetched)")
    log.info("github app credentials handed out and deleted", extra={"app_id": creds.app_id})
    return json_response(creds)


def add_manifest_routes(app: web.Application) -> None:
    app.router.add_get("/github-app/new", new_app)
    app.router.add_get("/github-app/callback", callback)
