"""Sign in with GitHub (OAuth web flow) and sign out.

``GET /auth/github/login?next=`` sends the browser to GitHub's authorize page with a random
``state`` that a signed cookie binds to this browser; ``GET /auth/github/callback`` checks that
``state``, trades the code for a token at ``{GITHUB_WEB_URL}/login/oauth/access_token``, asks
``{GITHUB_API_URL}/user`` who it belongs to, forgets the token, and sets the session cookie.
``POST /auth/logout`` clears it. Only relative ``next`` paths are followed. Nothing here answers
500 by design: a bad or replayed callback is a 400 page, GitHub failing or unreachable a 502 page.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from backend_api.http.keys import HTTP_CLIENT, SESSIONS, SETTINGS
from backend_api.settings import BackendSettings
from backend_api.web import templates as t
from backend_api.web.session import CSRF_SCOPE_LOGOUT, OAUTH_COOKIE

log = logging.getLogger(__name__)

GITHUB_TIMEOUT = aiohttp.ClientTimeout(total=10)
_MAX_NEXT_CHARS = 2048


@dataclass(frozen=True, slots=True)
class GitHubUser:
    id: int
    login: str


class SignInRefused(Exception):
    """GitHub refused the code (expired, used, or not ours): the user should start again (400)."""


class GitHubUnavailable(Exception):
    """GitHub could not be reached, failed, or answered something unexpected (502)."""


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


def callback_url(settings: BackendSettings) -> str:
    return f"{settings.public_url.rstrip('/')}/auth/github/callback"


def _configured(settings: BackendSettings) -> bool:
    return bool(settings.github_client_id and settings.github_client_secret.get_secret_value())


# ---- GitHub ----------------------------------------------------------------------------------------


async def exchange_code(http: aiohttp.ClientSession, settings: BackendSettings, code: str) -> str:
    """The access token for ``code``; it is used once (``fetch_user``) and never stored."""
    url = f"{settings.github_web_url.rstrip('/')}/login/oauth/access_token"
    data = {
        "client_id": settings.github_client_id,
        "client_secret": settings.github_client_secret.get_secret_value(),
        "code": code,
        "redirect_uri": callback_url(settings),
    }
    try:
        async with http.post(url, data=data, headers={"Accept": "application/json"}, timeout=GITHUB_TIMEOUT) as resp:
            if resp.status != 200:
                raise GitHubUnavailable(f"token endpoint answered {resp.status}")
            body: Any = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise GitHubUnavailable(f"token endpoint unreachable: {type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise GitHubUnavailable("token endpoint answered something that is not a JSON object")
    error = body.get("error")
    if error in ("bad_verification_code", "redirect_uri_mismatch"):
        raise SignInRefused(str(error))
    if error is not None:
        raise GitHubUnavailable(f"token endpoint refused: {error}")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise GitHubUnavailable("token endpoint answered no access_token")
    return token


async def fetch_user(http: aiohttp.ClientSession, settings: BackendSettings, token: str) -> GitHubUser:
    url = f"{settings.github_api_url.rstrip('/')}/user"
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "prgate",
    }
    try:
        async with http.get(url, headers=headers, timeout=GITHUB_TIMEOUT) as resp:
            if resp.status != 200:
                raise GitHubUnavailable(f"GET /user answered {resp.status}")
            body: Any = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise GitHubUnavailable(f"GET /user unreachable: {type(exc).__name__}") from None
    user_id = body.get("id") if isinstance(body, dict) else None
    login = body.get("login") if isinstance(body, dict) else None
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not isinstance(login, str) or not login:
        raise GitHubUnavailable("GET /user answered no id and login")
    return GitHubUser(id=user_id, login=login)


# ---- handlers -----------------------------------------------------------------------------------------


def _start_again(next_path: str | None) -> str:
    if next_path is None:
        return ""
    return f'<p><a class=button href="{t.esc(t.Links.login(next_path))}">Sign in again</a></p>'


@t.html_errors
async def login(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if not _configured(settings):
        return t.error_page(
            503, "Sign-in unavailable", "GitHub sign-in is not configured on this prgate (GITHUB_CLIENT_ID/SECRET)."
        )
    codec = request.app[SESSIONS]
    state, cookie = codec.new_oauth_state(safe_next(request.query.get("next")), time.time())
    authorize = URL(f"{settings.github_web_url.rstrip('/')}/login/oauth/authorize").with_query(
        client_id=settings.github_client_id,
        redirect_uri=callback_url(settings),
        state=state.state,
        allow_signup="false",
    )
    response = web.Response(status=302, headers={"Location": str(authorize), **t.SECURITY_HEADERS})
    codec.set_oauth_cookie(response, cookie)
    return response


@t.html_errors
async def callback(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    codec = request.app[SESSIONS]
    now = time.time()
    expected = codec.read_oauth_state(request.cookies.get(OAUTH_COOKIE), now)
    next_path = safe_next(expected.next_path) if expected else None

    def refuse(status: int, title: str, message: str) -> web.Response:
        response = t.error_page(status, title, message, _start_again(next_path))
        codec.clear_oauth_cookie(response)
        return response

    if "error" in request.query:
        return refuse(400, "Sign-in cancelled", "GitHub did not sign you in (the request was denied or cancelled).")
    returned = request.query.get("state", "")
    if expected is None or not returned or not codec.state_matches(expected, returned):
        return refuse(
            400, "Sign-in expired",
            "This sign-in did not start in this browser, or it took too long. Please start again.",
        )
    code = request.query.get("code", "")
    if not code or len(code) > 512:
        return refuse(400, "Sign-in failed", "GitHub sent no sign-in code. Please start again.")
    if not _configured(settings):
        return refuse(503, "Sign-in unavailable", "GitHub sign-in is not configured on this prgate.")

    http = request.app[HTTP_CLIENT]
    try:
        user = await fetch_user(http, settings, await exchange_code(http, settings, code))
    except SignInRefused as exc:
        log.info("sign-in refused by GitHub", extra={"error": str(exc)})
        return refuse(400, "Sign-in expired", "GitHub says this sign-in code has expired or was already used.")
    except GitHubUnavailable as exc:
        log.warning("sign-in: GitHub unavailable: %s", exc)
        return refuse(502, "GitHub unavailable", "prgate could not reach GitHub to finish signing you in. Try again.")

    _, cookie = codec.issue(user.id, user.login, now)
    log.info("signed in", extra={"github_user_id": user.id})
    if next_path is not None:
        response = web.Response(status=302, headers={"Location": next_path, **t.SECURITY_HEADERS})
    else:
        response = t.page("Signed in", f"<p>You are signed in as <strong>@{t.esc(user.login)}</strong>. "
                                       "Go back to the verification link in your pull request.</p>")
    codec.set_session_cookie(response, cookie)
    codec.clear_oauth_cookie(response)
    return response


@t.html_errors
async def logout(request: web.Request) -> web.StreamResponse:
    codec = request.app[SESSIONS]
    form = await request.post()
    session = codec.from_request(request, time.time())
    token = form.get("csrf")
    if session is not None and not codec.check_csrf(
        session, CSRF_SCOPE_LOGOUT, token if isinstance(token, str) else None
    ):
        return t.error_page(
            403, "Form expired", "This sign-out form did not come from prgate. You are still signed in."
        )
    raw_next = form.get("next")
    next_path = safe_next(raw_next if isinstance(raw_next, str) else None)
    if next_path is not None:
        response = web.Response(status=303, headers={"Location": next_path, **t.SECURITY_HEADERS})
    else:
        response = t.page("Signed out", "<p>You are signed out of prgate.</p>")
    codec.clear_session_cookie(response)
    return response
