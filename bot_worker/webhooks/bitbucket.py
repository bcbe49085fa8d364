"""`POST /webhooks/bitbucket/{workspace_uuid}`: verify with the workspace's secret, parse, normalize, forward.

Order of checks (docs/receiver.md, docs/bitbucket.md): the URL names a workspace UUID (404) → from
the headers alone, body unread (intake.py): a master secret configured, `X-Hub-Signature` well-formed
(401) → `X-Event-Key` / `X-Request-UUID` (400) → Content-Type (415) → Content-Length within 256 KB
(413); then the body, read under the process-wide bound and hashed as it streams with the secret
derived from the URL's workspace and each master (401 on no match) → JSON (400) → the payload's
workspace is the URL's (401) → event key forwarded? (202 ignored) → normalize (422) → forward.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bot_worker.metrics import REJECTED, Metrics
from bot_worker.providers.bitbucket.normalize import Ignored, NotForwardable, normalize, payload_workspace
from bot_worker.providers.bitbucket.webhook import BITBUCKET_WEBHOOKS, MAX_BODY_BYTES, workspace_secrets
from bot_worker.webhooks.answers import forward_answer, json_error, validation_details, verified_body
from bot_worker.webhooks.forward import FORWARDER
from bot_worker.webhooks.intake import BodyBudget, answer_and_close
from provider_clients.bitbucket.hook_secret import bare_uuid

log = logging.getLogger(__name__)


class BitbucketWebhooks:
    """The handler, holding its dependencies explicitly; the forwarder comes from the running app."""

    def __init__(
        self, masters: Sequence[bytes], metrics: Metrics, *, budget: BodyBudget, stall_seconds: float = 10.0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._masters = tuple(master for master in masters if master)
        self._metrics = metrics
        self._budget = budget
        self._stall_seconds = stall_seconds
        self._max_body_bytes = max_body_bytes
        self._source = BITBUCKET_WEBHOOKS


    async def handle(self, request: web.Request) -> web.StreamResponse:
        workspace_uuid = bare_uuid(request.match_info["workspace_uuid"])
        if workspace_uuid is None:
            return await answer_and_close(
                request, json_error(404, "not_found", "the webhook URL does not name a workspace UUID")
            )
        secrets = workspace_secrets(self._masters, workspace_uuid)
        read = await verified_body(request, secrets, self._metrics, self._source, self._budget,
                                   max_body_bytes=self._max_body_bytes, stall_seconds=self._stall_seconds)
        if not isinstance(read, bytes):
            return read
        body = read
        event_key = request.headers[self._source.event_header]
        delivery_id = request.headers[self._source.delivery_header]
        self._metrics.webhooks_received.labels(event_key).inc()
        extra: dict[str, Any] = {"delivery_id": delivery_id, "event": event_key, "workspace_uuid": workspace_uuid}

        try:
            payload = self._source.parse_payload(body, request.content_type)
        except (ValueError, RecursionError):
            log.info("webhook body is not JSON", extra=extra)
            return json_error(400, "malformed_json", "request body is not valid JSON")
        if not isinstance(payload, dict):
            return json_error(422, "validation_error", "request body must be a JSON object")
        try:
            claimed = payload_workspace(payload)
        except NotForwardable as exc:
            self._metrics.webhooks_forwarded.labels(event_key, REJECTED).inc()
            return json_error(422, "validation_error", str(exc))
        if claimed is not None and claimed[0] != workspace_uuid:
            # Signed for this URL's workspace, yet about another: never let one tenant speak for another.
            self._metrics.bitbucket_workspace_mismatches.inc()
            log.warning("verified delivery names another workspace (%s): refused", claimed[0], extra=extra)
            return json_error(401, "unauthorized", "the payload's workspace is not the one this URL belongs to")

        try:
            model = normalize(event_key, delivery_id, payload)
        except ValidationError as exc:
            self._metrics.webhooks_forwarded.labels(event_key, REJECTED).inc()
            log.info("payload does not match the contract", extra=extra)
            return json_error(422, "validation_error", f"{event_key} payload is missing or has invalid fields",
                              validation_details(exc))
        except NotForwardable as exc:
            self._metrics.webhooks_forwarded.labels(event_key, REJECTED).inc()
            log.info("payload cannot be forwarded: %s", exc, extra=extra)
            return json_error(422, "not_forwardable", str(exc))
        except (TypeError, ValueError, AttributeError, KeyError):
            # A field of the wrong JSON type somewhere normalize did not expect one.
            self._metrics.webhooks_forwarded.labels(event_key, REJECTED).inc()
            log.info("payload has an unexpected shape", extra=extra)
            return json_error(422, "validation_error", f"{event_key} payload has an unexpected shape")
        if isinstance(model, Ignored):
            self._metrics.bitbucket_webhooks_ignored.labels(event_key, model.reason).inc()
            log.info("event not forwarded (%s)", model.reason, extra=extra)
            return web.json_response({"status": "ignored"}, status=202)
        model = model.model_copy(update={"body_sha256": hashlib.sha256(body).hexdigest()})
        return forward_answer(await request.app[FORWARDER].forward(model))
