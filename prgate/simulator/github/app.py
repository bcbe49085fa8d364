"""The GitHub simulator as an aiohttp application.

``create_simulator_app(config)`` serves a subset of GitHub's REST API (same paths, status codes,
headers and JSON shapes) over the in-memory :class:`SimulatorState`, plus test-control routes
under ``/_sim/``. One middleware does what GitHub does around every API request, in this order:
authenticate, count against the hourly budget, add latency, inject faults (before the handler,
so a refused request changes nothing; "after write" faults replace a successful response),
then add rate-limit headers and record the request.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, cast

import aiohttp
import jwt
from aiohttp import web
from pydantic import ValidationError
from yarl import URL

from prgate.simulator.core.faults import WRITE_METHODS, FaultConfig, FaultDecision, FaultRule
from prgate.simulator.github import manifest, oauth, webhooks
from prgate.simulator.github.state import (
    AccessToken,
    Clock,
    IssueComment,
    JsonDict,
    PrState,
    Renderer,
    Repository,
    RequestRecord,
    SimApp,
    SimulatorConfig,
    SimulatorError,
    SimulatorState,
    WebhookDelivery,
    iso,
)

AuthKind = Literal["app", "installation", "user", "none"]  # none: no credentials needed
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DOCS = "https://docs.github.com/rest"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_DOCS = RATE_LIMIT_DOCS + "#about-secondary-rate-limits"
MAX_COMMENT_LENGTH = 65536
JWT_MAX_LIFETIME_SECONDS = 600 + 60
JWT_CLOCK_SKEW_SECONDS = 60
UNAUTHENTICATED_LIMIT = 60


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


SIM_STATE = web.AppKey("prgate_sim_state", SimulatorState)
SIM_SESSION = web.AppKey("prgate_sim_session", aiohttp.ClientSession)
SIM_TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("prgate_sim_tasks")
SIM_ROUTE_AUTH: web.AppKey[dict[tuple[str, str], AuthKind]] = web.AppKey("prgate_sim_route_auth")
AUTH = web.RequestKey("prgate_sim_auth", AuthContext)


class ApiError(SimulatorError):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        errors: list[JsonDict] | None = None,
        documentation_url: str = DOCS,
    ) -> None:
        super().__init__(status, message, errors)
        self.headers = headers or {}
        self.documentation_url = documentation_url


def _error_response(error: SimulatorError) -> web.Response:
    body: JsonDict = {"message": error.message}
    if error.errors:
        body["errors"] = error.errors
    body["documentation_url"] = error.documentation_url if isinstance(error, ApiError) else DOCS
    body["status"] = str(error.status)
    headers = error.headers if isinstance(error, ApiError) else {}
    return web.json_response(body, status=error.status, headers=headers)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# ---- request helpers ----------------------------------------------------------------------------


def _state(request: web.Request) -> SimulatorState:
    return request.app[SIM_STATE]


def _renderer(request: web.Request) -> Renderer:
    return Renderer(_state(request), f"{request.scheme}://{request.host}")


async def _body(request: web.Request) -> JsonDict:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "Problems parsing JSON")
    return data


def _int(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise ApiError(404, "Not Found") from None


def _query_int(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        return default


def _full_name(request: web.Request) -> str:
    """The path's repository name: ``/repos/{owner}/{repo}/…`` names it, ``/repositories/{id}/…``
    (GitHub serves every repository route under both) resolves it from the id."""
    if "repository_id" in request.match_info:
        return _state(request).repo_by_id(_int(request, "repository_id")).full_name
    return f"{request.match_info['owner']}/{request.match_info['repo']}"


def _scoped_repo(request: web.Request) -> Repository:
    """The path's repository, if the caller's installation token may see it (GitHub says 404 if not)."""
    repo = _state(request).repo_by_name(_full_name(request))
    auth = request[AUTH]
    if auth.kind == "installation":
        token = auth.token
        if repo.installation_id != auth.installation_id or (
            token is not None and token.repository_ids is not None and repo.id not in token.repository_ids
        ):
            raise ApiError(404, "Not Found")
    return repo


def _require(request: web.Request, level: str, *permissions: str) -> None:
    """403 unless the installation token has ``level`` on one of ``permissions``."""
    token = request[AUTH].token
    if token is None:
        return
    rank = {"read": 1, "write": 2, "admin": 3}
    if any(rank.get(token.permissions.get(p, ""), 0) >= rank[level] for p in permissions):
        return
    raise ApiError(403, "Resource not accessible by integration")


def _link_header(url: URL, page: int, last_page: int) -> str | None:
    """GitHub's ``Link`` header: prev, next, last, first, built on the request's own URL."""
    if last_page <= 1 and page <= 1:
        return None

    def at(number: int) -> str:
        query = [(k, v) for k, v in url.query.items() if k != "page"] + [("page", str(number))]
        return str(url.with_query(query))

    parts: list[str] = []
    if page > 1:
        parts.append(f'<{at(page - 1)}>; rel="prev"')
    if page < last_page:
        parts.append(f'<{at(page + 1)}>; rel="next"')
        parts.append(f'<{at(last_page)}>; rel="last"')
    if page > 1:
        parts.append(f'<{at(1)}>; rel="first"')
    return ", ".join(parts)


def _paginate(request: web.Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    per_page = _query_int(request, "per_page", 30)
    per_page = 30 if per_page <= 0 else min(per_page, 100)
    page = max(1, _query_int(request, "page", 1))
    last_page = max(1, math.ceil(len(items) / per_page))
    start = (page - 1) * per_page
    link = _link_header(request.url, page, last_page) if items else None
    return items[start : start + per_page], ({"Link": link} if link else {})


def _spawn_webhook(request: web.Request, event: str, payload: JsonDict) -> None:
    """Deliver a webhook in the background, as GitHub does after an API change."""
    app = request.app
    state = app[SIM_STATE]
    if not state.config.webhook_url or not state.config.webhooks_on_api_changes:
        return
    task = asyncio.get_running_loop().create_task(_deliver_quietly(state, app[SIM_SESSION], event, payload))
    app[SIM_TASKS].add(task)
    task.add_done_callback(app[SIM_TASKS].discard)


async def _deliver_quietly(
    state: SimulatorState, session: aiohttp.ClientSession, event: str, payload: JsonDict
) -> None:
    await _deliver_kept(state, session, event, payload)


async def _deliver_kept(
    state: SimulatorState,
    session: aiohttp.ClientSession,
    event: str,
    payload: JsonDict,
    *,
    url: str | None = None,
    secret: str | None = None,
    delivery_id: str | None = None,
    redelivery: bool = False,
) -> WebhookDelivery:
    """``webhooks.deliver``, keeping the payload on the recorded attempt (for redelivery)."""
    delivery = await webhooks.deliver(
        state, session, event, payload, url=url, secret=secret, delivery_id=delivery_id
    )
    return state.amend_delivery(delivery.id, payload=payload, redelivery=redelivery or None)


# ---- authentication -----------------------------------------------------------------------------


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


def _authenticate(request: web.Request, state: SimulatorState, kind: AuthKind) -> AuthContext:
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


# ---- fault responses ----------------------------------------------------------------------------


def _fault_response(decision: FaultDecision, installation_id: int | None, now: float) -> web.Response:
    request_id = _request_id()
    if decision.kind == "primary_rate_limit":
        target = f"installation ID {installation_id}" if installation_id is not None else "this app"
        error = ApiError(
            decision.status,
            decision.message
            or f"API rate limit exceeded for {target}. If you reach out to GitHub Support "
            f"for help, please include the request ID {request_id}.",
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(now) + decision.reset_seconds)},
            documentation_url=RATE_LIMIT_DOCS,
        )
    elif decision.kind == "secondary_rate_limit":
        error = ApiError(
            decision.status,
            decision.message
            or "You have exceeded a secondary rate limit. Please wait a few minutes before "
            f"you try again. If you reach out to GitHub Support for help, please include the request ID "
            f"{request_id}.",
            headers={"retry-after": str(decision.retry_after_seconds)},
            documentation_url=SECONDARY_DOCS,
        )
    else:
        message = {502: "Server Error", 503: "Service Unavailable"}.get(decision.status, _reason(decision.status))
        error = ApiError(decision.status, decision.message or message)
    response = _error_response(error)
    response.headers["x-github-request-id"] = request_id
    return response


def _request_id() -> str:
    raw = uuid.uuid4().hex.upper()
    return f"{raw[:4]}:{raw[4:8]}:{raw[8:15]}:{raw[15:22]}:{raw[22:30]}"


# ---- middleware ---------------------------------------------------------------------------------


def _record(
    state: SimulatorState,
    request: web.Request,
    installation_id: int | None,
    response: web.StreamResponse,
    fault: FaultDecision | None = None,
) -> None:
    state.record_request(
        RequestRecord(
            method=request.method,
            path=request.path,
            query=request.query_string,
            installation_id=installation_id,
            status=response.status,
            at=state.now(),
            fault=None if fault is None else f"{fault.source}:{fault.kind}",
        )
    )


@web.middleware
async def _github_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (
        request.path == "/_sim"
        or request.path.startswith(("/_sim/", oauth.OAUTH_PREFIX))
        or manifest.is_web_path(request.path)
    ):
        try:
            return await handler(request)
        except SimulatorError as error:
            return _error_response(error)
    state = request.app[SIM_STATE]
    response: web.StreamResponse
    match_error = request.match_info.http_exception
    if match_error is not None:
        response = _error_response(ApiError(match_error.status, _reason(match_error.status)))
        _record(state, request, None, response)
        return response

    route = request.match_info.route
    kind = request.app[SIM_ROUTE_AUTH].get((route.method, route.resource.canonical if route.resource else ""))
    now = state.now()
    try:
        auth = _authenticate(request, state, kind or "installation")
    except SimulatorError as error:
        response = _error_response(error)
        snapshot = state.rate_limiter.consume("anonymous", now, limit=UNAUTHENTICATED_LIMIT, block=False)
        response.headers.update(snapshot.headers())
        _record(state, request, None, response)
        return response
    request[AUTH] = auth
    installation_id = auth.installation_id

    snapshot = state.rate_limiter.consume(auth.bucket, now)
    if snapshot.exhausted:
        target = f"installation ID {installation_id}" if auth.kind == "installation" else "this app"
        response = _error_response(
            ApiError(403, f"API rate limit exceeded for {target}.", documentation_url=RATE_LIMIT_DOCS)
        )
        response.headers.update(snapshot.headers())
        _record(state, request, installation_id, response)
        return response

    delay = state.faults.latency_seconds(installation_id)
    if delay > 0:
        await asyncio.sleep(delay)

    decision = state.faults.decide(request.method, request.path, installation_id)
    if (
        (decision is None or decision.after_write)
        and request.method in WRITE_METHODS
        and auth.kind == "installation"
        and installation_id is not None
        and state.faults.content_throttle_enabled
    ):
        decision = state.throttle.admit(installation_id, state.now()) or decision

    if decision is not None and not decision.after_write:
        response = _fault_response(decision, installation_id, state.now())
    else:
        try:
            response = await handler(request)
        except SimulatorError as error:
            response = _error_response(error)
        if decision is not None and response.status >= 400:
            decision = None  # the request failed on its own, so nothing was written
        if decision is not None:
            response = _fault_response(decision, installation_id, state.now())

    headers = snapshot.headers()
    if decision is not None and decision.kind == "primary_rate_limit":
        headers.update({"x-ratelimit-used": str(snapshot.limit)})
        headers.update({k: v for k, v in response.headers.items() if k.startswith("x-ratelimit")})
    for key, value in headers.items():
        response.headers[key] = value
    response.headers.setdefault("x-github-request-id", _request_id())
    response.headers.setdefault("x-github-media-type", "github.v3; format=json")
    response.headers.setdefault("x-github-api-version-selected", "2022-11-28")
    _foreign_link_origin(state.faults.config.link_origin, response)
    _record(state, request, installation_id, response, decision)
    return response


def _foreign_link_origin(origin: str | None, response: web.StreamResponse) -> None:
    """The `link_origin` fault: every URL of the `Link` header moved to `origin`, path and query kept."""
    link = response.headers.get("Link")
    if origin is None or not link:
        return
    base = URL(origin)

    def moved(match: re.Match[str]) -> str:
        url = URL(match.group(1))
        return "<" + str(url.with_scheme(base.scheme).with_host(base.host or "").with_port(base.port)) + ">"

    response.headers["Link"] = re.sub(r"<([^>]*)>", moved, link)


# ---- GitHub API handlers: apps and installations ------------------------------------------------


async def create_access_token(request: web.Request) -> web.Response:
    state = _state(request)
    installation_id = _int(request, "installation_id")
    body = await _body(request)
    installation = state.get_installation(installation_id)
    repository_ids: list[int] | None = None
    if body.get("repository_ids") is not None or body.get("repositories") is not None:
        owned = state.installation_repositories(installation.id)
        by_name = {r.name.lower(): r.id for r in owned}
        raw_ids = body.get("repository_ids") or []
        if not isinstance(raw_ids, list) or not all(isinstance(r, int) for r in raw_ids):
            raise ApiError(422, "Invalid request: repository_ids must be a list of integers")
        repository_ids = list(raw_ids)
        for name in body.get("repositories") or []:
            if str(name).lower() not in by_name:
                raise ApiError(
                    422,
                    "There is at least one repository that does not exist or is not "
                    "accessible to the parent installation.",
                )
            repository_ids.append(by_name[str(name).lower()])
    permissions = body.get("permissions")
    if permissions is not None and not isinstance(permissions, dict):
        raise ApiError(422, "Invalid request: permissions is not an object")
    token = state.issue_token(installation.id, permissions=permissions, repository_ids=repository_ids)
    return web.json_response(_renderer(request).installation_token(token), status=201)


async def list_app_installations(request: web.Request) -> web.Response:
    state = _state(request)
    installations = sorted(state.installations.values(), key=lambda i: i.id)
    page, headers = _paginate(request, installations)
    render = _renderer(request)
    return web.json_response([render.installation(i) for i in page], headers=headers)


async def get_app_installation(request: web.Request) -> web.Response:
    installation = _state(request).get_installation(_int(request, "installation_id"))
    return web.json_response(_renderer(request).installation(installation))


async def get_repo_installation(request: web.Request) -> web.Response:
    state = _state(request)
    repo = state.repo_by_name(_full_name(request))
    return web.json_response(_renderer(request).installation(state.get_installation(repo.installation_id)))


async def list_hook_deliveries(request: web.Request) -> web.Response:
    state = _state(request)
    per_page = min(max(1, _query_int(request, "per_page", 30)), 100)
    cursor = _query_int(request, "cursor", 0)
    newest_first = sorted(state.deliveries, key=lambda d: d.id, reverse=True)
    if cursor:
        newest_first = [d for d in newest_first if d.id < cursor]
    page = newest_first[:per_page]
    headers: dict[str, str] = {}
    if len(newest_first) > per_page:
        query = [(k, v) for k, v in request.url.query.items() if k != "cursor"]
        next_url = request.url.with_query([*query, ("cursor", str(page[-1].id))])
        headers["Link"] = f'<{next_url}>; rel="next"'
    return web.json_response([d.to_json() for d in page], headers=headers)


async def get_hook_delivery(request: web.Request) -> web.Response:
    delivery = _state(request).get_delivery(_int(request, "delivery_id"))
    return web.json_response(delivery.to_json_with_request())


REDELIVERY_WINDOW_SECONDS = 3 * 24 * 3600  # GitHub redelivers deliveries of the past 3 days


async def redeliver_hook_delivery(request: web.Request) -> web.Response:
    """``POST /app/hook/deliveries/{delivery_id}/attempts``: 202, then the same guid and payload are sent
    again in the background (to the attempt's URL) and recorded as a new attempt with ``redelivery``."""
    state = _state(request)
    delivery = state.get_delivery(_int(request, "delivery_id"))
    if delivery.payload is None or state.now() - delivery.delivered_at > REDELIVERY_WINDOW_SECONDS:
        raise SimulatorError(422, "This delivery cannot be redelivered")
    app = request.app
    task = asyncio.get_running_loop().create_task(_redeliver(state, app[SIM_SESSION], delivery))
    app[SIM_TASKS].add(task)
    task.add_done_callback(app[SIM_TASKS].discard)
    return web.json_response({}, status=202)


async def _redeliver(state: SimulatorState, session: aiohttp.ClientSession, delivery: WebhookDelivery) -> None:
    await _deliver_kept(
        state, session, delivery.event, delivery.payload or {}, redelivery=True,
        url=delivery.url, delivery_id=delivery.guid,
    )


async def list_installation_repositories(request: web.Request) -> web.Response:
    state = _state(request)
    auth = request[AUTH]
    assert auth.installation_id is not None
    installation = state.get_installation(auth.installation_id)
    repos = state.installation_repositories(installation.id)
    if auth.token is not None and auth.token.repository_ids is not None:
        repos = [r for r in repos if r.id in auth.token.repository_ids]
    page, headers = _paginate(request, repos)
    render = _renderer(request)
    selection = (
        "selected" if auth.token and auth.token.repository_ids is not None else (installation.repository_selection)
    )
    body = {
        "total_count": len(repos),
        "repository_selection": selection,
        "repositories": [render.repository(r) for r in page],
    }
    return web.json_response(body, headers=headers)


# ---- GitHub API handlers: repositories ----------------------------------------------------------


async def get_repository(request: web.Request) -> web.Response:
    return web.json_response(_renderer(request).repository(_scoped_repo(request)))


async def list_issue_comments(request: web.Request) -> web.Response:
    repo = _scoped_repo(request)
    _require(request, "read", "issues", "pull_requests")
    comments = _state(request).comments_for(repo.full_name, _int(request, "issue_number"))
    page, headers = _paginate(request, comments)
    render = _renderer(request)
    return web.json_response([render.comment(c) for c in page], headers=headers)


def _comment_body(body: JsonDict, resource: str = "IssueComment") -> str:
    text = body.get("body")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(
            422,
            "Validation Failed",
            errors=[{"resource": resource, "code": "missing_field", "field": "body"}],
            documentation_url=f"{DOCS}/issues/comments#create-an-issue-comment",
        )
    if len(text) > MAX_COMMENT_LENGTH:
        raise ApiError(
            422,
            "Validation Failed",
            errors=[
                {
                    "resource": resource,
                    "code": "custom",
                    "field": "body",
                    "message": f"body is too long (maximum is {MAX_COMMENT_LENGTH} characters)",
                }
            ],
        )
    return text


async def create_issue_comment(request: web.Request) -> web.Response:
    repo = _scoped_repo(request)
    _require(request, "write", "issues", "pull_requests")
    state = _state(request)
    number = _int(request, "issue_number")
    state.get_pull_request(repo.full_name, number)
    text = _comment_body(await _body(request))
    comment = state.add_comment(repo.full_name, number, text, via_app=state.app)
    data = _renderer(request).comment(comment)
    return web.json_response(data, status=201, headers={"Location": data["url"]})


async def get_issue_comment(request: web.Request) -> web.Response:
    repo = _scoped_repo(request)
    _require(request, "read", "issues", "pull_requests")
    comment = _state(request).get_comment(repo.full_name, _int(request, "comment_id"))
    return web.json_response(_renderer(request).comment(comment))


async def update_issue_comment(request: web.Request) -> web.Response:
    repo = _scoped_repo(request)
    _require(request, "write", "issues", "pull_requests")
    state = _state(request)
    comment_id = _int(request, "comment_id")
    _refuse_other_apps_comment(state, state.get_comment(repo.full_name, comment_id))
    comment = state.update_comment(repo.full_name, comment_id, _comment_body(await _body(request)))
    return web.json_response(_renderer(request).comment(comment))


async def delete_issue_comment(request: web.Request) -> web.Response:
    repo = _scoped_repo(request)
    _require(request, "write", "issues", "pull_requests")
    state = _state(request)
    _refuse_other_apps_comment(state, state.get_comment(repo.full_name, _int(request, "comment_id")))
    state.delete_comment(repo.full_name, _int(request, "comment_id"))
    return web.Response(status=204)


async def get_pull_request(request: web.Request) -> web.Response:
    repo = _scoped_repo(request)
    _require(request, "read", "pull_requests")
    pr = _state(request).get_pull_request(repo.full_name, _int(request, "pull_number"))
    return web.json_response(_renderer(request).pull_request(pr))


async def update_pull_request(request: web.Request) -> web.Response:
    repo = _scoped_repo(request)
    _require(request, "write", "pull_requests")
    state = _state(request)
    number = _int(request, "pull_number")
    state.get_pull_request(repo.full_name, number)
    body = await _body(request)
    new_state = body.get("state")
    if new_state is not None and new_state not in ("open", "closed"):
        raise ApiError(
            422,
            "Validation Failed",
            errors=[{"resource": "PullRequest", "code": "invalid", "field": "state"}],
        )
    for field in ("title", "body"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise ApiError(422, f"Invalid request: {field} is not a string")
    before = state.get_pull_request(repo.full_name, number).state
    pr = state.edit_pull_request(
        repo.full_name,
        number,
        state=cast(PrState | None, new_state),
        title=body.get("title"),
        body=body.get("body"),
    )
    render = _renderer(request)
    if pr.state != before:
        action = "closed" if pr.state == "closed" else "reopened"
        _spawn_webhook(request, "pull_request", webhooks.pull_request_event(render, pr, action, state.bot_user))
    elif body.get("title") is not None or body.get("body") is not None:
        _spawn_webhook(request, "pull_request", webhooks.pull_request_event(render, pr, "edited", state.bot_user))
    return web.json_response(render.pull_request(pr))


async def list_pull_requests(request: web.Request) -> web.Response:
    repo = _scoped_repo(request)
    _require(request, "read", "pull_requests")
    wanted = request.query.get("state", "open")
    if wanted not in ("open", "closed", "all"):
        raise ApiError(
            422, "Validation Failed", errors=[{"resource": "PullRequest", "code": "invalid", "field": "state"}]
        )
    direction = request.query.get("direction", "desc")
    pulls = _state(request).list_pull_requests(repo.full_name, wanted, direction)
    page, headers = _paginate(request, pulls)
    render = _renderer(request)
    return web.json_response([render.pull_request(p, full=False) for p in page], headers=headers)


async def create_commit_status(request: web.Request) -> web.Response:
    repo = _scoped_repo(request)
    _require(request, "write", "statuses")
    body = await _body(request)
    for field in ("context", "description", "target_url"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise ApiError(422, f"Invalid request: {field} is not a string")
    status = _state(request).add_status(
        repo.full_name,
        request.match_info["sha"],
        str(body.get("state", "")),
        context=body.get("context") or "default",
        description=body.get("description"),
        target_url=body.get("target_url"),
    )
    data = _renderer(request).status(status)
    return web.json_response(data, status=201, headers={"Location": data["url"]})


async def list_commit_statuses(request: web.Request) -> web.Response:
    repo = _scoped_repo(request)
    _require(request, "read", "statuses")
    statuses = _state(request).statuses_for(repo.full_name, request.match_info["ref"])
    page, headers = _paginate(request, statuses)
    render = _renderer(request)
    return web.json_response([render.status(s) for s in page], headers=headers)


async def get_collaborator_permission(request: web.Request) -> web.Response:
    repo = _scoped_repo(request)
    role, user = _state(request).permission_of(repo.full_name, request.match_info["username"])
    return web.json_response(_renderer(request).collaborator_permission(role, user))


# ---- /_sim/ test-control handlers ----------------------------------------------------------------


async def _sim_body(request: web.Request) -> JsonDict:
    try:
        return await _body(request)
    except ApiError as error:
        raise SimulatorError(400, error.message) from None


def _need(body: JsonDict, key: str, kind: type[Any]) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise SimulatorError(422, f"{key!r} is required and must be {kind.__name__}")
    return value


async def _sim_send(request: web.Request, body: JsonDict, event: str, payload: JsonDict) -> list[JsonDict]:
    """Deliver now (awaited) when the /_sim/ request asked for it with ``webhook`` (true or, for pull
    requests, the action) and optionally ``webhook_url`` (default: the configured receiver)."""
    if not body.get("webhook") and not body.get("webhook_url"):
        return []
    state = _state(request)
    url = body.get("webhook_url")
    if not isinstance(url, str) or not url:
        url = None
        if not state.config.webhook_url:
            raise SimulatorError(422, "webhook requested but no webhook_url given or configured")
    delivery = await _deliver_kept(state, request.app[SIM_SESSION], event, payload, url=url)
    return [delivery.to_json()]


async def sim_health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "app_id": _state(request).config.app_id})


async def sim_reset(request: web.Request) -> web.Response:
    _state(request).reset()
    return web.json_response({"ok": True})


async def sim_list_installations(request: web.Request) -> web.Response:
    render = _renderer(request)
    state = _state(request)
    return web.json_response(
        [
            {**render.installation(i), "repositories": [r.full_name for r in state.installation_repositories(i.id)]}
            for i in sorted(state.installations.values(), key=lambda i: i.id)
        ]
    )


async def sim_create_installation(request: web.Request) -> web.Response:
    body = await _sim_body(request)
    state = _state(request)
    account = _need(body, "account", dict)
    installation = state.add_installation(
        _need(body, "id", int),
        account_login=_need(account, "login", str),
        account_id=account.get("id"),
        account_type=account.get("type", "Organization"),
        repository_selection=body.get("repository_selection", "selected"),
        permissions=body.get("permissions"),
    )
    repos = [
        state.add_repository(
            installation.id, _need(r, "id", int), _need(r, "full_name", str), bool(r.get("private", False))
        )
        for r in body.get("repositories") or []
    ]
    render = _renderer(request)
    deliveries = await _sim_send(
        request,
        body,
        "installation",
        webhooks.installation_event(render, installation, "created", repos),
    )
    return web.json_response({**render.installation(installation), "deliveries": deliveries}, status=201)


async def sim_update_installation(request: web.Request) -> web.Response:
    body = await _sim_body(request)
    state = _state(request)
    installation_id = _int(request, "installation_id")
    suspended = _need(body, "suspended", bool)
    installation = state.set_suspended(installation_id, suspended)
    render = _renderer(request)
    deliveries = await _sim_send(
        request,
        body,
        "installation",
        webhooks.installation_event(render, installation, "suspend" if suspended else "unsuspend"),
    )
    return web.json_response({**render.installation(installation), "deliveries": deliveries})


async def sim_delete_installation(request: web.Request) -> web.Response:
    body = await _sim_body(request)
    state = _state(request)
    installation_id = _int(request, "installation_id")
    installation = state.get_installation(installation_id)
    render = _renderer(request)
    payload = webhooks.installation_event(render, installation, "deleted")
    state.remove_installation(installation_id)
    deliveries = await _sim_send(request, body, "installation", payload)
    return web.json_response({**payload["installation"], "deliveries": deliveries})


async def sim_add_repository(request: web.Request) -> web.Response:
    body = await _sim_body(request)
    state = _state(request)
    installation_id = _int(request, "installation_id")
    repo = state.add_repository(
        installation_id,
        _need(body, "id", int),
        _need(body, "full_name", str),
        private=bool(body.get("private", False)),
        default_branch=body.get("default_branch") or "main",
    )
    render = _renderer(request)
    deliveries = await _sim_send(
        request,
        body,
        "installation_repositories",
        webhooks.installation_repositories_event(render, state.installations[installation_id], "added", added=[repo]),
    )
    return web.json_response({**render.repository(repo), "deliveries": deliveries}, status=201)


async def sim_remove_repository(request: web.Request) -> web.Response:
    body = await _sim_body(request)
    state = _state(request)
    installation_id = _int(request, "installation_id")
    repo = state.remove_repository(installation_id, _int(request, "repo_id"))
    render = _renderer(request)
    deliveries = await _sim_send(
        request,
        body,
        "installation_repositories",
        webhooks.installation_repositories_event(
            render, state.installations[installation_id], "removed", removed=[repo]
        ),
    )
    return web.json_response({"id": repo.id, "full_name": repo.full_name, "deliveries": deliveries})


async def sim_rename_repository(request: web.Request) -> web.Response:
    """Rename a repository (``{"full_name": "owner/new"}``); its old name is free for a new one."""
    body = await _sim_body(request)
    state = _state(request)
    repo, previous = state.rename_repository(_int(request, "repo_id"), _need(body, "full_name", str))
    render = _renderer(request)
    deliveries = await _sim_send(
        request, body, "repository", webhooks.repository_renamed_event(render, repo, previous)
    )
    return web.json_response({**render.repository(repo), "previous_full_name": previous, "deliveries": deliveries})


def _pr_action(created: bool, before: JsonDict | None, after: JsonDict) -> str:
    if created or before is None:
        return "opened"
    if before["state"] != after["state"]:
        return "closed" if after["state"] == "closed" else "reopened"
    if before["draft"] != after["draft"]:
        return "converted_to_draft" if after["draft"] else "ready_for_review"
    if before["head"]["sha"] != after["head"]["sha"]:
        return "synchronize"
    return "edited"


async def sim_upsert_pull_request(request: web.Request) -> web.Response:
    body = await _sim_body(request)
    state = _state(request)
    full_name = _need(body, "repo", str)
    number = body.get("number")
    author = body.get("author") or {}
    if not isinstance(author, dict):
        raise SimulatorError(422, "'author' must be an object")
    render = _renderer(request)
    before = None
    if isinstance(number, int):
        repo = state.repo_by_name(full_name)
        existing = state.pulls.get((repo.id, number))
        before = render.pull_request(existing) if existing else None
    if body.get("state") not in (None, "open", "closed"):
        raise SimulatorError(422, "state must be open or closed")
    pr, created = state.upsert_pull_request(
        full_name,
        number if isinstance(number, int) else None,
        author_login=author.get("login"),
        author_id=author.get("id"),
        author_type=author.get("type"),
        author_association=body.get("author_association"),
        state=body.get("state"),
        draft=body.get("draft"),
        merged=body.get("merged"),
        head_sha=body.get("head_sha"),
        head_ref=body.get("head_ref"),
        base_ref=body.get("base_ref"),
        title=body.get("title"),
        body=body.get("body"),
    )
    after = render.pull_request(pr)
    wanted = body.get("webhook")
    action = wanted if isinstance(wanted, str) else _pr_action(created, before, after)
    deliveries = await _sim_send(request, body, "pull_request", webhooks.pull_request_event(render, pr, action))
    return web.json_response({**after, "deliveries": deliveries}, status=201 if created else 200)


async def sim_get_pull_request(request: web.Request) -> web.Response:
    pr = _state(request).get_pull_request(_full_name(request), _int(request, "pull_number"))
    return web.json_response(_renderer(request).pull_request(pr))


async def sim_list_comments(request: web.Request) -> web.Response:
    comments = _state(request).comments_for(_full_name(request), _int(request, "pull_number"))
    render = _renderer(request)
    return web.json_response([render.comment(c) for c in comments])


async def sim_list_statuses(request: web.Request) -> web.Response:
    statuses = _state(request).statuses_for(_full_name(request), request.match_info["ref"])
    render = _renderer(request)
    return web.json_response([render.status(s) for s in statuses])


async def sim_set_permission(request: web.Request) -> web.Response:
    body = await _sim_body(request)
    state = _state(request)
    username = request.match_info["username"]
    state.set_permission(
        _full_name(request), username, _need(body, "permission", str), body.get("id"), body.get("type")
    )
    role, user = state.permission_of(_full_name(request), username)
    return web.json_response(_renderer(request).collaborator_permission(role, user))


async def sim_get_faults(request: web.Request) -> web.Response:
    return web.json_response(_state(request).faults.config.model_dump(mode="json"))


async def sim_put_faults(request: web.Request) -> web.Response:
    try:
        config = FaultConfig.model_validate(await _sim_body(request))
    except ValidationError as error:
        raise SimulatorError(422, str(error)) from None
    faults = _state(request).faults
    faults.configure(config)
    return web.json_response(faults.config.model_dump(mode="json"))


async def sim_add_fault_rule(request: web.Request) -> web.Response:
    try:
        rule = FaultRule.model_validate(await _sim_body(request))
    except ValidationError as error:
        raise SimulatorError(422, str(error)) from None
    faults = _state(request).faults
    faults.add_rule(rule)
    return web.json_response(faults.config.model_dump(mode="json"), status=201)


async def sim_clear_faults(request: web.Request) -> web.Response:
    faults = _state(request).faults
    faults.configure(FaultConfig())
    return web.json_response(faults.config.model_dump(mode="json"))


async def sim_list_requests(request: web.Request) -> web.Response:
    records = list(_state(request).request_log)
    if "installation_id" in request.query:
        wanted = _query_int(request, "installation_id", -1)
        records = [r for r in records if r.installation_id == wanted]
    if "method" in request.query:
        records = [r for r in records if r.method == request.query["method"].upper()]
    if "path_regex" in request.query:
        try:
            pattern = re.compile(request.query["path_regex"])
        except re.error as error:
            raise SimulatorError(422, f"bad path_regex: {error}") from None
        records = [r for r in records if pattern.search(r.path)]
    return web.json_response({"requests": [r.to_json() for r in records]})


async def sim_clear_requests(request: web.Request) -> web.Response:
    _state(request).request_log.clear()
    return web.json_response({"ok": True})


async def sim_tokens(request: web.Request) -> web.Response:
    state = _state(request)
    active: dict[str, int] = {}
    for token in list(state.tokens):
        info = state.token_info(token)
        if info is not None:
            active[str(info.installation_id)] = active.get(str(info.installation_id), 0) + 1
    return web.json_response({"issued": {str(k): v for k, v in sorted(state.tokens_issued.items())}, "active": active})


async def sim_expire_tokens(request: web.Request) -> web.Response:
    body = await _sim_body(request)
    installation_id = body.get("installation_id")
    _state(request).expire_tokens(installation_id if isinstance(installation_id, int) else None)
    return web.json_response({"ok": True})


async def sim_list_deliveries(request: web.Request) -> web.Response:
    return web.json_response([d.to_json() for d in _state(request).deliveries])


async def sim_send_webhook(request: web.Request) -> web.Response:
    body = await _sim_body(request)
    state = _state(request)
    url = body.get("url") or state.config.webhook_url
    if not isinstance(url, str) or not url:
        raise SimulatorError(422, "'url' is required when SimulatorConfig.webhook_url is not set")
    secret = body.get("secret")
    delivery = await _deliver_kept(
        state,
        request.app[SIM_SESSION],
        _need(body, "event", str),
        _need(body, "payload", dict),
        url=url,
        secret=secret if isinstance(secret, str) else None,
        delivery_id=body.get("delivery_id"),
    )
    return web.json_response(delivery.to_json(), status=201)


# ---- users and the user's installations (issue 13, items 7 and 13) ----------------------------------


async def get_user_by_login(request: web.Request) -> web.Response:
    """``GET /users/{username}``: the public profile of whoever holds the login now."""
    state = _state(request)
    user = state.find_user(request.match_info["username"])
    if user is None:
        raise ApiError(404, "Not Found", documentation_url=f"{DOCS}/users/users#get-a-user")
    data = _renderer(request).user(user)
    created = iso(state.now())
    data.update({
        "name": None, "company": None, "blog": "", "location": None, "email": None, "hireable": None,
        "bio": None, "twitter_username": None, "public_repos": 0, "public_gists": 0, "followers": 0,
        "following": 0, "created_at": created, "updated_at": created,
    })
    return web.json_response(data)


async def list_user_installations(request: web.Request) -> web.Response:
    """``GET /user/installations`` with a user token: ``{"total_count", "installations"}``."""
    user = request.app[oauth.SIM_OAUTH].user_for(oauth.bearer_token(request))
    if user is None:
        raise ApiError(401, "Bad credentials")
    reachable = _state(request).user_installations(user.login)
    page, headers = _paginate(request, reachable)
    render = _renderer(request)
    return web.json_response(
        {"total_count": len(reachable), "installations": [render.installation(i) for i in page]}, headers=headers
    )


async def sim_register_user(request: web.Request) -> web.Response:
    """``POST /_sim/users {"login", "id", "type"?}``: sign up a new account under a free login."""
    body = await _sim_body(request)
    user = _state(request).register_user(_need(body, "login", str), _need(body, "id", int), body.get("type", "User"))
    return web.json_response(_renderer(request).user(user), status=201)


async def sim_rename_user(request: web.Request) -> web.Response:
    """``PATCH /_sim/users/{login} {"login": new}``: the user changes their username; the old login is
    free at once, and the user's OAuth tokens stay theirs."""
    body = await _sim_body(request)
    old = request.match_info["login"]
    user = _state(request).rename_user(old, _need(body, "login", str))
    tokens = request.app[oauth.SIM_OAUTH].tokens
    for token, login in list(tokens.items()):
        if login.lower() == old.lower():
            tokens[token] = user.login
    return web.json_response(_renderer(request).user(user))


# ---- the App itself and comments by other authors (issue 13, item 2) --------------------------------


def _refuse_other_apps_comment(state: SimulatorState, comment: IssueComment) -> None:
    """GitHub lets an installation token edit or delete neither another App's comment nor a comment
    by another App's bot user: 403, as for any resource the integration cannot reach."""
    foreign_app = comment.via_app is not None and comment.via_app.id != state.config.app_id
    foreign_bot = comment.user.type == "Bot" and comment.user.login != state.bot_user.login
    if foreign_app or foreign_bot:
        raise ApiError(
            403, "Resource not accessible by integration",
            documentation_url=f"{DOCS}/issues/comments#update-an-issue-comment",
        )


async def get_authenticated_app(request: web.Request) -> web.Response:
    """`GET /app` with the App JWT: the App's id, slug, name and owner."""
    return web.json_response(_renderer(request).app(_state(request).app))


async def sim_add_comment(request: web.Request) -> web.Response:
    """Post a comment on a PR as any author: a person, a foreign bot, or another App
    (``{"body", "user": {"login", "id", "type"}, "app": {"id", "slug", "name"}}``; an ``app`` without
    ``user`` writes as that App's bot user ``<slug>[bot]``)."""
    body = await _sim_body(request)
    state = _state(request)
    text = _need(body, "body", str)
    app_spec = body.get("app")
    via_app: SimApp | None = None
    if app_spec is not None:
        if not isinstance(app_spec, dict):
            raise SimulatorError(422, "'app' must be an object")
        slug = _need(app_spec, "slug", str)
        via_app = SimApp(
            id=_need(app_spec, "id", int), slug=slug, name=str(app_spec.get("name") or slug),
            owner=state.ensure_user(f"{slug}-owner", user_type="Organization"),
        )
    user_spec = body.get("user")
    if user_spec is not None:
        if not isinstance(user_spec, dict):
            raise SimulatorError(422, "'user' must be an object")
        user_id = user_spec.get("id")
        user = state.ensure_user(
            _need(user_spec, "login", str), user_id if isinstance(user_id, int) else None,
            str(user_spec.get("type") or "User"),
        )
    elif via_app is not None:
        user = state.ensure_user(via_app.bot_login, via_app.id + 41_000_000, "Bot")
    else:
        raise SimulatorError(422, "'user' or 'app' is required")
    comment = state.add_comment(_full_name(request), _int(request, "pull_number"), text, user=user, via_app=via_app)
    return web.json_response(_renderer(request).comment(comment), status=201)


# ---- application ---------------------------------------------------------------------------------

API_ROUTES: tuple[tuple[str, str, Handler, AuthKind], ...] = (
    ("POST", "/app/installations/{installation_id}/access_tokens", create_access_token, "app"),
    ("GET", "/app/installations", list_app_installations, "app"),
    ("GET", "/app/installations/{installation_id}", get_app_installation, "app"),
    ("GET", "/app/hook/deliveries", list_hook_deliveries, "app"),
    ("GET", "/app/hook/deliveries/{delivery_id}", get_hook_delivery, "app"),
    ("POST", "/app/hook/deliveries/{delivery_id}/attempts", redeliver_hook_delivery, "app"),
    ("GET", "/repos/{owner}/{repo}/installation", get_repo_installation, "app"),
    ("GET", "/installation/repositories", list_installation_repositories, "installation"),
    ("GET", "/user", oauth.get_authenticated_user, "user"),
    ("POST", "/app-manifests/{code}/conversions", manifest.convert, "none"),
    ("GET", "/app", get_authenticated_app, "app"),
    ("GET", "/repos/{owner}/{repo}", get_repository, "installation"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", list_issue_comments, "installation"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", create_issue_comment, "installation"),
    ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}", get_issue_comment, "installation"),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", update_issue_comment, "installation"),
    ("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}", delete_issue_comment, "installation"),
    ("GET", "/repos/{owner}/{repo}/pulls", list_pull_requests, "installation"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", get_pull_request, "installation"),
    ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}", update_pull_request, "installation"),
    ("POST", "/repos/{owner}/{repo}/statuses/{sha}", create_commit_status, "installation"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses", list_commit_statuses, "installation"),
    (
        "GET",
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
        get_collaborator_permission,
        "installation",
    ),
)


def _by_id(routes: tuple[tuple[str, str, Handler, AuthKind], ...]) -> tuple[tuple[str, str, Handler, AuthKind], ...]:
    """Every ``/repos/{owner}/{repo}…`` route again as ``/repositories/{repository_id}…``, as GitHub
    serves them: a client that acts by id never reaches a repository that merely took over a name."""
    prefix = "/repos/{owner}/{repo}"
    return tuple(
        (method, "/repositories/{repository_id}" + path[len(prefix):], handler, auth)
        for method, path, handler, auth in routes
        if path.startswith(prefix)
    )


API_ROUTES = API_ROUTES + _by_id(API_ROUTES)
API_ROUTES = (
    *API_ROUTES,
    ("GET", "/users/{username}", get_user_by_login, "installation"),
    ("GET", "/user/installations", list_user_installations, "user"),
)

SIM_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/_sim/health", sim_health),
    ("POST", "/_sim/reset", sim_reset),
    ("GET", "/_sim/installations", sim_list_installations),
    ("POST", "/_sim/installations", sim_create_installation),
    ("PATCH", "/_sim/installations/{installation_id}", sim_update_installation),
    ("DELETE", "/_sim/installations/{installation_id}", sim_delete_installation),
    ("POST", "/_sim/installations/{installation_id}/repositories", sim_add_repository),
    ("DELETE", "/_sim/installations/{installation_id}/repositories/{repo_id}", sim_remove_repository),
    ("PATCH", "/_sim/repositories/{repo_id}", sim_rename_repository),
    ("POST", "/_sim/pulls", sim_upsert_pull_request),
    ("GET", "/_sim/repos/{owner}/{repo}/pulls/{pull_number}", sim_get_pull_request),
    ("GET", "/_sim/repos/{owner}/{repo}/pulls/{pull_number}/comments", sim_list_comments),
    ("GET", "/_sim/repos/{owner}/{repo}/statuses/{ref}", sim_list_statuses),
    ("PUT", "/_sim/repos/{owner}/{repo}/collaborators/{username}", sim_set_permission),
    ("GET", "/_sim/faults", sim_get_faults),
    ("PUT", "/_sim/faults", sim_put_faults),
    ("DELETE", "/_sim/faults", sim_clear_faults),
    ("POST", "/_sim/faults/rules", sim_add_fault_rule),
    ("GET", "/_sim/requests", sim_list_requests),
    ("DELETE", "/_sim/requests", sim_clear_requests),
    ("GET", "/_sim/tokens", sim_tokens),
    ("POST", "/_sim/tokens/expire", sim_expire_tokens),
    ("GET", "/_sim/deliveries", sim_list_deliveries),
    ("POST", "/_sim/webhooks", sim_send_webhook),
    ("POST", "/_sim/users", sim_register_user),
    ("PATCH", "/_sim/users/{login}", sim_rename_user),
    ("POST", "/_sim/repos/{owner}/{repo}/pulls/{pull_number}/comments", sim_add_comment),
)


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    app[SIM_SESSION] = aiohttp.ClientSession()
    yield
    pending = app[SIM_TASKS]
    tasks = list(pending)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await app[SIM_SESSION].close()


def create_simulator_app(config: SimulatorConfig, *, clock: Clock | None = None) -> web.Application:
    """The simulator app; ``clock`` (unix seconds) defaults to ``time.time``."""
    app = web.Application(middlewares=[_github_middleware])
    app[SIM_STATE] = SimulatorState(config, clock) if clock is not None else SimulatorState(config)
    tasks: set[asyncio.Task[None]] = set()
    app[SIM_TASKS] = tasks
    route_auth: dict[tuple[str, str], AuthKind] = {}
    for method, path, handler, auth in API_ROUTES:
        app.router.add_route(method, path, handler)
        route_auth[(method, path)] = auth
    for method, path, handler in SIM_ROUTES:
        app.router.add_route(method, path, handler)
    app[SIM_ROUTE_AUTH] = route_auth
    oauth.setup(app, app[SIM_STATE])
    manifest.setup(app, app[SIM_STATE])
    app.cleanup_ctx.append(_client_session)
    return app


async def run_simulator(host: str, port: int, config: SimulatorConfig) -> None:
    """Serve the simulator on ``host:port`` until cancelled."""
    runner = web.AppRunner(create_simulator_app(config), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
