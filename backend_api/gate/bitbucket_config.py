"""A Bitbucket repository's config file, `.prgate.yml` at the root of its main branch
(docs/bitbucket.md "The config file", docs/configuration.md).

The same schema, validation, precedence and store as GitHub's `.github/prgate.yml`
(`gate/repo_config.py`); only where the file is read differs: Bitbucket's `src` endpoint, with the
workspace's own token. Bitbucket's push payloads carry no file list, so every push to the main
branch reads the file again. There is no organization `.github` repository on Bitbucket:
`_extends` names another repository of the same workspace (`repo` or `workspace/repo`), and a
repository without a file of its own has no file (the owner API's settings, then the defaults).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from backend_api.challenges.bitbucket import match_names
from backend_api.challenges.config_file import ConfigFileError
from backend_api.crypto import Vault
from backend_api.gate.bitbucket_tenancy import TenancyRefused, token_for
from backend_api.gate.repo_config import ReadResult, outcome_of, read_chain, store_read
from backend_api.store import bitbucket as store
from backend_api.store import deliveries, repo_config
from backend_api.store.bitbucket import DiscoveredRepository, WorkspaceStatus
from provider_clients.bitbucket.errors import AuthFailed, NotFound, RateLimited, Unavailable
from provider_clients.bitbucket.models import Repository
from shared_contracts.actions import Provider
from shared_contracts.bitbucket import BitbucketPushEvent
from shared_contracts.events import IngestResponse, IngestStatus
from shared_contracts.repo_config import BITBUCKET_CONFIG_PATH, RefreshResult

log = logging.getLogger(__name__)

# What means "Bitbucket could not be asked": a push answers 503 (the receiver parks it), a refresh
# backs off. A token Bitbucket refuses (401/403) is among them, as GitHub's App errors are: the
# operator fixes the token (reconnects) and the parked push or the mark is read then.
UNAVAILABLE: tuple[type[Exception], ...] = (Unavailable, RateLimited, AuthFailed)


class NotConfigured(Exception):
    """The workspace's token cannot be read (PRGATE_ENCRYPTION_KEY unset or wrong): a 503, not a skip."""


# Every error of a read that means "not now": the push's 503, the refresh's backoff.
CANNOT_ASK: tuple[type[Exception], ...] = (*UNAVAILABLE, NotConfigured)


class FileApi(Protocol):
    """What reading a config file asks of Bitbucket (`provider_clients.bitbucket.api.BitbucketClient`)."""

    async def file(self, ws: str, slug: str, ref: str, file_path: str) -> str | None: ...
    async def repository(self, ws: str, slug: str) -> Repository: ...


@dataclass(frozen=True, slots=True)
class TextBlob:
    sha: str
    content: bytes

    @classmethod
    def of(cls, text: str) -> TextBlob:
        raw = text.encode("utf-8")
        # Git's blob id of the content: what GitHub's path stores too, computed (src gives no sha).
        return cls(hashlib.sha1(b"blob %d\0" % len(raw) + raw, usedforsecurity=False).hexdigest(), raw)


def extends_in_workspace(value: str, current: str) -> str:
    """`_extends: repo` is the same workspace's `repo`; `ws/repo` only when `ws` is this workspace:
    a workspace's token reads only its own repositories, and tenants never cross."""
    workspace = current.split("/", 1)[0]
    if "/" not in value:
        return f"{workspace}/{value}"
    target_ws = value.split("/", 1)[0]
    if target_ws.lower() != workspace.lower():
        raise ConfigFileError(f"{current}:{BITBUCKET_CONFIG_PATH}: _extends {value}: only a repository of the "
                              f"same workspace ({workspace}) can be extended on Bitbucket")
    return value


class BitbucketConfigReader:
    """Reads `.prgate.yml` with the workspace's token; the refresh's `RepositoryReader` for Bitbucket."""

    provider = Provider.BITBUCKET
    unavailable = CANNOT_ASK

    def __init__(self, pool: asyncpg.Pool, vault: Vault | None, api_for: Callable[[str], FileApi]) -> None:
        self._pool, self._vault, self._api_for = pool, vault, api_for

    async def member(self, conn: asyncpg.Connection | Any, installation_id: int, repo_id: int) -> bool:
        return await store.active_repository(conn, installation_id, repo_id) is not None

    async def read(self, installation_id: int, repo_id: int, full_name: str) -> ReadResult:
        async with self._pool.acquire() as conn:
            row = await store.active_repository(conn, installation_id, repo_id)
        return await self.read_file(installation_id, full_name, row.main_branch if row is not None else None)

    async def api(self, tenant_id: int) -> FileApi | None:
        """The API as the workspace; None when it is no longer connected."""
        try:
            token = (await token_for(self._pool, self._vault, tenant_id, 60)).token
        except TenancyRefused as exc:
            if exc.kind == "not_found":
                return None
            raise NotConfigured(exc.message) from None
        return self._api_for(token)

    async def read_file(self, tenant_id: int, full_name: str, main_branch: str | None) -> ReadResult:
        """The repository's `.prgate.yml` on ``main_branch`` (asked of Bitbucket when unknown), followed
        along `_extends`. Bitbucket out of reach raises one of `unavailable`; a workspace no longer
        connected reads as no file (the caller skips it before)."""
        api = await self.api(tenant_id)
        if api is None:
            return ReadResult(config=None)

        async def fetch(name: str, branch: str | None = None) -> TextBlob | None:
            ws, slug = name.split("/", 1)
            if branch is None:
                try:
                    repo = await api.repository(ws, slug)
                except NotFound:
                    return None
                if repo.mainbranch is None:  # an empty repository: no branch, no file
                    return None
                branch = repo.mainbranch.name
            text = await api.file(ws, slug, branch, BITBUCKET_CONFIG_PATH)
            return None if text is None else TextBlob.of(text)

        async def resolve(names: list[str], where: str) -> list[int]:
            async with self._pool.acquire() as conn:
                known = await store.accounts_named(conn, names)
            match = match_names(names, known)
            if match.unknown:
                name = match.unknown[0]
                raise ConfigFileError(
                    f"{where}:{BITBUCKET_CONFIG_PATH}: whitelist_logins: no Bitbucket account {name} is known "
                    "to prgate (a nickname or account_id of someone who opened or commented on a pull request "
                    "of a connected workspace)")
            if match.ambiguous:
                name = match.ambiguous[0]
                raise ConfigFileError(f"{where}:{BITBUCKET_CONFIG_PATH}: whitelist_logins: {name} names "
                                      f"{len(known[name.lower()])} Bitbucket accounts; use the account_id")
            return [match.ids[name.lower()] for name in names]

        own = await fetch(full_name, main_branch)
        if own is None:
            return ReadResult(config=None)
        return await read_chain(full_name, own, path=BITBUCKET_CONFIG_PATH, own_file=True, fetch=fetch,
                                resolve=resolve, target_of=extends_in_workspace, reader_name="the workspace's token")


def _answer(status: IngestStatus, delivery_id: str, reason: str) -> IngestResponse:
    return IngestResponse(status=status, delivery_id=delivery_id, reason=reason[:500])


async def _main_branch(reader: BitbucketConfigReader, event: BitbucketPushEvent, stored: str | None,
                       tenant_id: int) -> str | None:
    """The repository's main branch: the payload's, else the one discovery stored, else Bitbucket's."""
    if event.repository.main_branch or stored:
        return event.repository.main_branch or stored
    api = await reader.api(tenant_id)
    if api is None:
        return None
    ws, slug = event.repository.full_name.split("/", 1)
    try:
        repo = await api.repository(ws, slug)
    except NotFound:
        return None
    return repo.mainbranch.name if repo.mainbranch is not None else None


async def ingest_push(
    pool: asyncpg.Pool, reader: BitbucketConfigReader, event: BitbucketPushEvent, *, max_attempts: int
) -> tuple[IngestResponse, RefreshResult | None]:
    """A push to a repository's main branch: read `.prgate.yml` again, store it, and put a
    `prgate/config` build status (key `prgate-config`) on the pushed commit — FAILED naming the
    problem when the file is invalid, SUCCESSFUL when it is valid. The answer and the read's
    result (None: nothing was read). Bitbucket out of reach raises (`UNAVAILABLE`, `NotConfigured`):
    nothing is written and the receiver sends the push again."""
    extra = {"delivery_id": event.delivery_id, "workspace_uuid": event.workspace_uuid,
             "repo_full_name": event.repository.full_name}
    async with pool.acquire() as conn:
        workspace = await store.get_by_uuid(conn, event.workspace_uuid)
    if workspace is None:
        log.info("bitbucket push ignored: unknown workspace", extra=extra)
        return _answer(IngestStatus.IGNORED, event.delivery_id, "unknown workspace"), None
    tenant = workspace.tenant_id
    repo = event.repository
    async with pool.acquire() as conn, conn.transaction():
        repo_id, joined = await store.recorded_repository(conn, tenant, DiscoveredRepository(
            repo_uuid=repo.uuid, full_name=repo.full_name, main_branch=repo.main_branch, private=repo.private))
        stored = await store.active_repository(conn, tenant, repo_id)
        if joined:
            # First seen in this push: marked in this transaction, so a push that is skipped (another
            # branch) or refused (503) still has its main branch's file read by the job. Twice is harmless.
            await repo_config.mark_stale(conn, tenant, [(repo_id, repo.full_name)],
                                         "bitbucket repository first seen in an event")
    skip: str | None = None
    if workspace.status is not WorkspaceStatus.ACTIVE:
        skip = "workspace is disconnected"
    else:
        main = await _main_branch(reader, event, stored.main_branch if stored else None, tenant)
        if main is None or main != event.branch:
            skip = f"push to {event.branch}, not the main branch ({main or 'unknown'})"
    result = None if skip is not None else await reader.read_file(tenant, repo.full_name, event.branch)
    async with pool.acquire() as conn, conn.transaction():
        fresh = await deliveries.begin(conn, event.delivery_id, event.event, "config", tenant, repo_id,
                                       event.body_sha256, Provider.BITBUCKET)
        if not fresh:
            return _answer(IngestStatus.DUPLICATE, event.delivery_id, "delivery already processed"), None
        if result is None:
            assert skip is not None
            await deliveries.finish(conn, event.delivery_id, event.event, deliveries.DeliveryRecord(
                status=IngestStatus.IGNORED, decision=None, challenge_id=None, reason=skip),
                Provider.BITBUCKET)
            log.info("bitbucket push ignored: %s", skip, extra=extra)
            return _answer(IngestStatus.IGNORED, event.delivery_id, skip), None
        await store_read(conn, tenant, repo_id, repo.full_name, result, event.head_commit, max_attempts,
                         Provider.BITBUCKET)
        dependents = await repo_config.bitbucket_dependents(conn, tenant, repo.full_name)
        await repo_config.mark_stale(conn, tenant, dependents, f"inherits from {repo.full_name}")
        reason = f"config file invalid: {result.error}" if result.error else (
            "config file in force" if result.config is not None else "no config file applies")
        await deliveries.finish(conn, event.delivery_id, event.event, deliveries.DeliveryRecord(
            status=IngestStatus.ACCEPTED, decision=None, challenge_id=None, reason=reason[:500]), Provider.BITBUCKET)
    if dependents:
        log.info("bitbucket push: %d repositories extending its file marked to be read again", len(dependents),
                 extra=extra)
    return _answer(IngestStatus.ACCEPTED, event.delivery_id, reason), outcome_of(result)

