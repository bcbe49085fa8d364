"""Signed deliveries to every active hook of a workspace subscribed to the event key.

As Bitbucket: headers ``X-Event-Key``, ``X-Hook-UUID``, ``X-Request-UUID``, ``X-Attempt-Number``,
``X-Hub-Signature: sha256=…`` (when the hook has a secret); a 10 s time-out; two retries, only on
5xx and time-outs. A retry sends the **same body** with a **new** ``X-Request-UUID`` — the
pessimistic reading of Atlassian's documentation (docs/bitbucket.md, "Dedup"), so receivers are
tested against it. Every attempt is recorded (``GET /bitbucket/_sim/deliveries``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid

import aiohttp

from prgate.simulator.bitbucket.model import DeliveryAttempt, Hook
from prgate.simulator.bitbucket.render import ts
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.core.types import JsonDict
from prgate.simulator.core.webhooks import post_signed, signature_256

USER_AGENT = "Bitbucket-Webhooks/2.0"


def delivery_headers(hook: Hook, event_key: str, body: bytes, request_uuid: str, attempt: int) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Event-Key": event_key,
        "X-Hook-UUID": hook.uuid.strip("{}"),
        "X-Request-UUID": request_uuid,
        "X-Attempt-Number": str(attempt),
    }
    if hook.secret:
        headers["X-Hub-Signature"] = signature_256(hook.secret, body)
    return headers


async def send_webhook(session: aiohttp.ClientSession, url: str, secret: str | None, event_key: str,
                       body: bytes, *, hook_uuid: str = "{00000000-0000-4000-8000-000000000000}",
                       request_uuid: str | None = None, attempt: int = 1,
                       timeout_seconds: float = 10.0) -> int:
    """One signed POST, usable on its own (a test posting a mutated fixture to the receiver)."""
    hook = Hook(uuid=hook_uuid, workspace="", url=url, description="", active=True, secret=secret, events=[],
                created_at=0.0)
    headers = delivery_headers(hook, event_key, body, request_uuid or str(uuid.uuid4()), attempt)
    return await post_signed(session, url, body, headers, timeout_seconds)


async def deliver_to_hook(state: BitbucketState, session: aiohttp.ClientSession, hook: Hook, event_key: str,
                          body: bytes, *, retries: int | None = None) -> list[DeliveryAttempt]:
    config = state.config
    retries = config.delivery_retries if retries is None else retries
    digest = hashlib.sha256(body).hexdigest()
    attempts: list[DeliveryAttempt] = []
    for number in range(1, retries + 2):
        request_uuid = str(uuid.uuid4())
        status: int | None = None
        error: str | None = None
        try:
            status = await post_signed(session, hook.url, body,
                                       delivery_headers(hook, event_key, body, request_uuid, number),
                                       config.delivery_timeout_seconds)
        except TimeoutError:
            error = "Timed out"
        except aiohttp.ClientError as exc:
            error = f"Unreachable: {type(exc).__name__}"
        attempt = DeliveryAttempt(request_uuid=request_uuid, hook_uuid=hook.uuid, workspace=hook.workspace,
                                  event_key=event_key, url=hook.url, attempt=number, status=status, error=error,
                                  at=state.now(), body_sha256=digest)
        state.record_delivery(attempt, body)
        attempts.append(attempt)
        retryable = error == "Timed out" or (status is not None and status >= 500)
        if not retryable or number > retries:
            break
        await asyncio.sleep(config.delivery_retry_delay_seconds)
    return attempts


async def resend(state: BitbucketState, session: aiohttp.ClientSession, request_uuid: str) -> DeliveryAttempt:
    """Bitbucket's "Resend request": the same body to the same hook, once, as a new request."""
    past = state.delivery(request_uuid)
    hook = state.hook(past.workspace, past.hook_uuid)
    attempts = await deliver_to_hook(state, session, hook, past.event_key, state.delivery_bodies[past.body_sha256],
                                     retries=0)
    return attempts[0]


async def deliver(state: BitbucketState, session: aiohttp.ClientSession, workspace: str, event_key: str,
                  payload: JsonDict) -> list[DeliveryAttempt]:
    """Deliver one event (one body, built once) to each subscribed hook, hooks in parallel."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    hooks = state.subscribed(workspace, event_key)
    results = await asyncio.gather(*(deliver_to_hook(state, session, h, event_key, body) for h in hooks))
    return [attempt for attempts in results for attempt in attempts]


def attempt_json(attempt: DeliveryAttempt) -> JsonDict:
    return {
        "request_uuid": attempt.request_uuid, "hook_uuid": attempt.hook_uuid, "workspace": attempt.workspace,
        "event_key": attempt.event_key, "url": attempt.url, "attempt": attempt.attempt,
        "status": attempt.status, "error": attempt.error, "at": ts(attempt.at), "body_sha256": attempt.body_sha256,
    }
