"""GitHub's OAuth web flow, as the simulator serves it.

- ``GET /login/oauth/authorize?client_id&redirect_uri&state`` renders a small "Sign in to GitHub"
  page whose form posts back here; the answer is a 302 to ``redirect_uri?code=…&state=…``.
  Simulator extension: with a ``login`` query parameter the form is skipped and the redirect comes
  at once, so tests without a browser can sign in as anyone.
- ``POST /login/oauth/access_token`` trades a code for a ``gho_`` token. Parameters come as a form,
  a JSON body or the query string; the answer is JSON when ``Accept: application/json``, else
  form-encoded. Failures answer 200 with an ``error`` field, exactly as GitHub does.
- ``GET /user`` (a REST route, authenticated by the app's middleware with the ``user`` auth kind)
  answers the signed-in user.

Codes are single-use and expire after 10 minutes; tokens do not expire. Users are created on first
sign-in through ``SimulatorState.ensure_user``, so a login already known to the simulator (a PR
author, say) keeps its id. ``/_sim/reset`` does not revoke issued tokens.
"""

from __future__ import annotations

import html
import json
import secrets
import string
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web
from yarl import URL

from prgate.simulator.core.pages import page
from prgate.simulator.core.types import JsonDict, iso
from prgate.simulator.github.model import SimUser
from prgate.simulator.github.render import Renderer
from prgate.simulator.github.state import SimulatorState

CODE_TTL_SECONDS = 600
TOKEN_ALPHABET = string.ascii_letters + string.digits
_TROUBLESHOOTING = (
    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/"
)
_LOGIN_CHARS = frozenset(string.ascii_letters + string.digits + "-[]")


@dataclass(frozen=True, slots=True)
class Grant:
    """What a code stands for until it is redeemed."""

    login: str
    client_id: str
    redirect_uri: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class TokenError:
    error: str
    description: str

    def to_json(self) -> JsonDict:
        anchor = self.error.replace("_", "-")
        return {
            "error": self.error, "error_description": self.description, "error_uri": f"{_TROUBLESHOOTING}#{anchor}"
        }


class OAuthStore:
    """Codes and user tokens of one simulator instance."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.codes: dict[str, Grant] = {}
        self.tokens: dict[str, str] = {}  # token -> login

    def grant(self, login: str, client_id: str, redirect_uri: str) -> str:
        self.state.ensure_user(login)
        code = secrets.token_hex(10)
        self.codes[code] = Grant(login, client_id, redirect_uri, self.state.now() + CODE_TTL_SECONDS)
        return code

    def redeem(
        self, client_id: str, client_secret: str, code: str, redirect_uri: str | None
    ) -> str | TokenError:
        config = self.state.config
        if not secrets.compare_digest(client_id, config.oauth_client_id) or not secrets.compare_digest(
            client_secret, config.oauth_client_secret
        ):
            return TokenError(
                "incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect."
            )
        grant = self.codes.get(code)
        if grant is None or grant.client_id != client_id or grant.expires_at <= self.state.now():
            self.codes.pop(code, None)
            return TokenError("bad_verification_code", "The code passed is incorrect or expired.")
        if redirect_uri is not None and redirect_uri != grant.redirect_uri:
            return TokenError(
                "redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application."
            )
        del self.codes[code]
        token = "gho_" + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(36))
        self.tokens[token] = grant.login
        return token

    def user_for(self, token: str) -> SimUser | None:
        login = self.tokens.get(token)
        return None if login is None else self.state.ensure_user(login)


SIM_OAUTH = web.AppKey("prgate_sim_oauth", OAuthStore)


# ---- pages ----------------------------------------------------------------------------------------


def _valid_login(login: str) -> bool:
    return 0 < len(login) <= 39 and set(login) <= _LOGIN_CHARS


def _authorize_form(client_id: str, redirect_uri: str, state: str, error: str | None = None) -> web.Response:
    hidden = "".join(
        f'<input type=hidden name="{name}" value="{html.escape(value)}">'
        for name, value in (("client_id", client_id), ("redirect_uri", redirect_uri), ("state", state))
    )
    message = f'<p role=alert style="color:#b00">{html.escape(error)}</p>' if error else ""
    body = (
        f"<p>The application is asking you to sign in (GitHub simulator).</p>{message}"
        f'<form method=post action="/login/oauth/authorize">{hidden}'
        '<label for=login>Username</label><br><input id=login name=login autofocus required>'
        "<br><button type=submit>Sign in</button></form>"
    )
    return page("Sign in to GitHub", body, 422 if error else 200)


async def authorize(request: web.Request) -> web.Response:
    """``GET`` shows the sign-in form (or signs in at once with ``login=``); ``POST`` is that form."""
    store = request.app[SIM_OAUTH]
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    client_id = params.get("client_id", "")
    redirect_uri = params.get("redirect_uri", "")
    state = params.get("state", "")
    if not secrets.compare_digest(client_id, store.state.config.oauth_client_id):
        return page("Not Found", "<p>No application is registered with that client_id.</p>", 404)
    target = URL(redirect_uri)
    if not target.is_absolute() or target.scheme not in ("http", "https"):
        return page("Bad request", "<p>redirect_uri must be an absolute http(s) URL.</p>", 400)
    login = params.get("login")
    if login is None:
        return _authorize_form(client_id, redirect_uri, state)
    login = login.strip()
    if not _valid_login(login):
        return _authorize_form(client_id, redirect_uri, state, "That is not a valid GitHub username.")
    code = store.grant(login, client_id, redirect_uri)
    query = {"code": code, **({"state": state} if state else {})}
    raise web.HTTPFound(target.update_query(query))


async def _token_params(request: web.Request) -> dict[str, str]:
    params = dict(request.query)
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            body = {}
        if isinstance(body, dict):
            params.update({k: str(v) for k, v in body.items() if v is not None})
    else:
        params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return params


def _token_response(request: web.Request, data: JsonDict) -> web.Response:
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(data)
    return web.Response(
        text=urlencode(data), content_type="application/x-www-form-urlencoded", charset="utf-8"
    )


async def access_token(request: web.Request) -> web.Response:
    store = request.app[SIM_OAUTH]
    params = await _token_params(request)
    result = store.redeem(
        params.get("client_id", ""), params.get("client_secret", ""), params.get("code", ""),
        params.get("redirect_uri"),
    )
    if isinstance(result, TokenError):
        return _token_response(request, result.to_json())
    return _token_response(request, {"access_token": result, "token_type": "bearer", "scope": ""})


# ---- REST ---------------------------------------------------------------------------------------------


def bearer_token(request: web.Request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return value.strip() if scheme.lower() in ("token", "bearer") else ""


async def get_authenticated_user(request: web.Request) -> web.Response:
    """``GET /user``: the app's middleware has already checked the token is a user token."""
    store = request.app[SIM_OAUTH]
    user = store.user_for(bearer_token(request))
    if user is None:  # the middleware lets only known user tokens through; keep GitHub's answer anyway
        return web.json_response({"message": "Bad credentials", "status": "401"}, status=401)
    data = Renderer(store.state, f"{request.scheme}://{request.host}").user(user)
    created = iso(store.state.now())
    data.update(
        {
            "name": None, "company": None, "blog": "", "location": None, "email": None, "hireable": None,
            "bio": None, "twitter_username": None, "notification_email": None, "public_repos": 0,
            "public_gists": 0, "followers": 0, "following": 0, "created_at": created, "updated_at": created,
        }
    )
    return web.json_response(data, headers={"X-OAuth-Scopes": "", "X-Accepted-OAuth-Scopes": ""})


# ---- wiring ---------------------------------------------------------------------------------------------

# Browser-facing endpoints on github.com, not REST API routes: the API middleware lets them through.
OAUTH_PREFIX = "/login/oauth/"


def setup(app: web.Application, state: SimulatorState) -> None:
    app[SIM_OAUTH] = OAuthStore(state)
    app.router.add_get("/login/oauth/authorize", authorize)
    app.router.add_post("/login/oauth/authorize", authorize)
    app.router.add_post("/login/oauth/access_token", access_token)
