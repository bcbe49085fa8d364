"""Bitbucket workspaces as tenants: connect, list, disconnect, re-discover, hand a worker the token
(docs/bitbucket.md, "Tenancy"). No HTTP here: the handlers in backend_api/http/bitbucket.py map
`TenancyRefused` to a status.

Connecting asks Bitbucket everything first (token, repositories, hook) and writes only then, in one
transaction: Bitbucket refusing or down leaves nothing written. The token is encrypted before it
reaches the store and decrypted only for a caller about to use it; it is never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import asyncpg

from backend_api.crypto import CannotDecrypt, Vault
from backend_api.store import bitbucket as store
from backend_api.store import challenges, outbox, repo_config
from backend_api.store.bitbucket import DiscoveredRepository, WorkspaceRow, WorkspaceStatus
from provider_clients.bitbucket.errors import (
    AuthFailed,
    BitbucketError,
    NotFound,
    RateLimited,
    Unavailable,
)
from provider_clients.bitbucket.hook_secret import bare_uuid, derive
from provider_clients.bitbucket.models import Repository, Workspace
from shared_contracts.bitbucket import (
    BitbucketConnectResponse,
    BitbucketDisconnectResponse,
    BitbucketRediscoveryItem,
    BitbucketRediscoveryReport,
    BitbucketTokenResponse,
    BitbucketWorkspaceList,
    BitbucketWorkspaceView,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_SECONDS = 30


class HookOutcomeLike(Protocol):
    @property
    def hook_uuid(self) -> str: ...
    @property
    def change(self) -> Literal["created", "updated"]: ...


class WorkspaceApi(Protocol):
    """backend_api/bitbucket/workspaces.py: what tenancy asks of Bitbucket with one token."""

    async def workspace(self, workspace: str) -> Workspace: ...
    async def repositories(self, workspace: str) -> list[Repository]: ...
    async def ensure_hook(self, workspace: str, url: str, secret: str) -> HookOutcomeLike: ...
    async def delete_hooks(self, workspace: str, url: str, hook_uuid: str | None) -> int: ...


# token → the API as that token (the handler binds the HTTP session and BITBUCKET_API_URL).
ApiFactory = Callable[[str], WorkspaceApi]
HookUrl = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class TenancyConfig:
    vault: Vault | None
    hook_master: bytes | None  # the first BITBUCKET_WEBHOOK_SECRET
    hook_url: HookUrl  # workspace uuid → the hook's URL under BOT_PUBLIC_URL
    token_ttl_seconds: int = 300


Refusal = Literal["token_refused", "unknown_workspace", "unavailable", "not_configured", "bad_answer", "not_found"]


class TenancyRefused(Exception):
    """Why a tenancy call did nothing; `retry_after` for `unavailable`."""

    def __init__(self, kind: Refusal, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.retry_after = kind, message, retry_after


def _configured(config: TenancyConfig) -> tuple[Vault, bytes]:
    if config.vault is None:
        raise TenancyRefused("not_configured", "PRGATE_ENCRYPTION_KEY is not set: the backend cannot store a "
                             "Bitbucket token (README, Configuration)")
    if config.hook_master is None:
        raise TenancyRefused("not_configured", "BITBUCKET_WEBHOOK_SECRET is not set: the backend cannot give the "
                             "workspace's hook a secret (README, Configuration)")
    return config.vault, config.hook_master


def _refusal(exc: BitbucketError, workspace: str) -> TenancyRefused:
    """What a Bitbucket failure means to the operator. Messages name the workspace, never the token."""
    if isinstance(exc, AuthFailed):
        return TenancyRefused("token_refused", f"the token was refused by Bitbucket for workspace {workspace!r} "
                              f"({exc.status}: {exc.reason}); it needs the webhook and repository scopes")
    if isinstance(exc, NotFound):
        return TenancyRefused("unknown_workspace", f"Bitbucket knows no workspace {workspace!r} this token can see")
    if isinstance(exc, RateLimited):
        wait = int(exc.retry_after) if exc.retry_after is not None else DEFAULT_RETRY_AFTER_SECONDS
        return TenancyRefused("unavailable", "Bitbucket's rate limit for this token is spent; try again later",
                              retry_after=max(1, wait))
    if isinstance(exc, Unavailable):
        return TenancyRefused("unavailable", f"Bitbucket did not answer ({exc.reason}); nothing was changed, try "
                              "again later", retry_after=DEFAULT_RETRY_AFTER_SECONDS)
    return TenancyRefused("bad_answer", f"Bitbucket refused the call: {exc}")


def _discovered(repos: list[Repository]) -> list[DiscoveredRepository]:
    found = []
    for repo in repos:
        repo_uuid = bare_uuid(repo.uuid)
        if repo_uuid is None:  # not a repository prgate could key; said, not silently dropped
            log.warning("bitbucket: a listed repository has no UUID", extra={"repo_full_name": repo.full_name})
            continue
        found.append(DiscoveredRepository(
            repo_uuid=repo_uuid, full_name=repo.full_name,
            main_branch=repo.mainbranch.name if repo.mainbranch else None, private=repo.is_private,
        ))
    return found


def view(row: WorkspaceRow, repositories: int) -> BitbucketWorkspaceView:
    return BitbucketWorkspaceView(
        tenant_id=row.tenant_id, workspace_uuid=row.workspace_uuid, slug=row.slug, name=row.name,
        status=row.status.value, hook_registered=row.hook_uuid is not None, repositories=repositories,
        connected_at=row.connected_at, disconnected_at=row.disconnected_at,
        last_discovered_at=row.last_discovered_at, last_error=row.last_error,
    )


async def connect(
    pool: asyncpg.Pool, api_for: ApiFactory, config: TenancyConfig, workspace: str, token: str
) -> BitbucketConnectResponse:
    """Check the token, discover every repository, find-or-create the hook; then write it all at once."""
    vault, master = _configured(config)
    api = api_for(token)
    # One transaction around the calls too: the slug's lock keeps a concurrent connect from creating
    # a second hook, and nothing is written unless every call worked.
    async with pool.acquire() as conn, conn.transaction():
        await store.lock_slug(conn, workspace)
        try:
            found = await api.workspace(workspace)
            workspace_uuid = bare_uuid(found.uuid)
            if workspace_uuid is None:
                raise TenancyRefused("bad_answer", f"Bitbucket named no UUID for workspace {workspace!r}")
            repos = _discovered(await api.repositories(found.slug))
            hook = await api.ensure_hook(found.slug, config.hook_url(workspace_uuid), derive(master, workspace_uuid))
        except BitbucketError as exc:
            refused = _refusal(exc, workspace)
            log.warning("bitbucket: connect refused: %s", refused.message,
                        extra={"workspace": workspace, "refusal": refused.kind})
            raise refused from None
        row = await store.upsert_workspace(
            conn, workspace_uuid=workspace_uuid, slug=found.slug, name=found.name, token_ciphertext=vault.encrypt(token)
        )
        await store.set_hook(conn, row.tenant_id, hook.hook_uuid)
        diff = await store.apply_discovery(conn, row.tenant_id, repos)
        # Every repository, not only the new ones: pushes were not read while it was disconnected.
        marked = await mark_for_refresh(conn, row.tenant_id, None, "bitbucket workspace connected")
        row = await store.get_by_id(conn, row.tenant_id) or row
    log.info("bitbucket: workspace connected", extra={
        "workspace": row.slug, "tenant_id": row.tenant_id, "hook": hook.change, "repositories": len(repos),
        "added": len(diff.added), "removed": len(diff.removed), "config_marked": marked,
    })
    return BitbucketConnectResponse(
        **view(row, len(repos)).model_dump(), hook=hook.change,
        added_repositories=list(diff.added), removed_repositories=list(diff.removed),
    )


async def list_workspaces(pool: asyncpg.Pool) -> BitbucketWorkspaceList:
    async with pool.acquire() as conn:
        rows = await store.list_workspaces(conn)
        counts = await store.repository_counts(conn)
    return BitbucketWorkspaceList(items=[view(row, counts.get(row.tenant_id, 0)) for row in rows])


async def disconnect(
    pool: asyncpg.Pool, api_for: ApiFactory, config: TenancyConfig, workspace: str, *, purge: bool
) -> BitbucketDisconnectResponse:
    """Delete the hook, stop the tenant's work (DISCONNECTED; pending challenges and untaken actions
    cancelled); `purge` deletes its rows too. A token Bitbucket refuses no longer stops a disconnect
    (the hook is left, said in the answer and the log); Bitbucket down does, with nothing written."""
    reason = "bitbucket workspace disconnected"
    async with pool.acquire() as conn, conn.transaction():
        await store.lock_slug(conn, workspace)
        row = await store.get_by_slug(conn, workspace)
        if row is None:
            raise TenancyRefused("not_found", f"no Bitbucket workspace {workspace!r} is connected")
        hook_deleted = row.hook_uuid is None
        if row.status is WorkspaceStatus.ACTIVE and row.token_ciphertext is not None:
            hook_deleted = await _delete_hook(api_for, config, row)
        cancelled_actions = await outbox.cancel_open_for_tenant(conn, row.tenant_id, reason)
        cancelled_challenges = await challenges.cancel_pending_for_installation(conn, row.tenant_id, reason)
        await store.disconnect(conn, row.tenant_id)
        if purge:
            deleted = await store.purge(conn, row.tenant_id)
    log.info("bitbucket: workspace disconnected", extra={
        "workspace": row.slug, "tenant_id": row.tenant_id, "hook_deleted": hook_deleted,
        "cancelled_actions": cancelled_actions, "cancelled_challenges": cancelled_challenges, "purged": purge,
        **({"purged_rows": sum(deleted.values())} if purge else {}),
    })
    return BitbucketDisconnectResponse(
        tenant_id=row.tenant_id, slug=row.slug, status="DISCONNECTED", hook_deleted=hook_deleted,
        cancelled_challenges=cancelled_challenges, cancelled_actions=cancelled_actions, purged=purge,
    )


async def _delete_hook(api_for: ApiFactory, config: TenancyConfig, row: WorkspaceRow) -> bool:
    if config.vault is None or row.token_ciphertext is None:
        log.warning("bitbucket: hook not deleted, no key to read the token (PRGATE_ENCRYPTION_KEY)",
                    extra={"workspace": row.slug})
        return False
    try:
        token = config.vault.decrypt(row.token_ciphertext)
    except CannotDecrypt as exc:
        log.warning("bitbucket: hook not deleted: %s", exc, extra={"workspace": row.slug})
        return False
    try:
        await api_for(token).delete_hooks(row.slug, config.hook_url(row.workspace_uuid), row.hook_uuid)
    except (AuthFailed, NotFound) as exc:
        log.warning("bitbucket: hook not deleted, Bitbucket refused the stored token; delete the hook in the "
                    "workspace's settings: %s", exc, extra={"workspace": row.slug})
        return False
    except BitbucketError as exc:
        raise _refusal(exc, row.slug) from None
    return True


async def rediscover(pool: asyncpg.Pool, api_for: ApiFactory, vault: Vault | None) -> BitbucketRediscoveryReport:
    """List every ACTIVE workspace's repositories again: new ones added, vanished ones removed.
    A workspace that fails keeps its repositories, gets `last_error`, and the others go on."""
    async with pool.acquire() as conn:
        rows = await store.list_workspaces(conn, WorkspaceStatus.ACTIVE)
    items = []
    for row in rows:
        try:
            if vault is None or row.token_ciphertext is None:
                raise TenancyRefused("not_configured", "no token to read (PRGATE_ENCRYPTION_KEY unset or token gone)")
            repos = _discovered(await api_for(vault.decrypt(row.token_ciphertext)).repositories(row.slug))
        except (BitbucketError, CannotDecrypt, TenancyRefused) as exc:
            message = _refusal(exc, row.slug).message if isinstance(exc, BitbucketError) else str(exc)
            log.warning("bitbucket: re-discovery failed: %s", message, extra={"workspace": row.slug})
            async with pool.acquire() as conn:
                await store.record_error(conn, row.tenant_id, message)
            items.append(BitbucketRediscoveryItem(tenant_id=row.tenant_id, slug=row.slug, error=message))
            continue
        async with pool.acquire() as conn, conn.transaction():
            current = await store.get_by_id(conn, row.tenant_id)
            if current is None or current.status is not WorkspaceStatus.ACTIVE:
                # Disconnected while Bitbucket was asked: its repositories stay as they were.
                log.info("bitbucket: re-discovery skipped a workspace disconnected meanwhile",
                         extra={"workspace": row.slug})
                items.append(BitbucketRediscoveryItem(tenant_id=row.tenant_id, slug=row.slug,
                                                      error="disconnected during re-discovery"))
                continue
            diff = await store.apply_discovery(conn, row.tenant_id, repos)
            if diff.added:
                await mark_for_refresh(conn, row.tenant_id, list(diff.added), "bitbucket repository discovered")
        if diff.added or diff.removed:
            log.info("bitbucket: re-discovery changed repositories", extra={
                "workspace": row.slug, "added": list(diff.added), "removed": list(diff.removed)})
        items.append(BitbucketRediscoveryItem(
            tenant_id=row.tenant_id, slug=row.slug, added=list(diff.added), removed=list(diff.removed)
        ))
    return BitbucketRediscoveryReport(workspaces=items)


async def mark_for_refresh(conn: asyncpg.Connection | Any, tenant_id: int, full_names: list[str] | None,
                           reason: str) -> int:
    """Mark the workspace's repositories (all, or ``full_names``) to have their `.prgate.yml` read by
    the config-refresh job (gate/bitbucket_config.py): a repository connected or discovered later
    may hold a file already, and no push will announce it. How many were marked."""
    refs = await store.repository_refs(conn, tenant_id, full_names)
    await repo_config.mark_stale(conn, tenant_id, refs, reason)
    return len(refs)


async def token_for(
    pool: asyncpg.Pool, vault: Vault | None, tenant_id: int, ttl_seconds: int
) -> BitbucketTokenResponse:
    """The ACTIVE workspace's token for a worker; `not_found` for an unknown or disconnected one."""
    async with pool.acquire() as conn:
        row = await store.get_by_id(conn, tenant_id)
    if row is None or row.status is not WorkspaceStatus.ACTIVE or row.token_ciphertext is None:
        raise TenancyRefused("not_found", f"no connected Bitbucket workspace {tenant_id}")
    if vault is None:
        raise TenancyRefused("not_configured", "PRGATE_ENCRYPTION_KEY is not set: the stored token cannot be read")
    try:
        token = vault.decrypt(row.token_ciphertext)
    except CannotDecrypt as exc:
        log.error("bitbucket: token not readable: %s", exc, extra={"tenant_id": tenant_id})
        raise TenancyRefused("not_configured", str(exc)) from None
    return BitbucketTokenResponse(tenant_id=row.tenant_id, workspace_slug=row.slug, token=token,
                                  ttl_seconds=ttl_seconds)
