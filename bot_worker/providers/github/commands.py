"""`/prgate <command>` comments: enrich with what only GitHub knows, then forward like any event.

The backend owns the decision; it just cannot ask GitHub itself, so the receiver
asks for the commenter's permission and the PR's current state, with the App's
installation token, within GitHub's 10 s budget.
"""

from __future__ import annotations

import asyncio

from bot_worker.providers.github.client import GitHubProvider
from bot_worker.providers.github.normalize import CommentCommand, command_event
from shared_contracts.events import CommandEvent, PullRequestEvent

ENRICH_TIMEOUT_SECONDS = 5.0


async def enrich(github: GitHubProvider, delivery_id: str, cmd: CommentCommand) -> CommandEvent:
    """Raises on any GitHub failure; the caller answers 503 so GitHub can redeliver."""
    async with asyncio.timeout(ENRICH_TIMEOUT_SECONDS):
        pr, permission = await asyncio.gather(
            github.get_pull_request(cmd.installation_id, cmd.repository.id, cmd.pr_number),
            github.get_permission(cmd.installation_id, cmd.repository.id, cmd.sender.login),
        )
    return command_event(delivery_id, cmd, pr, permission)


def needs_reopener_permission(event: PullRequestEvent) -> bool:
    """A `reopened` by someone other than the author, who is not a bot: the backend exempts a timed-out
    PR only if that person has write access, which only GitHub can say."""
    sender = event.sender
    return (event.action == "reopened" and sender.id != event.pull_request.author.id
            and sender.type != "Bot" and not sender.login.endswith("[bot]"))


async def enrich_reopen(github: GitHubProvider, event: PullRequestEvent) -> PullRequestEvent:
    """The reopener's permission, asked the way `/prgate exempt` asks for the commenter's. Raises on
    any GitHub failure; the caller answers 503 so GitHub can redeliver."""
    async with asyncio.timeout(ENRICH_TIMEOUT_SECONDS):
        permission = await github.get_permission(event.installation_id, event.repository.id, event.sender.login)
    # GitHub documents these values only; anything else is treated as no write access.
    known = permission if permission in ("admin", "maintain", "write", "triage", "read") else "none"
    return event.model_copy(update={"sender_permission": known})
