"""Confirm state-destroying events against GitHub before forwarding them (docs/security.md, "A captured `closed` body
replayed under a fresh delivery id").

GitHub's signature covers the body, not `X-GitHub-Delivery`: a captured `pull_request.closed` or
`installation.deleted` body can be replayed under a fresh delivery id (the backend's body-digest dedup
refuses the exact bytes again) or arrive late, after the PR was reopened. Before either cancels or
deletes anything, the receiver asks GitHub what is true now:

- `pull_request.closed`: `GET /repositories/{id}/pulls/{n}`; the event is forwarded with GitHub's
  current `state`, and the backend cancels a pending challenge only when that says `closed`.
- `installation.deleted`: `GET /app/installations/{id}`; forwarded only on GitHub's 404, otherwise
  answered 2xx and dropped (logged, counted): the installation is alive.

The receiver does it (not the backend) because it already holds the App credentials and GitHub
client for commands, and because a 503 to GitHub when GitHub cannot be asked keeps the delivery
failed in GitHub's log, so the redelivery job brings it back later: nothing is dropped unconfirmed.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

from bot_worker.backend.ingest import IngestEvent
from bot_worker.providers.github.client import GitHubProvider
from shared_contracts.events import InstallationSyncEvent, PullRequestEvent

CONFIRM_TIMEOUT_SECONDS = 5.0


class Verdict(StrEnum):
    CONFIRMED = "confirmed"  # GitHub agrees: forward
    REFUTED = "refuted"  # GitHub says otherwise (the PR is open / the installation exists)
    UNCONFIGURED = "unconfigured"  # no App credentials on this receiver: forwarded as received


def needs_confirmation(model: IngestEvent) -> bool:
    if isinstance(model, PullRequestEvent):
        return model.action == "closed"
    if isinstance(model, InstallationSyncEvent):
        return (model.event, model.action) == ("installation", "deleted")
    return False


async def confirm(github: GitHubProvider, model: IngestEvent) -> tuple[IngestEvent, Verdict]:
    """The event to forward (a `closed` carries GitHub's current state) and GitHub's verdict.

    Raises on any GitHub failure: the caller answers 503 so GitHub keeps the delivery redeliverable.
    """
    async with asyncio.timeout(CONFIRM_TIMEOUT_SECONDS):
        if isinstance(model, PullRequestEvent):
            pr = await github.get_pull_request(model.installation_id, model.repository.id, model.pull_request.number)
            state = "closed" if pr.get("state") == "closed" else "open"
            now = model.pull_request.model_copy(update={"state": state})
            verdict = Verdict.CONFIRMED if state == "closed" else Verdict.REFUTED
            return model.model_copy(update={"pull_request": now}), verdict
        assert isinstance(model, InstallationSyncEvent)
        alive = await github.installation_exists(model.installation.id)
        return model, Verdict.REFUTED if alive else Verdict.CONFIRMED
