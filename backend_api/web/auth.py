"""Sign in with GitHub (OAuth web flow) and sign out.

``GET /auth/github/login?next=`` sends the browser to GitHub's authorize page with a random
``state`` that a signed cookie binds to this browser; ``GET /auth/github/callback`` checks that
``state``, trades the code for a token at ``{GITHUB_WEB_URL}/login/oauth/access_token``, asks
``{GITHUB_API_URL}/user`` who it belongs to and ``/user/installations`` which of this App's
installations it reaches (``github/oauth.py``), forgets the token, and sets the session cookie.
``POST /auth/logout`` clears it. Only relative ``next`` paths are followed. Nothing here answers
500 by design: a bad or replayed callback is a 400 page, GitHub failing or unreachable a 502 page.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from yarl import URL

from backend_api.auth.session import CSRF_SCOPE_LOGOUT, OAUTH_COOKIE
from backend_api.github.api import GitHubUnavailable
from backend_api.github.oauth import SignInRefused, callback_url, exchange_code, fetch_user, fetch_user_installations
from backend_api.keys import HTTP_CLIENT, SESSIONS, SETTINGS
from backend_api.settings import BackendSettings
from backend_api.web import templates as t
from backend_api.web.revocation import current_session, revoke

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


def _configured(settings: BackendSettings) -> bool:
    return bool(settings.github_client_id and settings.github_client_secret.get_secret_value())


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
        token = await exchange_code(http, settings, code)
        user = await fetch_user(http, settings, token)
        reachable = await fetch_user_installations(http, settings, token)
    except SignInRefused as exc:
        log.info("sign-in refused by GitHub", extra={"error": str(exc)})
        return refuse(400, "Sign-in expired", "GitHub says this sign-in code has expired or was already used.")
    except GitHubUnavailable as exc:
        log.warning("sign-in: GitHub unavailable: %s", exc)
        return refuse(502, "GitHub unavailable", "prgate could not reach GitHub to finish signing you in. Try again.")

    issued, cookie = codec.issue(user.id, user.login, now, tuple(reachable))
    # The session id is no credential (the cookie's MAC is): logged so an operator can revoke it.
    log.info("signed in", extra={"github_user_id": user.id, "session_id": issued.sid})
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
    session = await current_session(request)
    token = form.get("csrf")
    if session is not None and not codec.check_csrf(
        session, CSRF_SCOPE_LOGOUT, token if isinstance(token, str) else None
    ):
        return t.error_page(
            403, "Form expired", "This sign-out form did not come from prgate. You are still signed in."
        )
    if session is not None:
        await revoke(request, session)  # the cookie may have been copied: clearing it is not enough
        log.info("signed out", extra={"github_user_id": session.user_id, "session_id": session.sid})
    raw_next = form.get("next")
    next_path = safe_next(raw_next if isinstance(raw_next, str) else None)
    if next_path is not None:
        response = web.Response(status=303, headers={"Location": next_path, **t.SECURITY_HEADERS})
    else:
        response = t.page("Signed out", "<p>You are signed out of prgate.</p>")
    codec.clear_session_cookie(response)
    return response
