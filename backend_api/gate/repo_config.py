"""Read a repository's `.github/prgate.yml` again and put it in force (docs/configuration.md).

The backend reads the files itself, with its installation tokens, when the receiver forwards a push
that touched one: the validation, the precedence and the store are the backend's, and an ingest that
cannot reach GitHub answers 503, so the receiver parks the push and replays it. The files are read
before the transaction; the result, the delivery's dedup row and the `prgate/config` commit status
(an outbox action: posted exactly once, by a worker) are written in one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from backend_api.challenges.config_file import ConfigFileError, Layer, extends_target, merge, parse
from backend_api.store import deliveries, installations, outbox, repo_config
from shared_contracts.actions import ActionType, Provider, StatusPayload
from shared_contracts.events import ConfigPushEvent, IngestResponse, IngestStatus
from shared_contracts.repo_config import CONFIG_PATH, CONFIG_STATUS_CONTEXT, ORG_CONFIG_REPO, RefreshResult

log = logging.getLogger(__name__)

MAX_EXTENDS_DEPTH = 5  # a chain of `_extends` this long is a mistake, not a design


class Blob(Protocol):
    @property
    def sha(self) -> str: ...
    @property
    def content(self) -> bytes: ...


class FileReader(Protocol):
    """The backend's GitHub App (backend_api/github/app.py): what a refresh needs of GitHub."""

    async def file_contents(
        self, installation_id: int, path: str, *, repo_id: int | None = None, full_name: str | None = None,
        ref: str | None = None,
    ) -> Blob | None: ...

    async def user_id(self, installation_id: int, login: str) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ReadResult:
    """What reading a repository's files found: the merged config (None: no file applies) or an error."""

    config: dict[str, Any] | None
    key_sources: dict[str, str] = field(default_factory=dict)
    own_file: bool = False
    inherits: list[str] = field(default_factory=list)
    blob_sha: str | None = None
    error: str | None = None


def org_repo(full_name: str) -> str:
    return f"{full_name.split('/', 1)[0]}/{ORG_CONFIG_REPO}"


# A file of another repository by its full name (None: none there); raises when it cannot be asked.
Fetch = Callable[[str], Awaitable[Blob | None]]
# The whitelisted logins of a file → user ids; ``where`` names the file that set them. Raises
# ConfigFileError for one the provider does not know.
ResolveLogins = Callable[[list[str], str], Awaitable[list[int]]]
# `_extends: value` of the file of repository ``current`` → the full name it names; ConfigFileError
# when the provider does not allow it (Bitbucket: another workspace).
ExtendsTarget = Callable[[str, str], str]


async def read(reader: FileReader, installation_id: int, repo_id: int, full_name: str) -> ReadResult:
    """The repository's own file, else its organization's `.github` one (Probot's fallback), each
    followed along `_extends`; GitHubUnavailable propagates (nothing is written then)."""
    own = await reader.file_contents(installation_id, CONFIG_PATH, repo_id=repo_id)
    start, blob = (full_name, own)
    if own is None and full_name.split("/", 1)[1] != ORG_CONFIG_REPO:
        start, blob = org_repo(full_name), await reader.file_contents(
            installation_id, CONFIG_PATH, full_name=org_repo(full_name))
    if blob is None:
        return ReadResult(config=None)

    async def fetch(target: str) -> Blob | None:
        return await reader.file_contents(installation_id, CONFIG_PATH, full_name=target)

    async def resolve(logins: list[str], where: str) -> list[int]:
        return await _user_ids(reader, installation_id, logins, where)

    return await read_chain(start, blob, path=CONFIG_PATH, own_file=own is not None, fetch=fetch, resolve=resolve,
                            target_of=extends_target, reader_name="this installation")


async def read_chain(
    start: str, blob: Blob, *, path: str, own_file: bool, fetch: Fetch, resolve: ResolveLogins,
    target_of: ExtendsTarget, reader_name: str,
) -> ReadResult:
    """The file ``blob`` of repository ``start`` followed along `_extends` and merged, the logins
    resolved: one provider-neutral walk (GitHub's and Bitbucket's files differ only in where they
    are read from). A broken chain is a ReadResult with ``error``; what cannot be asked raises."""
    chain: list[Layer] = []
    inherits = [start]
    try:
        current_name, current = start, blob
        while True:
            parsed = parse(current.content, f"{current_name}:{path}")
            chain.insert(0, Layer(current_name, parsed.values()))
            if parsed.extends is None:
                break
            target = target_of(parsed.extends, current_name)
            if target in inherits:
                raise ConfigFileError(f"{current_name}:{path}: _extends {target} makes a cycle")
            if len(inherits) >= MAX_EXTENDS_DEPTH:
                raise ConfigFileError(f"{current_name}:{path}: more than {MAX_EXTENDS_DEPTH} files "
                                      "chained by _extends")
            found = await fetch(target)
            inherits.append(target)
            if found is None:
                raise ConfigFileError(f"{current_name}:{path}: _extends {target}, which has no "
                                      f"{path} {reader_name} can read")
            current_name, current = target, found
        merged = merge(chain)
        if "whitelist_logins" in merged.config:
            merged.config["whitelist_user_ids"] = await resolve(
                merged.config["whitelist_logins"], merged.key_sources["whitelist_logins"])
    except ConfigFileError as exc:
        return ReadResult(config=None, own_file=own_file, inherits=inherits, error=str(exc))
    return ReadResult(config=merged.config, key_sources=merged.key_sources, own_file=own_file,
                      inherits=inherits, blob_sha=blob.sha)


async def _user_ids(reader: FileReader, installation_id: int, logins: list[str], where: str) -> list[int]:
    """The gate compares user ids (a login can be renamed and taken): resolved when the file is read."""
    ids: list[int] = []
    for login in logins:
        found = await reader.user_id(installation_id, login)
        if found is None:
            raise ConfigFileError(f"{where}:{CONFIG_PATH}: whitelist_logins: unknown GitHub login {login}")
        ids.append(found)
    return ids


async def store_read(conn: asyncpg.Connection | Any, installation_id: int, repo_id: int, full_name: str,
                     result: ReadResult, commit_sha: str | None, max_attempts: int,
                     provider: Provider = Provider.GITHUB) -> None:
    """Write one read inside the caller's transaction; with ``commit_sha``, the status on that commit
    (through the outbox, by ``provider``'s worker runner)."""
    await repo_config.lock(conn, repo_id)
    if result.error is not None:
        log.warning("config file invalid; the last valid configuration stays in force: %s", result.error,
                    extra={"installation_id": installation_id, "repo_id": repo_id})
        await repo_config.save_invalid(conn, repo_id, installation_id, full_name, error=result.error,
                                       commit_sha=commit_sha, own_file=result.own_file, inherits=result.inherits)
    else:
        await repo_config.save_valid(conn, repo_id, installation_id, full_name, config=result.config,
                                     key_sources=result.key_sources, own_file=result.own_file,
                                     inherits=result.inherits, blob_sha=result.blob_sha)
    if commit_sha is None:
        return
    failed = result.error is not None
    description = (result.error if failed else "configuration is valid and in force") or ""
    target = outbox.PrTarget(installation_id, repo_id, full_name, 0, None, max_attempts, provider)
    # pr_number 0: a repository-level action (no pull request); it orders after earlier ones of the repo.
    await target.enqueue(conn, ActionType.SET_COMMIT_STATUS, StatusPayload(
        sha=commit_sha, state="failure" if failed else "success", context=CONFIG_STATUS_CONTEXT,
        description=description[:140],
    ))


async def ingest_config_push(
    pool: asyncpg.Pool, reader: FileReader, event: ConfigPushEvent, *, max_attempts: int
) -> tuple[IngestResponse, ReadResult | None]:
    """Refresh the pushed repository; the answer and what was read (None: nothing was). The
    repositories that inherit from its file are marked stale in the same transaction: the
    config-refresh job reads them (they have no commit of their own to report on, and an
    organization's `.github` can have thousands)."""
    repo = event.repository
    async with pool.acquire() as conn:
        known = await installations.is_active_member(conn, event.installation_id, repo.id)
    if not known:
        # Nothing to read with: no token for an installation prgate does not hold (or no longer), and
        # a repository outside it is not ours to configure. Recorded, so a redelivery is a duplicate.
        async with pool.acquire() as conn, conn.transaction():
            if not await deliveries.begin(conn, event.delivery_id, event.event, "config", event.installation_id,
                                          repo.id, event.body_sha256):
                return IngestResponse(status=IngestStatus.DUPLICATE, delivery_id=event.delivery_id,
                                      reason="delivery already processed"), None
            reason = "repository is not in an active installation prgate knows"
            await deliveries.finish(conn, event.delivery_id, event.event, deliveries.DeliveryRecord(
                status=IngestStatus.IGNORED, decision=None, challenge_id=None, reason=reason))
        log.info("config push ignored: %s", reason, extra={"delivery_id": event.delivery_id,
                                                          "installation_id": event.installation_id})
        return IngestResponse(status=IngestStatus.IGNORED, delivery_id=event.delivery_id, reason=reason), None
    result = await read(reader, event.installation_id, repo.id, repo.full_name)
    async with pool.acquire() as conn, conn.transaction():
        fresh = await deliveries.begin(conn, event.delivery_id, event.event, "config", event.installation_id,
                                       repo.id, event.body_sha256)
        if not fresh:
            return IngestResponse(status=IngestStatus.DUPLICATE, delivery_id=event.delivery_id,
                                  reason="delivery already processed"), None
        await store_read(conn, event.installation_id, repo.id, repo.full_name, result, event.head_sha, max_attempts)
        is_org = repo.full_name.split("/", 1)[1] == ORG_CONFIG_REPO
        dependents = await repo_config.dependents(conn, event.installation_id, repo.full_name, org_defaults=is_org)
        await repo_config.mark_stale(conn, event.installation_id, dependents, f"inherits from {repo.full_name}")
        reason = f"config file invalid: {result.error}" if result.error else (
            "config file in force" if result.config is not None else "no config file applies")
        await deliveries.finish(conn, event.delivery_id, event.event, deliveries.DeliveryRecord(
            status=IngestStatus.ACCEPTED, decision=None, challenge_id=None, reason=reason[:500]))
    if dependents:
        log.info("config push: %d inheriting repositories marked to be read again", len(dependents),
                 extra={"delivery_id": event.delivery_id, "installation_id": event.installation_id})
    return IngestResponse(status=IngestStatus.ACCEPTED, delivery_id=event.delivery_id, reason=reason), result


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """One stale repository after a refresh call: ``result`` is valid | invalid | absent |
    unavailable (GitHub could not be asked; retried after a backoff) | skipped (no longer in an
    active installation: nothing to read with, the mark is dropped)."""

    repo_id: int
    result: RefreshResult


def retry_delay(attempts: int, *, base: float = 30.0, cap: float = 3600.0) -> float:
    """Seconds before a read GitHub could not answer is tried again: doubling, capped."""
    return float(min(cap, base * 2 ** min(attempts, 20)))


def outcome_of(result: ReadResult) -> RefreshResult:
    return "invalid" if result.error is not None else "absent" if result.config is None else "valid"


class RepositoryReader(Protocol):
    """Another provider's config files, refreshed beside GitHub's (gate/bitbucket_config.py): which
    stale marks are its repositories, and how to read one."""

    @property
    def provider(self) -> Provider: ...
    @property
    def unavailable(self) -> tuple[type[Exception], ...]: ...

    async def member(self, conn: asyncpg.Connection | Any, installation_id: int, repo_id: int) -> bool: ...
    async def read(self, installation_id: int, repo_id: int, full_name: str) -> ReadResult: ...


async def refresh_stale(
    pool: asyncpg.Pool, reader: FileReader, *, limit: int, max_attempts: int,
    unavailable: tuple[type[Exception], ...], lease_seconds: float = 120.0,
    others: tuple[RepositoryReader, ...] = (),
) -> tuple[list[RefreshOutcome], int]:
    """Read up to ``limit`` repositories marked stale (`repo_config_stale`), one at a time, each
    written in its own transaction; the outcomes and how many marks are left. ``unavailable``: the
    reader's errors that mean GitHub could not be asked (the caller's GitHub client knows them).
    A mark that is no GitHub repository of an active installation is read by the one of ``others``
    (Bitbucket) it belongs to. Idempotent: a read stores what the provider has now, so reading
    twice changes nothing."""
    async with pool.acquire() as conn:
        claimed = await repo_config.claim_stale(conn, limit, lease_seconds)
    outcomes: list[RefreshOutcome] = []
    for stale in claimed:
        extra = {"installation_id": stale.installation_id, "repo_id": stale.repo_id}
        owner: RepositoryReader | None = None
        async with pool.acquire() as conn:
            github = await installations.is_active_member(conn, stale.installation_id, stale.repo_id)
            if not github:
                for other in others:
                    if await other.member(conn, stale.installation_id, stale.repo_id):
                        owner = other
                        break
        if not github and owner is None:
            async with pool.acquire() as conn:
                await repo_config.clear_stale(conn, stale.repo_id, stale.marked_at)
            log.info("config refresh skipped: repository no longer in an active installation or workspace",
                     extra=extra)
            outcomes.append(RefreshOutcome(stale.repo_id, "skipped"))
            continue
        provider = Provider.GITHUB if owner is None else owner.provider
        cannot_ask = unavailable if owner is None else owner.unavailable
        try:
            if owner is None:
                result = await read(reader, stale.installation_id, stale.repo_id, stale.repo_full_name)
            else:
                result = await owner.read(stale.installation_id, stale.repo_id, stale.repo_full_name)
        except cannot_ask as exc:
            delay = retry_delay(stale.attempts)
            log.warning("config refresh: %s could not be asked, retried in %.0f s: %s", provider.value, delay, exc,
                        extra=extra)
            async with pool.acquire() as conn:
                await repo_config.retry_stale(conn, stale.repo_id, stale.marked_at, delay, str(exc))
            outcomes.append(RefreshOutcome(stale.repo_id, "unavailable"))
            continue
        async with pool.acquire() as conn, conn.transaction():
            await store_read(conn, stale.installation_id, stale.repo_id, stale.repo_full_name, result, None,
                             max_attempts, provider)
            await repo_config.clear_stale(conn, stale.repo_id, stale.marked_at)
        outcomes.append(RefreshOutcome(stale.repo_id, outcome_of(result)))
    async with pool.acquire() as conn:
        remaining = await repo_config.stale_count(conn)
    return outcomes, remaining
