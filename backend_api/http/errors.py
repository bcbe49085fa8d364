"""Every error leaves as a JSON body; nothing escapes as an HTML page or a bare 500."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from backend_api.http.keys import SETTINGS
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
    def __init__(self, status: int, error: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.error, self.message, self.details = status, error, message, details


_REASONS = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "validation_error",
}


async def body_deadline_passed(request: web.Request, seconds: float) -> bool:
    """Read the whole body within `seconds` (later reads are free); True when the client stalled.

    Multipart bodies are left alone: aiohttp streams them to `request.post()`, which a pre-read
    would starve. No route of ours takes multipart; their size limit still applies.
    """
    if not request.body_exists or request.content_type.startswith("multipart/"):
        return False
    try:
        async with asyncio.timeout(seconds):
            await request.read()
    except TimeoutError:
        return True
    return False


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if await body_deadline_passed(request, request.app[SETTINGS].body_read_timeout_seconds):
            # Answer and close now; aiohttp would otherwise linger up to 10 s draining the body.
            response = json_error(408, "request_timeout", "the request body did not arrive in time")
            response.force_close()
            await response.prepare(request)
            await response.write_eof()
            request.protocol.force_close()
            return response
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.error, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason if exc.status != 413 else f"request body exceeds {MAX_BODY_BYTES} bytes"
        return json_error(exc.status, _REASONS.get(exc.status, "http_error"), message)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return json_error(500, "internal_error", "internal server error")


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
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(e["type"] == "model_type" and not e["loc"] for e in errors):
            raise ApiError(422, "validation_error", "request body must be a JSON object") from None
        details = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        raise ApiError(422, "validation_error", "request body does not match the schema", details) from None


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "malformed_json", "request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(422, "validation_error", "request body must be a JSON object")
    return value
