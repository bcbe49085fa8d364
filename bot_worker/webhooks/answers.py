"""What every webhook route answers: JSON error bodies, and the answer to a forward's result."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bot_worker.metrics import Metrics
from bot_worker.providers.base import WebhookSource
from bot_worker.webhooks.forward import Forwarded, ForwardResult, Queued, Rejected, Unavailable
from bot_worker.webhooks.intake import BodyBudget, Refusal, answer_and_close, precheck, read_signed
from shared_contracts.common import ErrorBody


def json_error(status: int, error: str, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    body = ErrorBody(error=error, message=message, details=details)
    return web.json_response(body.model_dump(exclude_none=True), status=status)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]


def forward_answer(result: ForwardResult) -> web.Response:
    """200 with the backend's answer, 202 queued (parked on Redis), its 4xx as-is, or 503."""
    if isinstance(result, Forwarded):
        return web.Response(body=result.response.model_dump_json(), content_type="application/json")
    if isinstance(result, Queued):
        return web.json_response({"status": "queued", "delivery_id": result.delivery_id}, status=202)
    if isinstance(result, Rejected):
        return backend_rejection(result)
    assert isinstance(result, Unavailable)
    return json_error(
        503, "unavailable", "the backend and the retry queue are both unavailable; redeliver this webhook later"
    )


def backend_rejection(result: Rejected) -> web.Response:
    """The backend's own 4xx ErrorBody, passed through; a non-JSON answer is wrapped in one."""
    try:
        body = ErrorBody.model_validate_json(result.body)
    except ValidationError:
        body = ErrorBody(error="backend_rejected", message=f"the backend refused this delivery ({result.status})")
    return web.json_response(body.model_dump(exclude_none=True), status=result.status)


async def refuse(request: web.Request, metrics: Metrics, refusal: Refusal) -> web.StreamResponse:
    """Answer a refused delivery and close, whatever is left unread: nothing a refused sender says next is
    worth reading. Counted as a signature failure or a refused body."""
    if refusal.signature:
        metrics.signature_failures.inc()
    else:
        metrics.webhook_bodies_refused.labels(str(refusal.status)).inc()
    response = json_error(refusal.status, refusal.error, refusal.message)
    response.headers.update(refusal.headers)
    return await answer_and_close(request, response)


async def verified_body(
    request: web.Request, secrets: Sequence[bytes], metrics: Metrics, source: WebhookSource, budget: BodyBudget, *,
    max_body_bytes: int, stall_seconds: float,
) -> bytes | web.StreamResponse:
    """The body once the headers allow it and its signature matched one of `secrets`; else the refusal,
    already answered (the headers decide first: a refused body is never read)."""
    refusal = precheck(request.headers, request.content_type, request.content_length,
                       have_secret=bool(secrets), max_body_bytes=max_body_bytes, source=source)
    if refusal is not None:
        return await refuse(request, metrics, refusal)
    read = await read_signed(request, secrets, budget, max_body_bytes=max_body_bytes, stall_seconds=stall_seconds,
                             signature_header=source.signature_header)
    if isinstance(read, Refusal):
        if read.status == 503:
            logging.getLogger(__name__).warning("webhook body shed: %s", read.message)
        return await refuse(request, metrics, read)
    return read.body
