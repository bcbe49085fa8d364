"""Bitbucket Cloud's webhooks as the receiver reads them: header names, the per-workspace secret,
payload parsing (docs/bitbucket.md, "Webhooks in")."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bot_worker.backend.ingest import IngestEvent
from bot_worker.providers.bitbucket.normalize import Ignored, NotForwardable, normalize
from provider_clients.bitbucket.hook_secret import derive
from shared_contracts.common import loads_strict

# Bitbucket's own payload limit.
MAX_BODY_BYTES: Final = 256 * 1024
WEBHOOK_PATH_PREFIX: Final = "/webhooks/bitbucket/"
WEBHOOK_ROUTE: Final = WEBHOOK_PATH_PREFIX + "{workspace_uuid}"
SIGNATURE_HEADER: Final = "X-Hub-Signature"
EVENT_HEADER: Final = "X-Event-Key"
DELIVERY_HEADER: Final = "X-Request-UUID"


def workspace_secrets(masters: Sequence[bytes], workspace_uuid: str) -> list[bytes]:
    """The secrets a delivery to this workspace's URL may be signed with: one per master (a rotation
    has two). Each is the hex string the backend registered with the hook, used as the HMAC key."""
    return [derive(master, workspace_uuid).encode() for master in masters]


@dataclass(frozen=True, slots=True)
class BitbucketWebhookSource:
    """`providers.base.WebhookSource` for Bitbucket Cloud."""

    signature_header: str = SIGNATURE_HEADER
    event_header: str = EVENT_HEADER
    delivery_header: str = DELIVERY_HEADER
    # "pullrequest:created", "repo:push", "repo:commit_status_updated" …
    event_name: re.Pattern[str] = field(default=re.compile(r"^[a-z][a-z_]{0,31}:[a-z][a-z_]{0,31}$"))
    delivery_id: re.Pattern[str] = field(default=re.compile(r"^[A-Za-z0-9._:-]{1,128}$"))
    content_types: tuple[str, ...] = ("application/json",)

    def parse_payload(self, body: bytes, content_type: str) -> Any:
        """The delivery's JSON; duplicate keys are refused (ValueError), as for GitHub."""
        return loads_strict(body)

    def normalize(self, event: str, delivery_id: str, payload: dict[str, Any]) -> IngestEvent:
        """The Protocol's form: an event that is not forwarded raises NotForwardable. The receiver
        calls `normalize.normalize` itself, which says why (Ignored) instead of raising."""
        model = normalize(event, delivery_id, payload)
        if isinstance(model, Ignored):
            raise NotForwardable(f"not forwarded: {model.reason}")
        return model


BITBUCKET_WEBHOOKS: Final = BitbucketWebhookSource()
