"""Signed GitHub webhook deliveries.

``send_webhook`` is usable on its own (tests that post a fixture to the receiver);
``deliver`` also records the attempt in the simulator's state, as GitHub's delivery log does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import aiohttp

from prgate.simulator.core.types import JsonDict
from prgate.simulator.core.webhooks import post_signed, signature_256
from prgate.simulator.github.model import WebhookDelivery
from prgate.simulator.github.state import SimulatorState

__all__ = ["deliver", "send_webhook", "signature_256", "webhook_headers"]


USER_AGENT = "GitHub-Hookshot/prgate-sim"
DELIVERY_TIMEOUT_SECONDS = 10.0  # GitHub gives up on a receiver after 10 s


def webhook_headers(
    secret: str,
    event: str,
    body: bytes,
    delivery_id: str,
    hook_id: int = 1,
    app_id: int | None = None,
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": str(hook_id),
        "X-Hub-Signature-256": signature_256(secret, body),
        "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
    }
    if app_id is not None:
        headers["X-GitHub-Hook-Installation-Target-ID"] = str(app_id)
        headers["X-GitHub-Hook-Installation-Target-Type"] = "integration"
    return headers


async def send_webhook(
    session: aiohttp.ClientSession,
    url: str,
    secret: str,
    event: str,
    payload: dict[str, Any],
    delivery_id: str | None = None,
    *,
    app_id: int | None = None,
    timeout_seconds: float = DELIVERY_TIMEOUT_SECONDS,
) -> int:
    """Sign and POST one delivery; returns the receiver's status code.

    Connection errors and time-outs propagate (``aiohttp.ClientError``, ``TimeoutError``).
    """
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = webhook_headers(secret, event, body, delivery_id or str(uuid.uuid4()), app_id=app_id)
    return await post_signed(session, url, body, headers, timeout_seconds)


async def deliver(
    state: SimulatorState,
    session: aiohttp.ClientSession,
    event: str,
    payload: JsonDict,
    *,
    url: str | None = None,
    secret: str | None = None,
    delivery_id: str | None = None,
) -> WebhookDelivery:
    """Send a delivery to ``url`` (default: the configured receiver) and record the attempt."""
    target = url or state.config.webhook_url
    if not target:
        raise ValueError("no webhook url: pass one or set SimulatorConfig.webhook_url")
    guid = delivery_id or str(uuid.uuid4())
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        status = await send_webhook(
            session,
            target,
            state.config.webhook_secret if secret is None else secret,
            event,
            payload,
            guid,
            app_id=state.config.app_id,
        )
    except TimeoutError:
        error = "Timed out"
    except aiohttp.ClientError as exc:
        error = f"Unreachable: {exc.__class__.__name__}"
    installation = payload.get("installation")
    repository = payload.get("repository")
    return state.record_delivery(
        guid=guid,
        event=event,
        action=payload.get("action") if isinstance(payload.get("action"), str) else None,
        url=target,
        status_code=status,
        error=error,
        duration=time.monotonic() - started,
        installation_id=installation.get("id") if isinstance(installation, dict) else None,
        repository_id=repository.get("id") if isinstance(repository, dict) else None,
    )
