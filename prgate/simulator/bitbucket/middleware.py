"""What Bitbucket does around every REST request, in this order: authenticate the Bearer token,
count it against the rolling-hour budget (`/2.0/repositories/*`, per credential), add latency,
inject faults (before the handler, so a refused request changes nothing; "after write" faults
replace a successful response), then add the rate-limit headers and record the request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from prgate.simulator.bitbucket.errors import ApiError, error_response
from prgate.simulator.bitbucket.http import BB_PREFIX, BB_ROUTE_AUTH, BB_STATE, TOKEN
from prgate.simulator.bitbucket.model import Token
from prgate.simulator.bitbucket.rates import RollingSnapshot
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.core.errors import SimulatorError
from prgate.simulator.core.faults import FaultDecision
from prgate.simulator.core.records import RequestRecord

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
INVALID_TOKEN = "Token is invalid, expired, or not supported for this endpoint."
RATE_LIMITED = "Rate limit for this resource has been exceeded"
RATE_LIMITED_PREFIX = "/2.0/repositories/"


def _credential(token: Token | None) -> str | None:
    if token is None:
        return None
    return f"workspace:{token.workspace}" if token.kind == "workspace" else f"user:{token.account_id}"


def _record(state: BitbucketState, request: web.Request, response: web.StreamResponse,
            fault: FaultDecision | None = None, token: Token | None = None) -> None:
    state.record_request(RequestRecord(
        method=request.method, path=request.path, query=request.query_string, installation_id=None,
        status=response.status, at=state.now(), fault=None if fault is None else f"{fault.source}:{fault.kind}",
        credential=_credential(token),
    ))


def _authenticate(request: web.Request, state: BitbucketState, kind: str) -> Token:
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    token = state.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
    if token is None or (token.expires_at is not None and token.expires_at <= state.now()):
        raise ApiError(401, INVALID_TOKEN)
    if kind == "user" and token.kind != "user":
        raise ApiError(403, "This API is only accessible with the following authentication types: "
                            "session, password, apppassword, api_token, oauth")
    if kind == "workspace" and token.kind != "workspace":
        raise ApiError(403, "Your credentials lack one or more required privilege scopes.")
    return token


def _fault_response(decision: FaultDecision) -> web.Response:
    if decision.kind in ("primary_rate_limit", "secondary_rate_limit"):
        response = error_response(ApiError(429, decision.message or RATE_LIMITED))
        response.headers["Retry-After"] = str(decision.retry_after_seconds or decision.reset_seconds)
        return response
    messages = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                504: "Gateway Timeout"}
    return error_response(ApiError(decision.status, decision.message or messages.get(decision.status, "Error")))


@web.middleware
async def bitbucket_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[BB_STATE]
    relative = request.path[len(request.app[BB_PREFIX]):] or "/"
    if not relative.startswith("/2.0/"):
        # `/_sim/`, OAuth and the HTML pages are not REST: no token, no budget, no faults.
        try:
            return await handler(request)
        except SimulatorError as error:
            return error_response(error)
    response: web.StreamResponse
    match_error = request.match_info.http_exception
    if match_error is not None:
        response = error_response(ApiError(match_error.status, "Resource not found"
                                           if match_error.status == 404 else match_error.reason))
        _record(state, request, response)
        return response
    route = request.match_info.route
    kind = request.app[BB_ROUTE_AUTH].get((route.method, route.handler), "any")
    try:
        token = _authenticate(request, state, kind)
    except SimulatorError as error:
        response = error_response(error)
        _record(state, request, response)
        return response
    request[TOKEN] = token

    snapshot: RollingSnapshot | None = None
    if relative.startswith(RATE_LIMITED_PREFIX) and token.kind == "workspace":
        snapshot = state.rate_limiter.consume(token.value, state.now())
        if snapshot.exhausted:
            response = error_response(ApiError(429, RATE_LIMITED))
            response.headers.update(snapshot.headers())
            if state.config.rate_limit_retry_after:
                response.headers["Retry-After"] = str(snapshot.retry_after)
            _record(state, request, response, token=token)
            return response

    delay = state.faults.latency_seconds(None)
    if delay > 0:
        await asyncio.sleep(delay)
    decision = state.faults.decide(request.method, request.path, None)
    if decision is not None and not decision.after_write:
        response = _fault_response(decision)
    else:
        try:
            response = await handler(request)
        except SimulatorError as error:
            response = error_response(error)
        if decision is not None and response.status >= 400:
            decision = None  # it failed on its own, so nothing was written
        if decision is not None:
            response = _fault_response(decision)
    if snapshot is not None:
        response.headers.update(snapshot.headers())
    _record(state, request, response, decision, token)
    return response
