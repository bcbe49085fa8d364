"""Every error leaves as a JSON body; nothing escapes as an HTML page or a bare 500."""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from backend_api.keys import SETTINGS
from shared_contracts import http_body
from shared_contracts.common import DuplicateKeyError, ErrorBody, loads_strict

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 1024 * 1024


def json_error(
    status: int, error: str, message: str, details: list[dict[str, Any]] | None = None
) -> web.Response:
    body = ErrorBody(error=error, message=message, details=details)
    return web.json_response(body.model_dump(exclude_none=True), status=status)


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.error, self.message, self.details = status, error, message, details
        self.headers = headers or {}


_REASONS = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "validation_error", 429: "rate_limited",
}


# Every body, whatever its type, is read under one deadline (shared with the receiver); multipart
# never gets that far (`refused_multipart`).
body_deadline_passed = http_body.body_deadline_passed


def refused_multipart(content_type: str, has_body: bool) -> bool:
    """No route takes multipart: every form of ours (sign-out, verification) is urlencoded, and the
    JSON API is JSON. Refused unread, since a pre-read would starve aiohttp's multipart reader and
    skipping the pre-read let a multipart body trickle in for as long as its sender liked (docs/security.md,
    "Multipart bodies skipped the backend's slow-body deadline")."""
    return has_body and content_type.startswith("multipart/")


# The staged close after a refusal: for how long what still arrives is dropped, and at most how much.
LINGER_SECONDS = 2.0
LINGER_BYTES = 2 * MAX_BODY_BYTES


async def answer_and_close(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Answer, half-close, drop what still arrives for LINGER_SECONDS, close (shared_contracts.http_body)."""
    return await http_body.answer_and_close(request, response, linger_seconds=LINGER_SECONDS,
                                            linger_bytes=LINGER_BYTES)


# The backend's `backend_client_hangups_total` counter (backend_api/metrics.py imports this module,
# so the counter is handed over through the app rather than imported).
CLIENT_HANGUPS = web.AppKey("client_hangups", Counter)
# Answered to nobody (the client is gone); the status only labels the request in the metrics. 499 is
# nginx's "client closed request".
HANGUP_STATUS = 499


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def client_hung_up(request: web.Request, exc: BaseException) -> bool:
    """A connection reset that is the client's (its transport is gone), not the database's."""
    return isinstance(exc, ConnectionResetError) and client_gone(request)


def note_hangup(request: web.Request, where: str) -> None:
    """A client that left mid-request is not an error of ours: INFO, counted by where it was noticed."""
    log.info("client hung up mid-request", extra={"path": request.path, "where": where})
    counter = request.app.get(CLIENT_HANGUPS)
    if counter is not None:
        counter.labels(where).inc()


def hangup_response() -> web.Response:
    response = json_error(HANGUP_STATUS, "client_closed_request", "the client closed the connection")
    response.force_close()
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if refused_multipart(request.content_type, request.body_exists):
            return await answer_and_close(request, json_error(
                415, "unsupported_media_type", "multipart bodies are not accepted: forms here are urlencoded"))
        if await body_deadline_passed(request, request.app[SETTINGS].body_read_timeout_seconds):
            response = json_error(408, "request_timeout", "the request body did not arrive in time")
            return await answer_and_close(request, response)
        return await handler(request)
    except ApiError as exc:
        response = json_error(exc.status, exc.error, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason if exc.status != 413 else f"request body exceeds {MAX_BODY_BYTES} bytes"
        return json_error(exc.status, _REASONS.get(exc.status, "http_error"), message)
    except asyncio.CancelledError:
        if client_gone(request):
            note_hangup(request, "cancelled")
        raise
    except Exception as exc:
        if client_hung_up(request, exc):
            note_hangup(request, "request")
            return hangup_response()
        log.exception("unhandled error", extra={"path": request.path})
        return json_error(500, "internal_error", "internal server error")


PG_INTEGER_MAX = 2**31 - 1
PG_BIGINT_MAX = 2**63 - 1


def path_id(request: web.Request, name: str, *, maximum: int = PG_BIGINT_MAX) -> int:
    """A positive integer path segment (ASCII digits only: `'²'.isdigit()` is true), else 404.

    `maximum` is the column's range: a larger id cannot exist, and asyncpg would raise on it.
    """
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not 0 < int(raw) <= maximum:
        raise ApiError(404, "not_found", f"{name} must be a positive integer")
    return int(raw)


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        body=model.model_dump_json().encode(), status=status, content_type="application/json"
    )


async def read_model(request: web.Request, model: type[M]) -> M:
    """Parse the body as `model`: 415 wrong type, 413 too large, 400 not JSON, 422 schema."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    body = await request.read()
    try:
        data = loads_strict(body)
    except DuplicateKeyError as exc:
        raise ApiError(400, "malformed_json", f"request body is ambiguous JSON: {exc}") from None
    except (ValueError, RecursionError):
        raise ApiError(400, "malformed_json", "request body is not valid JSON") from None
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(e["type"] == "model_type" and not e["loc"] for e in errors):
            raise ApiError(422, "validation_error", "request body must be a JSON object") from None
        details = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        raise ApiError(422, "validation_error", _schema_message(model, errors), details) from None
    unstorable = list(_unstorable(parsed.model_dump(), []))
    if unstorable:
        raise ApiError(422, "validation_error", "request body holds values the database cannot store", unstorable)
    return parsed




def _schema_message(model: type[BaseModel], errors: list[Any]) -> str:
    """Names the unknown fields (with the nearest known one): a typo is the likeliest mistake."""
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) == 1]
    if not unknown:
        return "request body does not match the schema"
    known = list(model.model_fields)
    named = []
    for name in unknown:
        near = difflib.get_close_matches(name, known, n=1)
        named.append(f"{name} (did you mean {near[0]}?)" if near else name)
    return f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(named)}; the fields are {', '.join(known)}"


def _unstorable(value: Any, loc: list[str | int]) -> Iterator[dict[str, Any]]:
    """What PostgreSQL refuses as a parameter (asyncpg raises, the caller would see a 500):
    an integer beyond BIGINT, a string with a NUL character (neither text nor jsonb holds one)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _unstorable(item, [*loc, key])
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _unstorable(item, [*loc, index])
    elif isinstance(value, int) and not isinstance(value, bool) and not -PG_BIGINT_MAX - 1 <= value <= PG_BIGINT_MAX:
        yield {"loc": loc, "msg": "Integer out of the 64-bit range", "type": "int_out_of_range"}
    elif isinstance(value, str) and "\x00" in value:
        yield {"loc": loc, "msg": "String contains a NUL character", "type": "string_nul_character"}

