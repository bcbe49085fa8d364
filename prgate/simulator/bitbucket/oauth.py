"""Bitbucket's OAuth 2.0 consumer flow, as the simulator serves it (mirrors ``github/oauth.py``).

- ``GET /site/oauth2/authorize?client_id&response_type=code&state[&redirect_uri]`` renders a small
  page to pick the simulated user (its form posts back here); the answer is a 302 to
  ``redirect_uri?code=…&state=…``. Simulator extension: with ``user=`` (an account id, a UUID or a
  nickname) the page is skipped, so tests without a browser can sign in as anyone registered.
- ``POST /site/oauth2/access_token`` (client id and secret in Basic auth, or in the form;
  ``grant_type=authorization_code``) → ``{access_token, token_type, expires_in, refresh_token,
  scopes, state}``; failures are RFC 6749's ``{error, error_description}`` with 400 (401 for a bad
  client), as Bitbucket answers.

Codes are single-use and expire after 10 minutes; tokens after ``token_ttl_seconds``.
"""

from __future__ import annotations

import base64
import binascii
import html
import secrets
from dataclasses import dataclass

from aiohttp import web
from yarl import URL

from prgate.simulator.bitbucket.http import BB_PREFIX, BB_STATE
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.core.pages import page

CODE_TTL_SECONDS = 600
SCOPES = "account pullrequest"


@dataclass(frozen=True, slots=True)
class Grant:
    account_id: str
    client_id: str
    redirect_uri: str
    expires_at: float


class OAuthStore:
    def __init__(self, state: BitbucketState) -> None:
        self.state = state
        self.codes: dict[str, Grant] = {}

    def grant(self, account_id: str, client_id: str, redirect_uri: str) -> str:
        code = secrets.token_urlsafe(18)
        self.codes[code] = Grant(account_id, client_id, redirect_uri, self.state.now() + CODE_TTL_SECONDS)
        return code


BB_OAUTH = web.AppKey("prgate_sim_bitbucket_oauth", OAuthStore)


def _form(request: web.Request, params: dict[str, str], error: str | None = None) -> web.Response:
    state = request.app[BB_STATE]
    hidden = "".join(
        f'<input type=hidden name="{name}" value="{html.escape(params.get(name, ""))}">'
        for name in ("client_id", "response_type", "state", "redirect_uri")
    )
    choices = "".join(
        f'<button type=submit name=user value="{html.escape(u.account_id)}">{html.escape(u.display_name)} '
        f"({html.escape(u.nickname)})</button><br>"
        for u in sorted(state.users.values(), key=lambda u: u.nickname) if u.type == "user"
    )
    message = f'<p role=alert style="color:#b00">{html.escape(error)}</p>' if error else ""
    action = request.app[BB_PREFIX] + "/site/oauth2/authorize"
    body = (
        f"<p>An application wants to access your Bitbucket account (Bitbucket simulator).</p>{message}"
        f'<form method=post action="{html.escape(action)}">{hidden}{choices}'
        '<label for=user>Account id or nickname</label><br><input id=user name=user>'
        "<br><button type=submit>Grant access</button></form>"
    )
    return page("Log in to Bitbucket", body, 422 if error else 200)


async def authorize(request: web.Request) -> web.Response:
    store = request.app[BB_OAUTH]
    config = store.state.config
    params = dict(request.query)
    if request.method == "POST":
        # The page's account buttons and its free-text field both post `user`: the filled one wins
        # (a button click also sends the empty field, after the button's value).
        posted = await request.post()
        params.update({k: v for k, v in posted.items() if isinstance(v, str) and k != "user"})
        users = [v.strip() for v in posted.getall("user", []) if isinstance(v, str) and v.strip()]
        if "user" in posted:
            params["user"] = users[0] if users else ""
    if not secrets.compare_digest(params.get("client_id", ""), config.oauth_client_id):
        return page("Invalid client", "<p>No OAuth consumer has that client_id.</p>", 400)
    if params.get("response_type", "code") != "code":
        return page("Unsupported response type", "<p>Only response_type=code is supported.</p>", 400)
    # Bitbucket falls back to the consumer's registered callback URL.
    redirect_uri = params.get("redirect_uri") or config.oauth_callback_url or ""
    target = URL(redirect_uri)
    if not target.is_absolute() or target.scheme not in ("http", "https"):
        return page("Bad request", "<p>redirect_uri must be an absolute http(s) URL.</p>", 400)
    ref = params.get("user")
    if ref is None:
        return _form(request, params)
    user = store.state.user_by_ref(ref.strip())
    if user is None or user.type != "user":
        return _form(request, params, "No such Bitbucket user.")
    code = store.grant(user.account_id, config.oauth_client_id, redirect_uri)
    query = {"code": code, **({"state": params["state"]} if params.get("state") else {})}
    raise web.HTTPFound(target.update_query(query))


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _basic(request: web.Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


async def access_token(request: web.Request) -> web.Response:
    store = request.app[BB_OAUTH]
    state = store.state
    config = state.config
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    client = _basic(request) or (form.get("client_id", ""), form.get("client_secret", ""))
    if not (secrets.compare_digest(client[0], config.oauth_client_id)
            and secrets.compare_digest(client[1], config.oauth_client_secret)):
        return _oauth_error(401, "invalid_client", "Invalid OAuth client credentials")
    if form.get("grant_type") != "authorization_code":
        return _oauth_error(400, "unsupported_grant_type", "Unsupported grant type")
    code = form.get("code", "")
    grant = store.codes.pop(code, None)
    if grant is None or grant.expires_at <= state.now():
        return _oauth_error(400, "invalid_grant", "The code is invalid or has expired.")
    if "redirect_uri" in form and form["redirect_uri"] != grant.redirect_uri:
        return _oauth_error(400, "invalid_grant", "redirect_uri does not match.")
    token = state.user_token(grant.account_id)
    return web.json_response({
        "access_token": token.value, "token_type": "bearer", "expires_in": config.token_ttl_seconds,
        "refresh_token": secrets.token_urlsafe(24), "scopes": SCOPES, "state": "authorization_code",
    })


def setup(app: web.Application, state: BitbucketState) -> None:
    app[BB_OAUTH] = OAuthStore(state)
    app.router.add_get("/site/oauth2/authorize", authorize)
    app.router.add_post("/site/oauth2/authorize", authorize)
    app.router.add_post("/site/oauth2/access_token", access_token)
