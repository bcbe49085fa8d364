"""Thin handlers of Bitbucket tenancy (docs/bitbucket.md "Tenancy", docs/owner-api.md "Bitbucket workspaces").

`/api/v1/bitbucket/workspaces*` is the operator's: a signed-in operator (``PRGATE_OPERATORS``; writes
need the session's ``X-CSRF-Token``), or a request signed with the admin key (``PRGATE_ADMIN_SECRETS``,
what `prgate bitbucket connect` sends). The token route and re-discovery are internal, signed by
the workers' key (the route table's scopes).
"""

from __future__ import annotations

import logging

from aiohttp import web

from backend_api.bitbucket.workspaces import WorkspaceApi, hook_url
from backend_api.facts import Tenancy
from backend_api.gate import bitbucket_tenancy as tenancy
from backend_api.gate.bitbucket_tenancy import TenancyConfig, TenancyRefused
from backend_api.http.api_tokens import API_TOKEN_ID, bearer_grant
from backend_api.http.errors import ApiError, json_error, json_response, path_id, read_model
from backend_api.keys import DB_POOL, HTTP_CLIENT, NONCES, SESSIONS, SETTINGS, TENANCY, VAULT
from backend_api.metrics import count_signature_failure
from backend_api.owner.access import CSRF_HEADER, CSRF_SCOPE_OWNER_API, is_operator
from backend_api.web.revocation import current_session
from shared_contracts import signing
from shared_contracts.api_tokens import TokenScope
from shared_contracts.bitbucket import BitbucketConnectRequest, BitbucketRediscoverRequest
from shared_contracts.keys import Caller

log = logging.getLogger(__name__)

_STATUS = {
    "token_refused": 422, "unknown_workspace": 422, "bad_answer": 502, "unavailable": 503,
    "not_configured": 503, "not_found": 404,
}
# What a refused token answers: the operator's mistake, not ours, and not a missing sign-in (401).
_MESSAGES = {"token_refused": "the token was refused"}


def _refused(request: web.Request, operation: str, exc: TenancyRefused) -> web.Response:
    request[TENANCY] = Tenancy(operation, (exc.kind,))
    message = f"{_MESSAGES[exc.kind]}: {exc.message}" if exc.kind in _MESSAGES else exc.message
    response = json_error(_STATUS[exc.kind], exc.kind, message)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _config(request: web.Request) -> TenancyConfig:
    settings = request.app[SETTINGS]
    return TenancyConfig(
        vault=request.app.get(VAULT), hook_master=settings.bitbucket_hook_master(),
        hook_url=lambda workspace_uuid: hook_url(settings.bot_public_url, workspace_uuid),
        token_ttl_seconds=settings.bitbucket_token_ttl_seconds,
    )


def _api_for(request: web.Request) -> tenancy.ApiFactory:
    session, api_url = request.app[HTTP_CLIENT], request.app[SETTINGS].bitbucket_api_url
    return lambda token: WorkspaceApi(session, api_url, token)


async def _operator(request: web.Request, *, write: bool) -> str:
    """Who is asking, as a log field: the admin key, an operator API token, or an operator's session.
    401 / 403 otherwise."""
    if signing.SIGNATURE_HEADER in request.headers:
        body = await request.read()
        admin = {Caller.ADMIN: request.app[SETTINGS].admin_secrets}
        try:
            signing.verify_keyring(admin, request.headers, request.method, request.raw_path, body)
        except signing.SignatureError as exc:
            count_signature_failure(request, str(exc))
            raise ApiError(401, "unauthorized", f"admin signature refused: {exc}") from None
        if not await request.app[NONCES].first_use(request.headers[signing.NONCE_HEADER]):
            count_signature_failure(request, "replayed nonce")
            raise ApiError(401, "unauthorized", "replayed nonce")
        return "admin-key"
    grant = await bearer_grant(request)  # 401 for a malformed, unknown or revoked token
    if grant is not None:
        if grant.scope is not TokenScope.OPERATOR:
            raise ApiError(403, "forbidden", "only an operator API token (prgate api-token create --operator) "
                           "manages Bitbucket workspaces")
        return f"api-token:{request[API_TOKEN_ID]}"
    session = await current_session(request)
    if session is None:
        raise ApiError(401, "unauthorized", "sign in as an operator, or sign the request with the admin key")
    if not is_operator(request.app[SETTINGS].operators, session.login, session.user_id):
        raise ApiError(403, "forbidden", "only this prgate's operators (PRGATE_OPERATORS) manage Bitbucket workspaces")
    if write and not request.app[SESSIONS].check_csrf(session, CSRF_SCOPE_OWNER_API, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "csrf_failed",
                       f"missing or wrong {CSRF_HEADER} header (GET /api/v1/session gives the token)")
    return f"operator:{session.login}"


def _workspace_segment(request: web.Request) -> str:
    raw = request.match_info["workspace"]
    if not raw or len(raw) > 62 or not all(c.isascii() and (c.isalnum() or c in "._-") for c in raw):
        raise ApiError(404, "not_found", "no such Bitbucket workspace")
    return raw


async def connect_workspace(request: web.Request) -> web.Response:
    who = await _operator(request, write=True)
    req = await read_model(request, BitbucketConnectRequest)
    try:
        answer = await tenancy.connect(request.app[DB_POOL], _api_for(request), _config(request), req.workspace,
                                       req.token.get_secret_value())
    except TenancyRefused as exc:
        return _refused(request, "connect", exc)
    request[TENANCY] = Tenancy("connect", (answer.hook,))
    log.info("bitbucket workspace connected by %s", who, extra={"workspace": answer.slug})
    return json_response(answer)


async def list_workspaces(request: web.Request) -> web.Response:
    await _operator(request, write=False)
    return json_response(await tenancy.list_workspaces(request.app[DB_POOL]))


async def disconnect_workspace(request: web.Request) -> web.Response:
    who = await _operator(request, write=True)
    workspace = _workspace_segment(request)
    purge_raw = request.query.get("purge", "false")
    if purge_raw not in ("true", "false"):
        raise ApiError(400, "bad_request", "purge must be true or false")
    try:
        answer = await tenancy.disconnect(request.app[DB_POOL], _api_for(request), _config(request), workspace,
                                          purge=purge_raw == "true")
    except TenancyRefused as exc:
        return _refused(request, "disconnect", exc)
    request[TENANCY] = Tenancy("disconnect", ("purged" if answer.purged else "disconnected",))
    log.info("bitbucket workspace disconnected by %s", who, extra={"workspace": answer.slug})
    return json_response(answer)


async def workspace_token(request: web.Request) -> web.Response:
    tenant_id = path_id(request, "tenant_id")
    settings = request.app[SETTINGS]
    try:
        answer = await tenancy.token_for(request.app[DB_POOL], request.app.get(VAULT), tenant_id,
                                         settings.bitbucket_token_ttl_seconds)
    except TenancyRefused as exc:
        return _refused(request, "token", exc)
    request[TENANCY] = Tenancy("token", ("issued",))
    return json_response(answer)


async def rediscover(request: web.Request) -> web.Response:
    await read_model(request, BitbucketRediscoverRequest)
    report = await tenancy.rediscover(request.app[DB_POOL], _api_for(request), request.app.get(VAULT))
    request[TENANCY] = Tenancy("rediscover", tuple("error" if w.error else "listed" for w in report.workspaces))
    return json_response(report)
