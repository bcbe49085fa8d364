"""Bitbucket pull-request events through the one gate (docs/bitbucket.md, "The gate").

Map Bitbucket's identifiers to the backend's ids, ask Bitbucket for the author's permission when the
decision may read it, and hand the event to `gate.pull_request` — dedup, `decide`, challenge and
outbox rows in one transaction, exactly as for GitHub, with `provider = bitbucket` on every row.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal, Protocol

import asyncpg

from backend_api.challenges.bitbucket import (
    Identities,
    account,
    as_pull_request,
    as_pull_request_event,
    needs_permission,
)
from backend_api.crypto import Vault
from backend_api.gate.bitbucket_tenancy import TenancyRefused, token_for
from backend_api.gate.command import ingest_command as ingest_github_shaped_command
from backend_api.gate.pull_request import ingest_pull_requests
from backend_api.store import bitbucket as store
from backend_api.store import repo_config
from backend_api.store.bitbucket import AccountInfo, DiscoveredRepository, WorkspaceRow, WorkspaceStatus
from provider_clients.bitbucket.errors import AuthFailed, NotFound
from shared_contracts.actions import ActionType, Provider
from shared_contracts.bitbucket import BitbucketAccount, BitbucketCommandEvent, BitbucketPullRequestEvent
from shared_contracts.events import CollaboratorPermission, CommandEvent, IngestResponse, IngestStatus, Repository

# The author's permission on a repository of the workspace, asked of Bitbucket (None: none). It raises
# when Bitbucket cannot be asked: the delivery is then refused with a 503 and sent again, rather than
# gating a maintainer because of a blip.
PermissionLookup = Callable[[WorkspaceRow, str, BitbucketAccount], Awaitable[CollaboratorPermission | None]]

log = logging.getLogger(__name__)


class PermissionApi(Protocol):
    """What the lookup asks of Bitbucket (`provider_clients.bitbucket.api.BitbucketClient` is one)."""

    async def permission(self, ws: str, slug: str, account_id: str) -> Literal["read", "write", "admin"] | None: ...


class CachedPermissions:
    """A `PermissionLookup` asking Bitbucket with the workspace's own token, each answer kept for
    `ttl_seconds` (a PR's events come in bursts; a permission change shows within that time).

    What cannot be known is never an exemption: no `account_id` in the payload, or a token Bitbucket
    refuses for this endpoint (it needs admin on the repository), answers None and is counted under
    its own outcome. Bitbucket out of reach (429, 5xx) raises: the delivery is refused and sent again.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        vault: Vault | None,
        api_for: Callable[[str], PermissionApi],
        *,
        on_outcome: Callable[[str], None],
        ttl_seconds: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool, self._vault, self._api_for = pool, vault, api_for
        self._on_outcome, self._ttl, self._max, self._clock = on_outcome, ttl_seconds, max_entries, clock
        self._cache: OrderedDict[tuple[int, str, str], tuple[float, CollaboratorPermission | None]] = OrderedDict()

    async def __call__(
        self, workspace: WorkspaceRow, repo_full_name: str, who: BitbucketAccount
    ) -> CollaboratorPermission | None:
        if who.account_id is None:
            log.warning("bitbucket: no account_id for %s, permission not asked", who.uuid,
                        extra={"tenant_id": workspace.tenant_id})
            self._on_outcome("no_account_id")
            return None
        key = (workspace.tenant_id, repo_full_name.lower(), who.account_id)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > self._clock():
            self._on_outcome("cached")
            return hit[1]
        level = await self._ask(workspace, repo_full_name, who.account_id)
        self._cache[key] = (self._clock() + self._ttl, level)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return level

    async def _ask(
        self, workspace: WorkspaceRow, repo_full_name: str, account_id: str
    ) -> CollaboratorPermission | None:
        extra = {"tenant_id": workspace.tenant_id, "repo": repo_full_name}
        try:
            token = (await token_for(self._pool, self._vault, workspace.tenant_id, 60)).token
        except TenancyRefused as exc:
            log.warning("bitbucket: permission not asked, no token: %s", exc, extra=extra)
            self._on_outcome("no_token")
            return None
        ws, slug = repo_full_name.split("/", 1)
        try:
            level = await self._api_for(token).permission(ws, slug, account_id)
        except (AuthFailed, NotFound) as exc:
            log.warning("bitbucket: permission not readable with the workspace's token: %s", exc, extra=extra)
            self._on_outcome("refused")
            return None
        self._on_outcome(level or "none")
        return level


def _account_info(who: BitbucketAccount) -> AccountInfo:
    return AccountInfo(account_uuid=who.uuid, account_id=who.account_id, nickname=who.nickname,
                       display_name=who.display_name, account_type=who.type)


def _unknown_workspace(delivery_id: str) -> IngestResponse:
    # A verified delivery for a workspace never connected (or purged): nothing of it is ours.
    return IngestResponse(status=IngestStatus.IGNORED, delivery_id=delivery_id, reason="unknown workspace")


async def _identities(
    pool: asyncpg.Pool, workspace: WorkspaceRow, event: BitbucketPullRequestEvent | BitbucketCommandEvent
) -> Identities:
    async with pool.acquire() as conn, conn.transaction():
        repo = event.repository
        repo_id, joined = await store.recorded_repository(conn, workspace.tenant_id, DiscoveredRepository(
            repo_uuid=repo.uuid, full_name=repo.full_name, main_branch=repo.main_branch, private=repo.private))
        if joined:
            # Known from this event before any discovery listed it: its `.prgate.yml` is read by the
            # config-refresh job (this PR is decided on the owner API's settings meanwhile).
            await repo_config.mark_stale(conn, workspace.tenant_id, [(repo_id, repo.full_name)],
                                         "bitbucket repository first seen in an event")
        people = await store.user_ids(conn, [_account_info(event.pull_request.author), _account_info(event.actor)])
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
        workspace = await store.get_by_uuid(conn, event.workspace_uuid)
    if workspace is None:
        return _unknown_workspace(event.delivery_id), []
    permission = None
    if workspace.status is WorkspaceStatus.ACTIVE and needs_permission(event):
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
        workspace = await store.get_by_uuid(conn, event.workspace_uuid)
    if workspace is None:
        return _unknown_workspace(event.delivery_id)
    sender_permission: CollaboratorPermission = "none"
    author_permission = None
    if workspace.status is WorkspaceStatus.ACTIVE and event.pull_request.state == "OPEN":
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
