"""Sign in with GitHub or Bitbucket (OAuth authorization code flows) and sign out.

``GET /auth/{provider}/login?next=`` sends the browser to the provider's authorize page with a random
``state`` that a signed cookie (path ``/auth/{provider}``) binds to this browser;
``GET /auth/{provider}/callback`` checks that ``state``, trades the code for a token and asks who it
belongs to (GitHub: ``github/oauth.py``, also which installations it reaches; Bitbucket:
``bitbucket/oauth.py``, the account then mapped to its backend id), forgets the token, and sets the
session cookie, which names the provider. One flow for both: a provider is a :class:`SignInFlow`.
``POST /auth/logout`` clears it. Only relative ``next`` paths are followed. Nothing here answers
500 by design: a bad or replayed callback is a 400 page, the provider failing or unreachable a 502
page, a provider whose OAuth client is not configured a 503 page, an account contradicting the one
stored a 409 page (all logged and counted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from yarl import URL

from backend_api.auth.session import CSRF_SCOPE_LOGOUT, OAUTH_COOKIE
from backend_api.bitbucket import oauth as bitbucket_oauth
from backend_api.github.api import GitHubUnavailable
from backend_api.github.oauth import SignInRefused, callback_url, exchange_code, fetch_user, fetch_user_installations
from backend_api.keys import DB_POOL, HTTP_CLIENT, SESSIONS, SETTINGS
from backend_api.metrics import count_sign_in
from backend_api.settings import BackendSettings
from backend_api.store import bitbucket as bitbucket_store
from backend_api.web import templates as t
from backend_api.web.revocation import current_session, revoke
from shared_contracts.actions import Provider

log = logging.getLogger(__name__)

_MAX_NEXT_CHARS = 2048


def safe_next(value: str | None) -> str | None:
    """``value`` when it is a path on this site; anything that could leave it (``//host``,
    ``https://…``, backslashes, control characters) is dropped, so there is no open redirect."""
    if not value or len(value) > _MAX_NEXT_CHARS:
        return None
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return None
    url = URL(value)
    if url.is_absolute() or url.scheme or url.host:
        return None
    return value


# ---- the providers -------------------------------------------------------------------------------------


class Refused(Exception):
    """The provider refused this sign-in's code: the user starts again (400)."""


class Unavailable(Exception):
    """The provider could not finish the sign-in (down, refused our client, answered nonsense): 502."""


class Conflict(Exception):
    """Who the provider says signed in contradicts what prgate holds about that account (409): the
    user cannot fix it by trying again, an operator must look (logged with both ids)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the provider says signed in, as the session holds it."""

    user_id: int
    login: str
    installation_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SignInFlow:
    provider: Provider
    name: str  # as the pages say it
    settings_names: str  # what to set when it is not configured
    configured: Callable[[BackendSettings], bool]
    authorize_url: Callable[[BackendSettings, str], str]
    # The code → who signed in; raises Refused or Unavailable.
    identify: Callable[[web.Application, str], Awaitable[Identity]]


def _github_configured(settings: BackendSettings) -> bool:
    return bool(settings.github_client_id and settings.github_client_secret.get_secret_value())


def _github_authorize(settings: BackendSettings, state: str) -> str:
    return str(URL(f"{settings.github_web_url.rstrip('/')}/login/oauth/authorize").with_query(
        client_id=settings.github_client_id, redirect_uri=callback_url(settings), state=state, allow_signup="false",
    ))


async def _github_identify(app: web.Application, code: str) -> Identity:
    http, settings = app[HTTP_CLIENT], app[SETTINGS]
    try:
        token = await exchange_code(http, settings, code)
        user = await fetch_user(http, settings, token)
        reachable = await fetch_user_installations(http, settings, token)
    except SignInRefused as exc:
        raise Refused(str(exc)) from None
    except GitHubUnavailable as exc:
        raise Unavailable(str(exc)) from None
    return Identity(user.id, user.login, tuple(reachable))


async def _bitbucket_identify(app: web.Application, code: str) -> Identity:
    try:
        account = await bitbucket_oauth.signed_in_account(app[HTTP_CLIENT], app[SETTINGS], code)
    except bitbucket_oauth.SignInRefused as exc:
        raise Refused(str(exc)) from None
    except bitbucket_oauth.BitbucketUnavailable as exc:
        raise Unavailable(str(exc)) from None
    # The same upsert a webhook's author goes through, so the signed-in account and the PR's author
    # are one backend id exactly when they are one Bitbucket account.
    try:
        async with app[DB_POOL].acquire() as conn, conn.transaction():
            ids = await bitbucket_store.user_ids(conn, [bitbucket_store.AccountInfo(
                account_uuid=account.uuid, account_id=account.account_id, nickname=account.nickname,
                display_name=account.display_name, account_type=account.type)])
    except bitbucket_store.AccountConflict as exc:
        # Atlassian pairs an account_id with one UUID; a stored pairing that disagrees came from a
        # payload not to trust, and signing in as either account could verify the other's PRs.
        raise Conflict(f"account {account.uuid} ({account.account_id}): {exc}") from None
    return Identity(ids[account.uuid], account.nickname or account.display_name or account.account_id or "?")


GITHUB = SignInFlow(
    Provider.GITHUB, "GitHub", "GITHUB_CLIENT_ID/SECRET", _github_configured, _github_authorize, _github_identify,
)
BITBUCKET = SignInFlow(
    Provider.BITBUCKET, "Bitbucket", "BITBUCKET_OAUTH_CLIENT_ID/SECRET", bitbucket_oauth.configured,
    bitbucket_oauth.authorize, _bitbucket_identify,
)
FLOWS = {flow.provider: flow for flow in (GITHUB, BITBUCKET)}


def not_configured(request: web.Request, flow: SignInFlow, where: str) -> None:
    """Log and count a sign-in that cannot be offered: the OAuth client of ``flow`` is not set."""
    log.warning("%s sign-in is not configured (%s)", flow.name, flow.settings_names,
                extra={"provider": flow.provider.value, "where": where})
    count_sign_in(request, flow.provider, "not_configured")


# ---- handlers -----------------------------------------------------------------------------------------


def _start_again(next_path: str | None, flow: SignInFlow) -> str:
    if next_path is None:
        return ""
    return f'<p><a class=button href="{t.esc(t.Links.login(next_path, flow.provider))}">Sign in again</a></p>'


async def _login(request: web.Request, flow: SignInFlow) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if not flow.configured(settings):
        not_configured(request, flow, "login")
        return t.error_page(
            503, "Sign-in unavailable",
            f"{flow.name} sign-in is not configured on this prgate ({flow.settings_names}).",
        )
    codec = request.app[SESSIONS]
    state, cookie = codec.new_oauth_state(safe_next(request.query.get("next")), time.time(), provider=flow.provider)
    response = web.Response(
        status=302, headers={"Location": flow.authorize_url(settings, state.state), **t.SECURITY_HEADERS}
    )
    codec.set_oauth_cookie(response, cookie, flow.provider)
    return response


async def _callback(request: web.Request, flow: SignInFlow) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    codec = request.app[SESSIONS]
    now = time.time()
    expected = codec.read_oauth_state(request.cookies.get(OAUTH_COOKIE), now, flow.provider)
    next_path = safe_next(expected.next_path) if expected else None

    def refuse(status: int, title: str, message: str, outcome: str) -> web.Response:
        count_sign_in(request, flow.provider, outcome)
        response = t.error_page(status, title, message, _start_again(next_path, flow))
        codec.clear_oauth_cookie(response, flow.provider)
        return response

    if "error" in request.query:
        return refuse(400, "Sign-in cancelled",
                      f"{flow.name} did not sign you in (the request was denied or cancelled).", "cancelled")
    returned = request.query.get("state", "")
    if expected is None or not returned or not codec.state_matches(expected, returned):
        return refuse(
            400, "Sign-in expired",
            "This sign-in did not start in this browser, or it took too long. Please start again.", "bad_state",
        )
    code = request.query.get("code", "")
    if not code or len(code) > 512:
        return refuse(400, "Sign-in failed", f"{flow.name} sent no sign-in code. Please start again.", "no_code")
    if not flow.configured(settings):
        not_configured(request, flow, "callback")
        response = t.error_page(503, "Sign-in unavailable", f"{flow.name} sign-in is not configured on this prgate.")
        codec.clear_oauth_cookie(response, flow.provider)
        return response

    try:
        who = await flow.identify(request.app, code)
    except Refused as exc:
        log.info("sign-in refused by %s", flow.name, extra={"provider": flow.provider.value, "error": str(exc)})
        return refuse(400, "Sign-in expired",
                      f"{flow.name} says this sign-in code has expired or was already used.", "refused")
    except Unavailable as exc:
        log.warning("sign-in: %s unavailable: %s", flow.name, exc, extra={"provider": flow.provider.value})
        return refuse(502, f"{flow.name} unavailable",
                      f"prgate could not reach {flow.name} to finish signing you in. Try again.", "unavailable")
    except Conflict as exc:
        log.error("sign-in: %s account conflict: %s", flow.name, exc, extra={"provider": flow.provider.value})
        return refuse(409, "Account conflict",
                      f"prgate holds another {flow.name} account under this account's id, so it cannot sign "
                      "you in. Nothing was changed; ask the operator of this prgate to look at its log.",
                      "account_conflict")

    issued, cookie = codec.issue(who.user_id, who.login, now, who.installation_ids, flow.provider)
    # The session id is no credential (the cookie's MAC is): logged so an operator can revoke it.
    log.info("signed in", extra={"github_user_id": who.user_id, "provider": flow.provider.value,
                                 "session_id": issued.sid})
    count_sign_in(request, flow.provider, "signed_in")
    if next_path is not None:
        response = web.Response(status=302, headers={"Location": next_path, **t.SECURITY_HEADERS})
    else:
        response = t.page("Signed in", f"<p>You are signed in as <strong>@{t.esc(who.login)}</strong> "
                                       f"({t.esc(flow.name)}). "
                                       "Go back to the verification link in your pull request.</p>")
    codec.set_session_cookie(response, cookie)
    codec.clear_oauth_cookie(response, flow.provider)
    return response


@t.html_errors
async def login(request: web.Request) -> web.StreamResponse:
    return await _login(request, GITHUB)


@t.html_errors
async def callback(request: web.Request) -> web.StreamResponse:
    return await _callback(request, GITHUB)


@t.html_errors
async def bitbucket_login(request: web.Request) -> web.StreamResponse:
    return await _login(request, BITBUCKET)


@t.html_errors
async def bitbucket_callback(request: web.Request) -> web.StreamResponse:
    return await _callback(request, BITBUCKET)


@t.html_errors
async def logout(request: web.Request) -> web.StreamResponse:
    codec = request.app[SESSIONS]
    form = await request.post()
    session = await current_session(request, provider=None)
    token = form.get("csrf")
    if session is not None and not codec.check_csrf(
        session, CSRF_SCOPE_LOGOUT, token if isinstance(token, str) else None
    ):
        return t.error_page(
            403, "Form expired", "This sign-out form did not come from prgate. You are still signed in."
        )
    if session is not None:
        await revoke(request, session)  # the cookie may have been copied: clearing it is not enough
        log.info("signed out", extra={"github_user_id": session.user_id, "provider": session.provider.value,
                                      "session_id": session.sid})
    raw_next = form.get("next")
    next_path = safe_next(raw_next if isinstance(raw_next, str) else None)
    if next_path is not None:
        response = web.Response(status=303, headers={"Location": next_path, **t.SECURITY_HEADERS})
    else:
        response = t.page("Signed out", "<p>You are signed out of prgate.</p>")
    codec.clear_session_cookie(response)
    return response
