"""Browser sessions for the verification pages: signed cookies, OAuth ``state``, CSRF tokens.

Nothing but a deny list of revoked sessions is stored on the server. A session is a cookie
``v1.<payload>.<mac>``: the payload is base64url JSON ``{"sid", "uid", "login", "exp", "inst",
"iat", "prov"}`` (a random session id, the backend user id and login, the expiry in unix seconds, the
ids of this App's installations the user could reach at sign-in, from ``GET /user/installations``,
the issue time, and the provider the user signed in with: ``github``, or ``bitbucket`` whose user ids
are the backend's own, docs/bitbucket.md "Identifiers"), the MAC an HMAC-SHA256 over
``v1.<payload>``. The OAuth access token never leaves the callback handler. A cookie that does not
verify, does not parse or has expired reads as "signed out"; so does a revoked one
(``web.revocation``: a deny list in PostgreSQL).

Every key is derived from one secret (``SESSION_SECRET``, required: never derived from an internal
key, so the internal keys rotate without signing anyone out) with a purpose label, so a MAC made
for one purpose (a session cookie) is never accepted for another (an OAuth state cookie, a CSRF token).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from backend_api.settings import BackendSettings
from shared_contracts.actions import Provider

SESSION_COOKIE = "prgate_session"
OAUTH_COOKIE = "prgate_oauth"
SESSION_TTL_SECONDS = 8 * 3600
OAUTH_STATE_TTL_SECONDS = 600
_VERSION = "v1"
_MAX_COOKIE_CHARS = 4096


def session_secret(settings: BackendSettings) -> bytes:
    """``SESSION_SECRET``; ``BackendSettings.check_secrets`` refused to start without it."""
    explicit = settings.session_secret.get_secret_value()
    if not explicit:
        raise ValueError("SESSION_SECRET must be set (docs/security.md)")
    return explicit.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    user_id: int
    login: str
    expires_at: int
    # This App's installations the user could reach at sign-in: the owner API checks a repository's
    # installation is among them before it spends that installation's token on the user (docs/security.md, "A
    # signed-in stranger makes prgate mint and spend a victim installation's token").
    installation_ids: tuple[int, ...] = ()
    # Unix seconds, sub-second: an operator's revocation of a user refuses sessions issued before it,
    # and a sign-in in the same second after it must still work.
    issued_at: float = 0.0
    # Who vouches for ``user_id``: a page of one provider's challenge never accepts the other's session.
    provider: Provider = Provider.GITHUB


@dataclass(frozen=True, slots=True)
class OAuthState:
    state: str
    next_path: str | None
    provider: Provider = Provider.GITHUB


def oauth_cookie_path(provider: Provider) -> str:
    """Each provider's state cookie is sent only to that provider's sign-in routes."""
    return f"/auth/{provider.value}"


class SessionCodec:
    """Signs and reads the session and OAuth-state cookies; derives CSRF tokens."""

    def __init__(self, secret: bytes, *, secure: bool, ttl_seconds: int = SESSION_TTL_SECONDS) -> None:
        self.secure = secure
        self.ttl_seconds = ttl_seconds
        self._keys = {
            purpose: hmac.new(secret, f"prgate/{purpose}".encode(), hashlib.sha256).digest()
            for purpose in ("session", "oauth-state", "csrf")
        }

    @classmethod
    def from_settings(cls, settings: BackendSettings) -> SessionCodec:
        return cls(session_secret(settings), secure=settings.public_url.lower().startswith("https://"))

    # ---- signed blobs --------------------------------------------------------------------------

    def _mac(self, purpose: str, message: str) -> str:
        return _b64(hmac.new(self._keys[purpose], message.encode(), hashlib.sha256).digest())

    def _seal(self, purpose: str, data: dict[str, Any]) -> str:
        body = f"{_VERSION}.{_b64(json.dumps(data, separators=(',', ':')).encode())}"
        return f"{body}.{self._mac(purpose, body)}"

    def _open(self, purpose: str, value: str | None, now: float) -> dict[str, Any] | None:
        if not value or len(value) > _MAX_COOKIE_CHARS:
            return None
        version, _, rest = value.partition(".")
        payload, _, mac = rest.partition(".")
        if version != _VERSION or not payload or not mac:
            return None
        if not hmac.compare_digest(mac, self._mac(purpose, f"{version}.{payload}")):
            return None
        try:
            data = json.loads(_unb64(payload))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(data, dict):
            return None
        exp = data.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool) or exp <= now:
            return None
        return data

    # ---- the session -----------------------------------------------------------------------------

    def issue(
        self, user_id: int, login: str, now: float, installation_ids: tuple[int, ...] = (),
        provider: Provider = Provider.GITHUB,
    ) -> tuple[Session, str]:
        """A fresh session (new id: no fixation) and its cookie value."""
        session = Session(
            sid=secrets.token_hex(16), user_id=user_id, login=login, expires_at=int(now) + self.ttl_seconds,
            installation_ids=tuple(installation_ids), issued_at=round(now, 3), provider=provider,
        )
        value = self._seal(
            "session", {"sid": session.sid, "uid": user_id, "login": login, "exp": session.expires_at,
                        "inst": list(session.installation_ids), "iat": session.issued_at,
                        "prov": provider.value},
        )
        return session, value

    def read(self, value: str | None, now: float) -> Session | None:
        data = self._open("session", value, now)
        if data is None:
            return None
        sid, uid, login = data.get("sid"), data.get("uid"), data.get("login")
        if not isinstance(sid, str) or not isinstance(login, str) or not login:
            return None
        if not isinstance(uid, int) or isinstance(uid, bool):
            return None
        inst = data.get("inst", [])  # a cookie from before sessions carried installations: none (sign in again)
        if not isinstance(inst, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in inst):
            return None
        exp = int(data["exp"])
        iat = data.get("iat", exp - self.ttl_seconds)  # a cookie from before "iat": its earliest issue time
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            return None
        provider = _provider(data.get("prov", Provider.GITHUB.value))  # a cookie from before Bitbucket: GitHub's
        if provider is None:
            return None
        return Session(sid=sid, user_id=uid, login=login, expires_at=exp, installation_ids=tuple(inst),
                       issued_at=float(iat), provider=provider)

    def from_request(self, request: web.Request, now: float) -> Session | None:
        return self.read(request.cookies.get(SESSION_COOKIE), now)

    # ---- OAuth state (login CSRF) ------------------------------------------------------------------

    def new_oauth_state(
        self, next_path: str | None, now: float, ttl_seconds: int = OAUTH_STATE_TTL_SECONDS,
        provider: Provider = Provider.GITHUB,
    ) -> tuple[OAuthState, str]:
        """A random ``state`` for the authorize URL, bound to this browser by a signed cookie."""
        state = OAuthState(state=secrets.token_urlsafe(32), next_path=next_path, provider=provider)
        value = self._seal(
            "oauth-state",
            {"state": state.state, "next": next_path, "exp": int(now) + ttl_seconds, "prov": provider.value},
        )
        return state, value

    def read_oauth_state(
        self, value: str | None, now: float, provider: Provider = Provider.GITHUB
    ) -> OAuthState | None:
        """The state this browser was given for ``provider``'s sign-in; another provider's reads as none."""
        data = self._open("oauth-state", value, now)
        if data is None:
            return None
        state, next_path = data.get("state"), data.get("next")
        if not isinstance(state, str) or not state or not (next_path is None or isinstance(next_path, str)):
            return None
        if _provider(data.get("prov", Provider.GITHUB.value)) is not provider:
            return None
        return OAuthState(state=state, next_path=next_path, provider=provider)

    @staticmethod
    def state_matches(expected: OAuthState, returned: str) -> bool:
        return hmac.compare_digest(expected.state.encode(), returned.encode())

    # ---- CSRF ----------------------------------------------------------------------------------------

    def csrf_token(self, session: Session, scope: str) -> str:
        """A token for form posts, tied to this session and to what the form acts on (``scope``)."""
        return self._mac("csrf", f"{session.sid}\n{session.user_id}\n{scope}")

    def check_csrf(self, session: Session | None, scope: str, token: str | None) -> bool:
        if session is None or not token:
            return False
        return hmac.compare_digest(self.csrf_token(session, scope).encode(), token.encode())

    # ---- cookies ---------------------------------------------------------------------------------------

    def set_session_cookie(self, response: web.StreamResponse, value: str) -> None:
        response.set_cookie(
            SESSION_COOKIE, value, max_age=self.ttl_seconds, path="/", secure=self.secure, httponly=True,
            samesite="Lax",
        )

    def set_oauth_cookie(
        self, response: web.StreamResponse, value: str, provider: Provider = Provider.GITHUB
    ) -> None:
        response.set_cookie(
            OAUTH_COOKIE, value, max_age=OAUTH_STATE_TTL_SECONDS, path=oauth_cookie_path(provider),
            secure=self.secure, httponly=True, samesite="Lax",
        )

    def clear_session_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path="/", secure=self.secure, httponly=True, samesite="Lax")

    def clear_oauth_cookie(self, response: web.StreamResponse, provider: Provider = Provider.GITHUB) -> None:
        response.del_cookie(
            OAUTH_COOKIE, path=oauth_cookie_path(provider), secure=self.secure, httponly=True, samesite="Lax"
        )


def _provider(value: object) -> Provider | None:
    try:
        return Provider(value) if isinstance(value, str) else None
    except ValueError:
        return None


def csrf_scope_for_challenge(challenge_id: int) -> str:
    return f"verify:{challenge_id}"


CSRF_SCOPE_LOGOUT = "logout"
# The settings page's form (web.settings): its own scope, so a logout or owner API token does not post it.
CSRF_SCOPE_SETTINGS_PAGE = "settings-page"
