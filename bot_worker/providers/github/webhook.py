"""GitHub's webhooks as the receiver reads them: header names, the HMAC scheme, payload parsing and
which normalizer each forwarded event goes through (`normalize.py`)."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs

from bot_worker.backend.ingest import IngestEvent
from bot_worker.providers.github.normalize import (
    installation_sync_event,
    pull_request_event,
    repository_renamed_event,
)
from shared_contracts.common import loads_strict

# GitHub caps webhook payloads at 25 MB; allow 25 MiB.
MAX_BODY_BYTES: Final = 25 * 1024 * 1024
WEBHOOK_PATH: Final = "/webhooks/github"
SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
EVENT_HEADER: Final = "X-GitHub-Event"
DELIVERY_HEADER: Final = "X-GitHub-Delivery"


def signature_256(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def parse_payload(body: bytes, content_type: str) -> Any:
    """The delivery's JSON (GitHub sends `application/json`, or a form with a `payload` field).

    Duplicate keys are refused (ValueError): "last one wins" would let an ambiguous body through.
    """
    if content_type == "application/x-www-form-urlencoded":
        fields = parse_qs(body.decode("utf-8", errors="strict"), strict_parsing=False)
        return loads_strict(fields["payload"][0])
    return loads_strict(body)


def normalize(event: str, delivery_id: str, payload: dict[str, Any]) -> IngestEvent:
    if event == "pull_request":
        return pull_request_event(delivery_id, payload)
    if event == "repository":
        return repository_renamed_event(delivery_id, payload)
    return installation_sync_event(delivery_id, event, payload)


@dataclass(frozen=True, slots=True)
class GitHubWebhookSource:
    """`providers.base.WebhookSource` for GitHub."""

    signature_header: str = SIGNATURE_HEADER
    event_header: str = EVENT_HEADER
    delivery_header: str = DELIVERY_HEADER
    event_name: re.Pattern[str] = field(default=re.compile(r"^[a-z][a-z0-9_]{0,63}$"))
    delivery_id: re.Pattern[str] = field(default=re.compile(r"^[A-Za-z0-9._:-]{1,128}$"))
    content_types: tuple[str, ...] = ("application/json", "application/x-www-form-urlencoded")

    def parse_payload(self, body: bytes, content_type: str) -> Any:
        return parse_payload(body, content_type)

    def normalize(self, event: str, delivery_id: str, payload: dict[str, Any]) -> IngestEvent:
        return normalize(event, delivery_id, payload)


GITHUB_WEBHOOKS: Final = GitHubWebhookSource()
