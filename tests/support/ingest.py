"""Post real (rewritten) GitHub payloads to the backend through the receiver's normalizer."""

from __future__ import annotations

import uuid
from typing import Any

from bot_worker.providers.github.normalize import installation_sync_event, pull_request_event
from tests.support.signed import SignedClient

PR_PATH = "/internal/v2/github/events/pull-request"
INSTALLATION_PATH = "/internal/v2/github/events/installation-sync"


async def send_pr(backend: SignedClient, payload: dict[str, Any], delivery_id: str | None = None) -> Any:
    event = pull_request_event(delivery_id or str(uuid.uuid4()), payload)
    return await backend.post_json(PR_PATH, event.model_dump(mode="json"))


async def send_installation(
    backend: SignedClient, event_name: str, payload: dict[str, Any], delivery_id: str | None = None
) -> Any:
    event = installation_sync_event(delivery_id or str(uuid.uuid4()), event_name, payload)
    return await backend.post_json(INSTALLATION_PATH, event.model_dump(mode="json"))
