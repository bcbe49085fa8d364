"""Bitbucket pull-request events through the one gate (docs/bitbucket.md, "The gate").

Map Bitbucket's identifiers to the backend's ids, ask Bitbucket for the author's permission when the
decision may read it, and hand the event to `gate.pull_request` — dedup, `decide`, challenge and
outbox rows in one transaction, exactly as for GitHub, with `provider = bitbucket` on every row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg

from backend_api.challenges.bitbucket import (
    Identities,
    account,
    as_pull_request,
    as_pull_request_event,
    needs_permission,
)
from backend_api.gate.command import ingest_command as ingest_github_shaped_command
from backend_api.gate.pull_request import ingest_pull_requests
from backend_api.store import bitbucket_identities as identities
from backend_api.store.bitbucket_identities import WorkspaceRef
from shared_contracts.actions import ActionType, Provider
from shared_contracts.bitbucket import BitbucketAccount, BitbucketCommandEvent, BitbucketPullRequestEvent
from shared_contracts.events import CollaboratorPermission, CommandEvent, IngestResponse, IngestStatus, Repository

# The author's permission on a repository of the workspace, asked of Bitbucket (None: none). It raises
# when Bitbucket cannot be asked: the delivery is then refused with a 503 and sent again, rather than
# gating a maintainer because of a blip.
PermissionLookup = Callable[[WorkspaceRef, str, BitbucketAccount], Awaitable[CollaboratorPermission | None]]


def _unknown_workspace(delivery_id: str) -> IngestResponse:
    # A verified delivery for a workspace never connected (or purged): nothing of it is ours.
    return IngestResponse(status=IngestStatus.IGNORED, delivery_id=delivery_id, reason="unknown workspace")


async def _identities(
    pool: asyncpg.Pool, workspace: WorkspaceRef, event: BitbucketPullRequestEvent | BitbucketCommandEvent
) -> Identities:
    async with pool.acquire() as conn, conn.transaction():
        repo_id = await identities.repository_id(conn, workspace.tenant_id, event.repository)
        people = await identities.account_ids(conn, [event.pull_request.author, event.actor])
    return Identities(tenant_id=workspace.tenant_id, repo_id=repo_id,
                      author_id=people[event.pull_request.author.uuid], actor_id=people[event.actor.uuid])


async def ingest_pull_request(
    pool: asyncpg.Pool,
    event: BitbucketPullRequestEvent,
    *,
    permissions: PermissionLookup,
    public_url: str,
    max_attempts: int,
    now: datetime | None = None,
) -> tuple[IngestResponse, list[ActionType]]:
    async with pool.acquire() as conn:
        workspace = await identities.workspace_by_uuid(conn, event.workspace_uuid)
    if workspace is None:
        return _unknown_workspace(event.delivery_id), []
    permission = None
    if workspace.status == "ACTIVE" and needs_permission(event):
        permission = await permissions(workspace, event.repository.full_name, event.pull_request.author)
    ids = await _identities(pool, workspace, event)
    [answer] = await ingest_pull_requests(
        pool, [as_pull_request_event(event, ids, permission)], public_url=public_url, max_attempts=max_attempts,
        now=now, provider=Provider.BITBUCKET, event_name=event.event_key,
    )
    return answer


async def ingest_command(
    pool: asyncpg.Pool,
    event: BitbucketCommandEvent,
    *,
    permissions: PermissionLookup,
    public_url: str,
    max_attempts: int,
) -> IngestResponse:
    """`/prgate recheck` and `/prgate exempt` in a Bitbucket comment, through GitHub's command path.
    The backend asks for the permissions itself: the commenter's (who may exempt) and the author's (a
    recheck evaluates the PR as the gate would)."""
    async with pool.acquire() as conn:
        workspace = await identities.workspace_by_uuid(conn, event.workspace_uuid)
    if workspace is None:
        return _unknown_workspace(event.delivery_id)
    sender_permission: CollaboratorPermission = "none"
    author_permission = None
    if workspace.status == "ACTIVE" and event.pull_request.state == "OPEN":
        repo = event.repository.full_name
        if event.command == "exempt":
            sender_permission = await permissions(workspace, repo, event.actor) or "none"
        elif event.command == "recheck":
            author_permission = await permissions(workspace, repo, event.pull_request.author)
    ids = await _identities(pool, workspace, event)
    cmd = CommandEvent(
        delivery_id=event.delivery_id, body_sha256=event.body_sha256, installation_id=ids.tenant_id,
        repository=Repository(id=ids.repo_id, full_name=event.repository.full_name, private=event.repository.private),
        pull_request=as_pull_request(event.pull_request, ids, author_permission), comment_id=event.comment_id,
        command=event.command, sender=account(event.actor, ids.actor_id), sender_permission=sender_permission,
    )
    return await ingest_github_shaped_command(
        pool, cmd, public_url=public_url, max_attempts=max_attempts, provider=Provider.BITBUCKET,
        event_name=event.event,
    )
