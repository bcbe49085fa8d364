"""Bitbucket pull-request events through the one gate (docs/bitbucket.md, "The gate").

Map Bitbucket's identifiers to the backend's ids, ask Bitbucket for the author's permission when the
decision may read it, and hand the event to `gate.pull_request` — dedup, `decide`, challenge and
outbox rows in one transaction, exactly as for GitHub, with `provider = bitbucket` on every row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg

from backend_api.challenges.bitbucket import Identities, as_pull_request_event, needs_permission
from backend_api.gate.pull_request import ingest_pull_requests
from backend_api.store import bitbucket_identities as identities
from backend_api.store.bitbucket_identities import WorkspaceRef
from shared_contracts.actions import ActionType, Provider
from shared_contracts.bitbucket import BitbucketAccount, BitbucketPullRequestEvent
from shared_contracts.events import CollaboratorPermission, IngestResponse, IngestStatus

# The author's permission on a repository of the workspace, asked of Bitbucket (None: none). It raises
# when Bitbucket cannot be asked: the delivery is then refused with a 503 and sent again, rather than
# gating a maintainer because of a blip.
PermissionLookup = Callable[[WorkspaceRef, str, BitbucketAccount], Awaitable[CollaboratorPermission | None]]


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
        # A verified delivery for a workspace never connected (or purged): nothing of it is ours.
        return IngestResponse(status=IngestStatus.IGNORED, delivery_id=event.delivery_id,
                              reason="unknown workspace"), []
    permission = None
    if workspace.status == "ACTIVE" and needs_permission(event):
        permission = await permissions(workspace, event.repository.full_name, event.pull_request.author)
    async with pool.acquire() as conn, conn.transaction():
        repo_id = await identities.repository_id(conn, workspace.tenant_id, event.repository)
        people = await identities.account_ids(conn, [event.pull_request.author, event.actor])
    ids = Identities(tenant_id=workspace.tenant_id, repo_id=repo_id,
                     author_id=people[event.pull_request.author.uuid], actor_id=people[event.actor.uuid])
    [answer] = await ingest_pull_requests(
        pool, [as_pull_request_event(event, ids, permission)], public_url=public_url, max_attempts=max_attempts,
        now=now, provider=Provider.BITBUCKET, event_name=event.event_key,
    )
    return answer
