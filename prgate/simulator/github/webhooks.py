"""Signed GitHub webhook deliveries, and payload builders for the events prgate consumes.

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

from prgate.simulator.github.state import (
    Installation,
    JsonDict,
    PullRequest,
    Renderer,
    Repository,
    SimulatorState,
    SimUser,
    WebhookDelivery,
    node_id,
)

USER_AGENT = "GitHub-Hookshot/prgate-sim"
DELIVERY_TIMEOUT_SECONDS = 10.0  # GitHub gives up on a receiver after 10 s


def signature_256(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    async with session.post(url, data=body, headers=headers, timeout=timeout) as response:
        await response.read()
        return response.status


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


# ---- payload builders --------------------------------------------------------------------------


def _installation_ref(installation_id: int) -> JsonDict:
    return {"id": installation_id, "node_id": node_id("IntegrationInstallation", installation_id)}


def _repo_summary(repo: Repository) -> JsonDict:
    return {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": repo.private,
    }


def pull_request_event(renderer: Renderer, pr: PullRequest, action: str, sender: SimUser | None = None) -> JsonDict:
    """A ``pull_request`` payload (opened, closed, reopened, edited, ready_for_review, …)."""
    state = renderer.state
    repo = state.repositories[pr.repo_id]
    return {
        "action": action,
        "number": pr.number,
        "pull_request": renderer.pull_request(pr),
        "repository": renderer.repository(repo),
        "organization": None,
        "installation": _installation_ref(repo.installation_id),
        "sender": renderer.user(sender or pr.user),
    }


def installation_event(
    renderer: Renderer,
    installation: Installation,
    action: str,
    repositories: list[Repository] | None = None,
    sender: SimUser | None = None,
) -> JsonDict:
    """An ``installation`` payload (created, deleted, suspend, unsuspend)."""
    repos = repositories if repositories is not None else renderer.state.installation_repositories(installation.id)
    return {
        "action": action,
        "installation": renderer.installation(installation),
        "repositories": [_repo_summary(r) for r in repos],
        "requester": None,
        "sender": renderer.user(sender or installation.account),
    }


def installation_repositories_event(
    renderer: Renderer,
    installation: Installation,
    action: str,
    added: list[Repository] | None = None,
    removed: list[Repository] | None = None,
    sender: SimUser | None = None,
) -> JsonDict:
    """An ``installation_repositories`` payload (added, removed)."""
    return {
        "action": action,
        "installation": renderer.installation(installation),
        "repository_selection": installation.repository_selection,
        "repositories_added": [_repo_summary(r) for r in added or []],
        "repositories_removed": [_repo_summary(r) for r in removed or []],
        "requester": None,
        "sender": renderer.user(sender or installation.account),
    }


def repository_renamed_event(
    renderer: Renderer, repo: Repository, previous_full_name: str, sender: SimUser | None = None
) -> JsonDict:
    """A ``repository`` payload with action ``renamed``: ``changes`` holds the previous name."""
    state = renderer.state
    owner = state.ensure_user(repo.owner_login)
    return {
        "action": "renamed",
        "changes": {"repository": {"name": {"from": previous_full_name.split("/", 1)[1]}}},
        "repository": renderer.repository(repo),
        "installation": _installation_ref(repo.installation_id),
        "sender": renderer.user(sender or owner),
    }
