"""What GitHub does around every API request, in this order:
authenticate, count against the hourly budget, add latency, inject faults (before the handler,
so a refused request changes nothing; "after write" faults replace a successful response),
then add rate-limit headers and record the request.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from yarl import URL

from prgate.simulator.core.app import served_by_subapp
from prgate.simulator.core.errors import SimulatorError
from prgate.simulator.core.faults import WRITE_METHODS, FaultDecision
from prgate.simulator.core.records import RequestRecord
from prgate.simulator.github import manifest, oauth, pages
from prgate.simulator.github.auth import AUTH, authenticate
from prgate.simulator.github.errors import RATE_LIMIT_DOCS, SECONDARY_DOCS, ApiError, error_response, reason
from prgate.simulator.github.keys import SIM_ROUTE_AUTH, SIM_STATE
from prgate.simulator.github.state import SimulatorState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNAUTHENTICATED_LIMIT = 60


def _fault_response(decision: FaultDecision, installation_id: int | None, now: float) -> web.Response:
    request_id = new_request_id()
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
        message = {502: "Server Error", 503: "Service Unavailable"}.get(decision.status, reason(decision.status))
        error = ApiError(decision.status, decision.message or message)
    response = error_response(error)
    response.headers["x-github-request-id"] = request_id
    return response


def new_request_id() -> str:
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
async def github_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if served_by_subapp(request):  # another provider mounted under its prefix: its own middleware
        return await handler(request)
    if (
        request.path == "/_sim"
        or request.path.startswith(("/_sim/", oauth.OAUTH_PREFIX))
        or manifest.is_web_path(request.path)
    ):
        try:
            return await handler(request)
        except SimulatorError as error:
            return error_response(error)
    state = request.app[SIM_STATE]
    response: web.StreamResponse
    match_error = request.match_info.http_exception
    if match_error is not None:
        # github.com's account, repository and pull-request pages, where no route matched (pages.py).
        page = (pages.page_for(state, request.path)
                if match_error.status == 404 and request.method in ("GET", "HEAD") else None)
        if page is not None:
            return page
        response = error_response(ApiError(match_error.status, reason(match_error.status)))
        _record(state, request, None, response)
        return response

    route = request.match_info.route
    kind = request.app[SIM_ROUTE_AUTH].get((route.method, route.resource.canonical if route.resource else ""))
    now = state.now()
    try:
        auth = authenticate(request, state, kind or "installation")
    except SimulatorError as error:
        response = error_response(error)
        snapshot = state.rate_limiter.consume("anonymous", now, limit=UNAUTHENTICATED_LIMIT, block=False)
        response.headers.update(snapshot.headers())
        _record(state, request, None, response)
        return response
    request[AUTH] = auth
    installation_id = auth.installation_id

    snapshot = state.rate_limiter.consume(auth.bucket, now)
    if snapshot.exhausted:
        target = f"installation ID {installation_id}" if auth.kind == "installation" else "this app"
        response = error_response(
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
            response = error_response(error)
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
    response.headers.setdefault("x-github-request-id", new_request_id())
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
