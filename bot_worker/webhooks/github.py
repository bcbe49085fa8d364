"""`POST /webhooks/github`: verify, parse, normalize, forward. One straight line, no state.

Order of checks, from the headers alone and with the body unread (intake.py): secret configured,
signature header well-formed (401) → event/delivery headers (400) → Content-Type (415) →
Content-Length within 25 MiB (413); then the body, read under the process-wide bound (503) and hashed
as it streams (408 stalled, 413 too long) → HMAC-SHA256 matches one secret (401) → JSON (400) →
ping / not-forwarded event (200 / 202) → normalize (422) → forward.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bot_worker.backend.ingest import IngestEvent, installation_id_of
from bot_worker.metrics import REJECTED, Metrics
from bot_worker.providers.github.client import GitHubProvider
from bot_worker.providers.github.commands import enrich, enrich_reopen, needs_reopener_permission
from bot_worker.providers.github.confirm import Verdict, confirm, needs_confirmation
from bot_worker.providers.github.normalize import (
    FORWARDED_EVENTS,
    FORWARDED_REPOSITORY_ACTIONS,
    NotForwardable,
    comment_command,
    config_push_event,
)
from bot_worker.providers.github.webhook import GITHUB_WEBHOOKS, MAX_BODY_BYTES
from bot_worker.webhooks.answers import forward_answer, json_error, validation_details, verified_body
from bot_worker.webhooks.forward import FORWARDER
from bot_worker.webhooks.intake import (
    BodyBudget,
)
from shared_contracts.events import InstallationSyncEvent, PullRequestEvent

log = logging.getLogger(__name__)

class GitHubWebhooks:
    """The handler, holding its dependencies explicitly; the forwarder comes from the running app."""

    def __init__(
        self, secrets: Sequence[bytes], metrics: Metrics, github_key: web.AppKey[GitHubProvider | None] | None = None,
        *, budget: BodyBudget | None = None, stall_seconds: float = 10.0, max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._secrets = tuple(secret for secret in secrets if secret)
        self._metrics = metrics
        self._github_key = github_key
        self._budget = budget if budget is not None else BodyBudget(8, 64 * 1024 * 1024)
        self._stall_seconds = stall_seconds
        self._max_body_bytes = max_body_bytes
        self._source = GITHUB_WEBHOOKS


    async def handle(self, request: web.Request) -> web.StreamResponse:
        read = await verified_body(request, self._secrets, self._metrics, self._source, self._budget,
                                   max_body_bytes=self._max_body_bytes, stall_seconds=self._stall_seconds)
        if not isinstance(read, bytes):
            return read
        body = read
        event = request.headers[self._source.event_header]
        delivery_id = request.headers[self._source.delivery_header]
        self._metrics.webhooks_received.labels(event).inc()
        extra: dict[str, Any] = {"delivery_id": delivery_id, "event": event}

        try:
            payload = self._source.parse_payload(body, request.content_type)
        except (ValueError, KeyError, IndexError, RecursionError):
            log.info("webhook body is not JSON", extra=extra)
            return json_error(400, "malformed_json", "request body is not valid JSON")
        if not isinstance(payload, dict):
            return json_error(422, "validation_error", "request body must be a JSON object")
        installation = payload.get("installation")
        if isinstance(installation, dict) and isinstance(installation.get("id"), int):
            extra["installation_id"] = installation["id"]

        if event == "ping":
            log.info("ping received", extra=extra)
            return web.json_response({"status": "pong"})
        digest = hashlib.sha256(body).hexdigest()
        if event == "issue_comment":
            return await self._command(request, delivery_id, payload, extra, digest)
        if event == "push":
            return await self._push(request, delivery_id, payload, extra, digest)
        if event not in FORWARDED_EVENTS or (
            event == "repository" and payload.get("action") not in FORWARDED_REPOSITORY_ACTIONS
        ):
            log.info("event not forwarded", extra=extra)
            return web.json_response({"status": "ignored"}, status=202)

        try:
            model = self._source.normalize(event, delivery_id, payload)
        except ValidationError as exc:
            self._metrics.webhooks_forwarded.labels(event, REJECTED).inc()
            log.info("payload does not match the contract", extra=extra)
            return json_error(
                422, "validation_error", f"{event} payload is missing or has invalid fields",
                validation_details(exc),
            )
        except NotForwardable as exc:
            self._metrics.webhooks_forwarded.labels(event, REJECTED).inc()
            log.info("payload cannot be forwarded: %s", exc, extra=extra)
            return json_error(422, "not_forwardable", str(exc))
        except (TypeError, ValueError, AttributeError):
            # A field of the wrong JSON type somewhere normalize did not expect one.
            self._metrics.webhooks_forwarded.labels(event, REJECTED).inc()
            log.info("payload has an unexpected shape", extra=extra)
            return json_error(422, "validation_error", f"{event} payload has an unexpected shape")
        extra["installation_id"] = installation_id_of(model)
        model = model.model_copy(update={"body_sha256": digest})
        if isinstance(model, PullRequestEvent) and needs_reopener_permission(model):
            github = request.app[self._github_key] if self._github_key is not None else None
            if github is None:
                # Forwarded unasked: the backend then treats the reopen as one without write access.
                log.warning("reopen forwarded without the reopener's permission (no GitHub App configured)",
                            extra=extra)
            else:
                try:
                    model = await enrich_reopen(github, model)
                except Exception as exc:  # as for commands: GitHub marks it failed and redelivers
                    log.warning("could not ask GitHub for the reopener's permission: %s", type(exc).__name__,
                                extra=extra)
                    return json_error(503, "unavailable",
                                      "GitHub could not be asked about this reopen; redeliver it later")
        if needs_confirmation(model):
            return await self._confirmed(request, model, extra)
        return await self._forward(request, model)

    async def _confirmed(self, request: web.Request, model: IngestEvent, extra: dict[str, Any]) -> web.Response:
        """Forward a state-destroying event only as GitHub confirms it (providers/github/confirm.py)."""
        label = f"{model.event}.{getattr(model, 'action', '')}"
        github = request.app[self._github_key] if self._github_key is not None else None
        if github is None:
            # Without App credentials (the demo without an App) nothing can be asked: as before.
            self._metrics.webhook_confirmations.labels(label, Verdict.UNCONFIGURED.value).inc()
            log.warning("%s forwarded unconfirmed: no GitHub App configured", label, extra=extra)
            return await self._forward(request, model)
        try:
            checked, verdict = await confirm(github, model)
        except Exception as exc:  # GitHub unreachable or refusing: GitHub marks it failed, redelivery retries
            self._metrics.webhook_confirmations.labels(label, "unavailable").inc()
            log.warning("could not confirm %s on GitHub: %s", label, type(exc).__name__, extra=extra)
            return json_error(503, "unavailable", f"GitHub could not confirm this {label}; redeliver it later")
        self._metrics.webhook_confirmations.labels(label, verdict.value).inc()
        if verdict is Verdict.REFUTED:
            log.warning("%s refuted by GitHub", label, extra=extra)
            if isinstance(checked, InstallationSyncEvent):
                return web.json_response({"status": "ignored", "reason": "GitHub still has this installation"},
                                         status=202)
        return await self._forward(request, checked)

    async def _command(
        self, request: web.Request, delivery_id: str, payload: dict[str, Any], extra: dict[str, Any], digest: str
    ) -> web.Response:
        try:
            cmd = comment_command(payload)
        except (ValidationError, NotForwardable, TypeError, ValueError, KeyError, AttributeError):
            self._metrics.webhooks_forwarded.labels("issue_comment", REJECTED).inc()
            return json_error(422, "validation_error", "issue_comment payload has an unexpected shape")
        if cmd is None:
            log.info("comment is not a prgate command", extra=extra)
            return web.json_response({"status": "ignored"}, status=202)
        github = request.app[self._github_key] if self._github_key is not None else None
        if github is None or cmd.sender.type == "Bot":
            log.warning("prgate command ignored (%s)", "bot author" if github else "no GitHub App configured",
                        extra=extra)
            return web.json_response({"status": "ignored"}, status=202)
        try:
            model = await enrich(github, delivery_id, cmd)
        except Exception as exc:  # GitHub unreachable or refusing: let GitHub mark it failed and redeliver
            log.warning("could not look the command up on GitHub: %s", type(exc).__name__, extra=extra)
            return json_error(503, "unavailable", "GitHub could not be asked about this command; redeliver it later")
        return await self._forward(request, model.model_copy(update={"body_sha256": digest}))

    async def _push(
        self, request: web.Request, delivery_id: str, payload: dict[str, Any], extra: dict[str, Any], digest: str
    ) -> web.Response:
        """Only a push to the default branch that touched `.github/prgate.yml` reaches the backend."""
        try:
            model = config_push_event(delivery_id, payload)
        except (ValidationError, NotForwardable, TypeError, ValueError, AttributeError):
            self._metrics.webhooks_forwarded.labels("push", REJECTED).inc()
            return json_error(422, "validation_error", "push payload has an unexpected shape")
        if model is None:
            log.info("push does not touch the config file on the default branch", extra=extra)
            return web.json_response({"status": "ignored"}, status=202)
        return await self._forward(request, model.model_copy(update={"body_sha256": digest}))

    async def _forward(self, request: web.Request, model: IngestEvent) -> web.Response:
        return forward_answer(await request.app[FORWARDER].forward(model))
