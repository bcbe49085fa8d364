"""`/prgate <command>` comments: enrich with what only GitHub knows, then forward like any event.

The backend owns the decision; it just cannot ask GitHub itself, so the receiver
asks for the commenter's permission and the PR's current state, with the App's
installation token, within GitHub's 10 s budget.
"""

from __future__ import annotations

import asyncio

from bot_worker.providers.github import GitHubProvider
from bot_worker.webhooks.normalize import CommentCommand, command_event
from shared_contracts.events import CommandEvent

ENRICH_TIMEOUT_SECONDS = 5.0


async def enrich(github: GitHubProvider, delivery_id: str, cmd: CommentCommand) -> CommandEvent:
    """Raises on any GitHub failure; the caller answers 503 so GitHub can redeliver."""
    async with asyncio.timeout(ENRICH_TIMEOUT_SECONDS):
        pr, permission = await asyncio.gather(
            github.get_pull_request(cmd.installation_id, cmd.repository.id, cmd.pr_number),
            github.get_permission(cmd.installation_id, cmd.repository.id, cmd.sender.login),
        )
    return command_event(delivery_id, cmd, pr, permission)
