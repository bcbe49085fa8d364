"""Who a GitHub API request is: the App (JWT), an installation token, an OAuth user token, or nobody."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jwt
from aiohttp import web

from prgate.simulator.github import manifest, oauth
from prgate.simulator.github.errors import ApiError
from prgate.simulator.github.model import AccessToken
from prgate.simulator.github.state import SimulatorState

AuthKind = Literal["app", "installation", "user", "none"]  # none: no credentials needed
JWT_MAX_LIFETIME_SECONDS = 600 + 60
JWT_CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class AuthContext:
    kind: AuthKind
    installation_id: int | None
    token: AccessToken | None

    @property
    def bucket(self) -> str:
        if self.kind == "user":
            return "user"
        if self.kind == "none":
            return "anonymous"
        return "app" if self.kind == "app" else f"installation:{self.installation_id}"


AUTH = web.RequestKey("prgate_sim_auth", AuthContext)


def _credentials(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not value.strip():
        return None
    return value.strip()


def _verify_app_jwt(
    state: SimulatorState, token: str, registered: tuple[str, tuple[str, ...]] | None = None
) -> None:
    bad_jwt = "A JSON web token could not be decoded"
    exp_message = (
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which "
        "the assertion expires"
    )
    # ``registered``: the key and issuers of an App created through the manifest flow (manifest.py).
    public_key, issuers = registered or (
        state.config.app_public_key_pem, (str(state.config.app_id), state.config.client_id)
    )
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
        )
    except jwt.PyJWTError:
        raise ApiError(401, bad_jwt) from None
    if str(claims.get("iss")) not in issuers:
        raise ApiError(401, "'Issuer' claim ('iss') must be an Integer")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= state.now():
        raise ApiError(401, exp_message)
    if not isinstance(iat, int | float) or isinstance(iat, bool) or iat > state.now() + JWT_CLOCK_SKEW_SECONDS:
        raise ApiError(
            401, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
        )
    if exp - iat > JWT_MAX_LIFETIME_SECONDS:
        raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")


def authenticate(request: web.Request, state: SimulatorState, kind: AuthKind) -> AuthContext:
    if kind == "none":
        return AuthContext(kind="none", installation_id=None, token=None)
    credentials = _credentials(request)
    if credentials is None:
        raise ApiError(401, "Requires authentication")
    if kind == "app":
        _verify_app_jwt(state, credentials, manifest.registered_app_key(request.app, credentials))
        installation_id = request.match_info.get("installation_id")
        return AuthContext(
            kind="app",
            installation_id=int(installation_id) if installation_id and installation_id.isdigit() else None,
            token=None,
        )
    if kind == "user":  # an OAuth user token (``gho_…``) from the web flow in oauth.py
        if request.app[oauth.SIM_OAUTH].user_for(credentials) is None:
            raise ApiError(401, "Bad credentials")
        return AuthContext(kind="user", installation_id=None, token=None)
    token = state.token_info(credentials)
    if token is None:
        raise ApiError(401, "Bad credentials")
    return AuthContext(kind="installation", installation_id=token.installation_id, token=token)
