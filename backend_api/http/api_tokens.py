"""API tokens (docs/api-tokens.md): the admin's internal routes behind ``prgate api-token`` and the
bearer check of the read APIs.

The token is in one answer only, the create call's; it is never logged (logs name the token by id
and name). Lookups are by SHA-256, one indexed query per request and no cache, so a revocation
holds on every replica at once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiohttp import web

from backend_api.auth.api_tokens import (
    OPERATOR,
    BearerProblem,
    Grant,
    new_token,
    normalize_jira_site,
    parse_authorization,
    should_touch,
    token_hash,
)
from backend_api.http.errors import ApiError, json_response, read_model
from backend_api.keys import DB_POOL
from backend_api.metrics import count_api_token
from backend_api.store import api_tokens as store
from backend_api.store import installations, repositories
from shared_contracts.api_tokens import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenList,
    ApiTokenRevoke,
    ApiTokenRevoked,
    TokenScope,
)
from shared_contracts.owner import InstallationStatus

log = logging.getLogger(__name__)

# The token a request was let in with (by id, never the token): a later out-of-scope answer is counted.
API_TOKEN_ID = web.RequestKey("api_token_id", int)

_REFUSALS = {
    BearerProblem.MALFORMED: "the Authorization header must be 'Bearer prgate_…' (prgate api-token create)",
    BearerProblem.UNKNOWN: "this API token is not valid",
    BearerProblem.REVOKED: "this API token is not valid",  # revoked and unknown look alike to the caller
}


async def bearer_grant(request: web.Request) -> Grant | None:
    """What the request's bearer token may read; None without an Authorization header (a session
    may then decide); 401 for a malformed, unknown or revoked token."""
    bearer = parse_authorization(request.headers.get("Authorization"))
    if bearer.token is None and bearer.problem is None:
        return None
    problem = bearer.problem
    stored = None
    if bearer.token is not None:
        async with request.app[DB_POOL].acquire() as conn:
            stored = await store.by_hash(conn, token_hash(bearer.token))
            if stored is None:
                problem = BearerProblem.UNKNOWN
            elif stored.revoked:
                problem = BearerProblem.REVOKED
            elif should_touch(stored.last_used_at, datetime.now(UTC)):
                await store.touch(conn, stored.token_id)
    if problem is not None or stored is None:
        assert problem is not None
        count_api_token(request, problem.value)
        extra = {"outcome": problem.value, **({"token_id": stored.token_id} if stored is not None else {})}
        log.info("read API: bearer token refused", extra=extra)
        # RFC 6750 §3: the scheme and, for a token that is well-formed but not valid, invalid_token.
        challenge = 'Bearer realm="prgate"' + (', error="invalid_token"' if problem is not BearerProblem.MALFORMED
                                               else ', error="invalid_request"')
        raise ApiError(401, "unauthorized", _REFUSALS[problem], headers={"WWW-Authenticate": challenge})
    count_api_token(request, "ok")
    request[API_TOKEN_ID] = stored.token_id
    return stored.grant


def out_of_scope(request: web.Request) -> None:
    """Count a token that asked for what it may not read (answered 404, like an unknown repository)."""
    if API_TOKEN_ID in request:
        count_api_token(request, "out_of_scope")
        log.info("read API: token out of its scope", extra={"token_id": request[API_TOKEN_ID]})


# ---- the admin's internal routes (prgate api-token) ------------------------------------------------


async def _grant_for(request: web.Request, body: ApiTokenCreate) -> Grant:
    """The target of the scope must exist now: a known installation, a connected workspace."""
    match body.scope:
        case TokenScope.OPERATOR:
            return OPERATOR
        case TokenScope.INSTALLATION:
            assert body.installation_id is not None
            async with request.app[DB_POOL].acquire() as conn:
                found = await installations.detail(conn, body.installation_id)
            if found is None or found.status is InstallationStatus.DELETED:
                raise ApiError(404, "not_found", f"prgate knows no GitHub installation {body.installation_id}")
            return Grant(TokenScope.INSTALLATION, installation_id=body.installation_id)
        case TokenScope.WORKSPACE:
            assert body.workspace is not None
            async with request.app[DB_POOL].acquire() as conn:
                workspace_id = await repositories.workspace_id_by_slug(conn, body.workspace)
            if workspace_id is None:
                raise ApiError(404, "not_found", f"no connected Bitbucket workspace {body.workspace!r} "
                               "(prgate bitbucket connect it first)")
            return Grant(TokenScope.WORKSPACE, workspace_id=workspace_id)
        case TokenScope.JIRA_SITE:
            assert body.jira_site is not None
            try:
                site = normalize_jira_site(body.jira_site)
            except ValueError as exc:
                raise ApiError(422, "validation_error", str(exc),
                               [{"loc": ["body", "jira_site"], "msg": str(exc), "type": "value_error"}]) from None
            return Grant(TokenScope.JIRA_SITE, jira_site=site)
    raise ApiError(422, "validation_error", f"unknown scope {body.scope}")


async def create_token(request: web.Request) -> web.Response:
    body = await read_model(request, ApiTokenCreate)
    grant = await _grant_for(request, body)
    token = new_token()
    async with request.app[DB_POOL].acquire() as conn:
        try:
            info = await store.create(conn, body.name, grant, token_hash(token))
        except store.NameTaken:
            raise ApiError(409, "conflict", f"a live API token is already named {body.name!r} "
                           "(revoke it first, or choose another name)") from None
    log.info("api token created", extra={"token_id": info.token_id, "token_name": info.name,
                                         "scope": info.scope.value})
    return json_response(ApiTokenCreated(**info.model_dump(), token=token))


async def list_tokens(request: web.Request) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn:
        items = await store.list_all(conn)
    return json_response(ApiTokenList(items=items))


async def revoke_token(request: web.Request) -> web.Response:
    body = await read_model(request, ApiTokenRevoke)
    async with request.app[DB_POOL].acquire() as conn:
        found = await store.revoke(conn, body.name_or_id)
    if found is None:
        raise ApiError(404, "not_found", f"no live API token named {body.name_or_id!r} and no token of that id")
    info, already = found
    log.info("api token revoked", extra={"token_id": info.token_id, "token_name": info.name,
                                         "already_revoked": already})
    return json_response(ApiTokenRevoked(token=info, already_revoked=already))
