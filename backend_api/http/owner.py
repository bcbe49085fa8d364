"""Owner API handlers (docs/owner-api.md): per-repository settings, challenges, actions, exemptions.

Access: the session cookie of the verification pages (``auth.session``), and the repository's own
provider saying that the signed-in user is an admin of it: GitHub, asked with the installation's
token, for a GitHub repository and a GitHub session; Bitbucket, asked with the workspace's token
(``gate.bitbucket.CachedPermissions``), for a Bitbucket repository and a Bitbucket session. A session
of the other provider is never an admin (403 ``wrong_provider``): an id, a login and a nickname say
nothing across providers. Not signed in: 401; a state-changing call without the session's ``X-CSRF-Token``: 403
``csrf_failed``; repository unknown or not installed: 404; not an admin: 403. Every error is the
usual JSON error body.

Every route is served twice: ``/api/v1/repos/{repo_id}/…`` and ``/api/v1/repos/{owner}/{repo}/…``
(the stored name, resolved to the id before anything else is asked; the access check is by id). A
name is GitHub's unless ``?provider=bitbucket`` says it is a Bitbucket ``workspace/slug``; an id
names one repository across providers (docs/bitbucket.md "Identifiers").
The settings page (``web.settings``) checks access with :func:`admin_access` and writes with
:func:`write_settings`, the same code as the API.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from backend_api.auth.api_tokens import OPERATOR, Grant, RepoTenant, can_read
from backend_api.auth.session import Session
from backend_api.challenges.bitbucket import match_names
from backend_api.challenges.verify import answer_hash, normalize_answer
from backend_api.facts import Enqueued
from backend_api.gate.exempt import Admin, ExemptRefused, UnknownPullRequest, exempt_pull_request
from backend_api.github.api import GitHubUnavailable
from backend_api.github.app import GITHUB_APP, AppNotConfigured, InstallationRefused
from backend_api.http.api_tokens import bearer_grant, out_of_scope
from backend_api.http.errors import PG_INTEGER_MAX, ApiError, json_response, path_id, read_model
from backend_api.keys import BITBUCKET_OWNER_PERMISSIONS, DB_POOL, ENQUEUED, OWNER_CHECKS, SESSIONS, SETTINGS, VAULT
from backend_api.owner.access import (
    CSRF_HEADER,
    CSRF_SCOPE_OWNER_API,
    PageQuery,
    is_admin,
    is_operator,
    next_before,
)
from backend_api.store import bitbucket as bitbucket_store
from backend_api.store import installations, repo_settings, repositories
from backend_api.store import owner as owner_reads
from backend_api.store.db import Conn
from backend_api.web.revocation import current_session
from provider_clients.bitbucket.errors import BitbucketError
from shared_contracts.actions import Provider
from shared_contracts.api_tokens import MonitoredRepository, RepositoryList
from shared_contracts.bitbucket import BitbucketAccount
from shared_contracts.owner import (
    ActionList,
    ChallengeList,
    GitHubAppStatus,
    InstallationStatus,
    OwnerRepoSettings,
    OwnerSession,
    RepoSettings,
    RepoSettingsPatch,
    RepoSettingsUpdate,
)

log = logging.getLogger(__name__)

# Each new whitelisted login costs one GitHub call on the write.
MAX_NEW_WHITELIST_LOGINS = 100

@dataclass(frozen=True, slots=True)
class RepoAccess:
    """A signed-in admin of an installed repository (a Bitbucket one: ``installation_id`` is its
    workspace's tenant id, ``status`` says ACTIVE with the workspace's slug as the account)."""

    session: Session
    repo_id: int
    repo_full_name: str
    installation_id: int
    status: GitHubAppStatus
    provider: Provider = Provider.GITHUB


@dataclass(frozen=True, slots=True)
class ReadAccess:
    """A caller who may read an installed repository: an API token in scope, an operator's session,
    or the repository's admin (signed in with GitHub)."""

    repo_id: int
    repo_full_name: str
    installation_id: int
    status: GitHubAppStatus
    provider: Provider = Provider.GITHUB


async def _session(request: web.Request) -> Session:
    # Either provider's: which one may act is the repository's business (admin_access).
    session = await current_session(request, provider=None)
    if session is None:
        raise ApiError(401, "unauthorized", "sign in first (/auth/github/login, or /auth/bitbucket/login for a "
                       "Bitbucket repository)")
    return session


# GitHub's rules for names: an owner is at most 39 letters, digits and hyphens; a repository at
# most 100 letters, digits, '.', '-', '_'. Anything else cannot be stored, so it is 404 unasked.
_OWNER_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_REPO_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
# Bitbucket's: a workspace slug and a repository slug are letters, digits, '.', '-', '_'.
_WORKSPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,61}")
_SLUG_NAME = re.compile(r"[A-Za-z0-9._-]{1,62}")


@dataclass(frozen=True, slots=True)
class RepoRef:
    """How the caller named the repository: its id, or its ``owner/repo`` name (id then None) of
    ``provider`` (None with an id: the stored repository says which)."""

    repo_id: int | None
    full_name: str | None
    provider: Provider | None = None

    @property
    def shown(self) -> str:
        return f"repository {self.repo_id}" if self.repo_id is not None else f"repository {self.full_name}"


def repo_ref(request: web.Request) -> RepoRef:
    """``{repo_id}``, or ``{owner}/{repo}`` of the route; 404 for what cannot be a repository."""
    if "repo_id" in request.match_info:
        return RepoRef(path_id(request, "repo_id"), None)
    owner, repo = request.match_info["owner"], request.match_info["repo"]
    provider = name_provider(request)
    if provider is Provider.BITBUCKET:
        if not (_WORKSPACE_NAME.fullmatch(owner) and _SLUG_NAME.fullmatch(repo)) or repo in {".", ".."}:
            raise ApiError(404, "not_found", "workspace/slug must be a Bitbucket repository name")
        return RepoRef(None, f"{owner}/{repo}", provider)
    if not (_OWNER_NAME.fullmatch(owner) and _REPO_NAME.fullmatch(repo)) or repo in {".", ".."}:
        raise ApiError(404, "not_found", "owner/repo must be a GitHub repository name")
    return RepoRef(None, f"{owner}/{repo}", provider)


def name_provider(request: web.Request) -> Provider:
    """``?provider=`` of a route naming a repository: GitHub unless it says ``bitbucket``."""
    raw = request.query.get("provider", Provider.GITHUB.value)
    try:
        return Provider(raw)
    except ValueError:
        raise ApiError(422, "validation_error", "provider must be github or bitbucket",
                       [{"loc": ["query", "provider"], "msg": "github or bitbucket", "type": "enum"}]) from None


@dataclass(frozen=True, slots=True)
class Target:
    """The repository a reference resolves to, and the provider it is on."""

    repo_id: int
    provider: Provider


async def resolve(conn: Conn, ref: RepoRef) -> Target | None:
    """The stored repository ``ref`` names; None when prgate knows none by that name. An id is
    looked up among Bitbucket's repositories first (their ids are disjoint from GitHub's), else it
    is GitHub's, whose status read says whether it is installed."""
    if ref.repo_id is not None:
        if await bitbucket_store.repository_by_id(conn, ref.repo_id) is not None:
            return Target(ref.repo_id, Provider.BITBUCKET)
        return Target(ref.repo_id, Provider.GITHUB)
    assert ref.full_name is not None
    if ref.provider is Provider.BITBUCKET:
        found = await bitbucket_store.repo_id_by_name(conn, ref.full_name)
    else:
        found = await installations.repo_id_by_name(conn, ref.full_name)
    return None if found is None else Target(found, ref.provider or Provider.GITHUB)


async def bitbucket_status(conn: Conn, repo_id: int) -> tuple[GitHubAppStatus, bitbucket_store.WorkspaceRow] | None:
    """A Bitbucket repository as the install status the owner API answers: installed while its
    workspace is connected and the last discovery still found it; None otherwise."""
    repo = await bitbucket_store.repository_by_id(conn, repo_id)
    if repo is None or repo.removed_at is not None:
        return None
    workspace = await bitbucket_store.get_by_id(conn, repo.tenant_id)
    if workspace is None or workspace.status is not bitbucket_store.WorkspaceStatus.ACTIVE:
        return None
    return GitHubAppStatus(
        repo_id=repo_id, repo_full_name=repo.full_name, installed=True, installation_id=workspace.tenant_id,
        installation_status=InstallationStatus.ACTIVE, account_login=workspace.slug, repository_selection=None,
    ), workspace


async def _admin(request: web.Request, *, write: bool) -> RepoAccess:
    """The order of checks: session (401), CSRF for writes (403), installed repo (404), provider (403),
    admin (403)."""
    ref = repo_ref(request)
    session = await _session(request)
    if write and not request.app[SESSIONS].check_csrf(
        session, CSRF_SCOPE_OWNER_API, request.headers.get(CSRF_HEADER)
    ):
        raise ApiError(
            403, "csrf_failed", f"missing or wrong {CSRF_HEADER} header (GET /api/v1/session gives the token)"
        )
    return await admin_access(request, session, ref)


async def admin_access(request: web.Request, session: Session, ref: RepoRef) -> RepoAccess:
    """Whether ``session``'s user is an admin of the repository, as the repository's provider says
    (GitHub: by user id and repository id; Bitbucket: by account id, with the workspace's token); a
    session of the other provider is 403 ``wrong_provider`` before anything is asked. Raises
    ApiError (404, 403, 429, 502, 503) otherwise. The API and the settings page both ask here."""
    retry_after = request.app[OWNER_CHECKS].hit(session.sid)
    if retry_after is not None:
        log.warning("owner API: session over its access-check rate", extra={"github_user_id": session.user_id})
        raise ApiError(429, "rate_limited", f"too many owner API calls from this session; try again in "
                       f"{math.ceil(retry_after)} s")
    async with request.app[DB_POOL].acquire() as conn:
        target = await resolve(conn, ref)
        if target is None:
            raise ApiError(404, "not_found", f"prgate knows no {ref.shown}")
        repo_id = target.repo_id
        if target.provider is not session.provider:
            names = {Provider.GITHUB: "GitHub", Provider.BITBUCKET: "Bitbucket"}
            raise ApiError(
                403, "wrong_provider", f"{ref.shown} is a {names[target.provider]} repository: only a "
                f"{names[target.provider]} account can be its admin, and you are signed in with "
                f"{names[session.provider]} (sign in with {names[target.provider]})",
            )
        if target.provider is Provider.BITBUCKET:
            found = await bitbucket_status(conn, repo_id)
            account = await bitbucket_store.account_of_user(conn, session.user_id)
        else:
            status = await installations.app_status(conn, repo_id)
    if target.provider is Provider.BITBUCKET:
        return await _bitbucket_admin(request, session, ref, found, account)
    if not status.installed or status.installation_id is None or status.repo_full_name is None:
        raise ApiError(404, "not_found", f"prgate is not installed on {ref.shown}")
    if status.installation_id not in session.installation_ids:
        if ref.repo_id is None:
            # Asked by name: a repository this user could not reach is answered as unknown, so that
            # probing names tells a stranger nothing (by id the 403 says no more than the public status).
            raise ApiError(404, "not_found", f"prgate knows no {ref.shown} that you can reach")
        # GitHub told us at sign-in which of our installations this user reaches; any other one's
        # token is never minted or spent on them (a stranger could otherwise make us burn a victim
        # installation's rate limit).
        raise ApiError(
            403, "forbidden", f"@{session.login} is not an admin of {ref.shown} (its installation is "
            "not one you could reach when you signed in; if it was installed since, sign in again)",
        )
    try:
        # By id: the stored name may since have been taken by another repository (rename + reuse).
        permission = await request.app[GITHUB_APP].permission(
            status.installation_id, repo_id, session.login, session.user_id
        )
    except AppNotConfigured:
        raise ApiError(503, "github_app_not_configured", "the backend has no GitHub App credentials") from None
    except InstallationRefused as exc:
        if exc.status == 404:
            raise ApiError(404, "not_found", f"prgate is not installed on {ref.shown}") from None
        raise ApiError(
            403, "forbidden", "GitHub refused prgate a token for this installation (is it suspended?), "
            "so admin rights cannot be checked",
        ) from None
    except GitHubUnavailable as exc:
        log.warning("owner API: GitHub unavailable: %s", exc)
        raise ApiError(502, "github_unavailable", "prgate could not ask GitHub about your permission") from None
    if not is_admin(permission):
        raise ApiError(
            # By id the repository is named by id only: its name is for its admins (a private name is
            # a secret); by name the caller gave the name.
            403, "forbidden", f"@{session.login} is not an admin of {ref.shown} (GitHub says {permission})"
        )
    return RepoAccess(session, repo_id, status.repo_full_name, status.installation_id, status)


async def _bitbucket_admin(
    request: web.Request, session: Session, ref: RepoRef,
    found: tuple[GitHubAppStatus, bitbucket_store.WorkspaceRow] | None, account: bitbucket_store.AccountInfo | None,
) -> RepoAccess:
    """Bitbucket's answer, asked with the workspace's token (the only credential that can read a
    user's permission since CHANGE-2770): ``admin`` is admin, anything else — no permission, a
    token Bitbucket refuses for the endpoint, an account without an ``account_id`` — is not."""
    if found is None:
        raise ApiError(404, "not_found", f"prgate is not connected to {ref.shown}")
    status, workspace = found
    assert status.repo_full_name is not None
    assert status.installation_id is not None
    if account is None:  # a session older than its account row (purged since): nothing to ask about
        raise ApiError(403, "forbidden", f"@{session.login} is not an admin of {ref.shown} (prgate knows no "
                       "Bitbucket account of this session; sign in again)")
    if workspace.token_ciphertext is None or request.app.get(VAULT) is None:
        # Only the workspace's token can read a permission; without it the answer would be a guess.
        raise ApiError(503, "bitbucket_not_configured", "prgate cannot read this workspace's token "
                       "(PRGATE_ENCRYPTION_KEY unset, or the workspace has no token), so admin rights cannot be "
                       "checked")
    who = BitbucketAccount(account_id=account.account_id, uuid=account.account_uuid, nickname=account.nickname,
                           display_name=account.display_name, type=account.account_type)
    try:
        permission = await request.app[BITBUCKET_OWNER_PERMISSIONS](workspace, status.repo_full_name, who)
    except BitbucketError as exc:
        log.warning("owner API: Bitbucket unavailable: %s", exc, extra={"tenant_id": workspace.tenant_id})
        raise ApiError(502, "bitbucket_unavailable", "prgate could not ask Bitbucket about your permission") from None
    if permission is None and ref.repo_id is None:
        # By name, a repository this account has no permission on is answered as unknown, as on GitHub.
        raise ApiError(404, "not_found", f"prgate knows no {ref.shown} that you can reach")
    if not is_admin(permission or "none"):
        raise ApiError(403, "forbidden",
                       f"@{session.login} is not an admin of {ref.shown} (Bitbucket says {permission or 'none'})")
    return RepoAccess(session, status.repo_id, status.repo_full_name, status.installation_id, status,
                      Provider.BITBUCKET)


async def reader(request: web.Request) -> Grant | Session:
    """Who reads: a bearer token's grant (401 when the token is bad, even beside a session), an
    operator's session (every tenant: the operator grant), or another signed-in user's session
    (the repository admin check decides); 401 signed out."""
    grant = await bearer_grant(request)
    if grant is not None:
        return grant
    session = await _session(request)
    # Operators are GitHub accounts (PRGATE_OPERATORS): a Bitbucket nickname never passes for one.
    if session.provider is Provider.GITHUB and is_operator(
        request.app[SETTINGS].operators, session.login, session.user_id
    ):
        return OPERATOR
    return session


async def read_access(request: web.Request) -> ReadAccess:
    """The access check of every per-repository read route (docs/api-tokens.md): a token or an
    operator sees the repositories of its grant (:func:`can_read`), anything else is 404 whether
    the repository exists or not; another signed-in user must be its admin (``admin_access``)."""
    ref = repo_ref(request)
    grant = await reader(request)
    if isinstance(grant, Session):
        admin = await admin_access(request, grant, ref)
        return ReadAccess(admin.repo_id, admin.repo_full_name, admin.installation_id, admin.status, admin.provider)
    hidden = ApiError(404, "not_found", f"no {ref.shown} that you can read")
    async with request.app[DB_POOL].acquire() as conn:
        target = await resolve(conn, ref)
        status: GitHubAppStatus | None = None
        if target is not None and target.provider is Provider.BITBUCKET:
            found = await bitbucket_status(conn, target.repo_id)
            status = None if found is None else found[0]
        elif target is not None:
            status = await installations.app_status(conn, target.repo_id)
    if (target is None or status is None or not status.installed or status.installation_id is None
            or status.repo_full_name is None):
        raise hidden
    if not can_read(grant, RepoTenant(target.provider.value, status.installation_id)):
        out_of_scope(request)
        raise hidden
    return ReadAccess(status.repo_id, status.repo_full_name, status.installation_id, status, target.provider)


def _page_query(request: web.Request) -> PageQuery:
    try:
        return PageQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        details = [{"loc": ["query", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors]
        raise ApiError(422, "validation_error", "invalid query parameters", details) from None


async def settings_view(request: web.Request, access: RepoAccess | ReadAccess) -> OwnerRepoSettings:
    async with request.app[DB_POOL].acquire() as conn:
        current, sources = await repo_settings.effective(conn, access.repo_id)
        answer_set = await repo_settings.answer_is_set(conn, access.repo_id)
    return OwnerRepoSettings(
        **current.model_dump(), repo_id=access.repo_id, repo_full_name=access.repo_full_name,
        challenge_answer_set=answer_set, sources=sources,
    )


async def _whitelist_ids(
    request: web.Request, access: RepoAccess, logins: list[str], current: RepoSettings
) -> list[int]:
    """The user id of each whitelisted login, in order. A login already stored keeps the id it had
    when it was added (that account is the one the admin meant, even if the login moved since); a
    new one is asked of GitHub now — on Bitbucket, matched against the accounts prgate knows, by the
    config file's rule (:func:`_bitbucket_ids`) — and an unknown login refuses the whole write (422)."""
    known: dict[str, int] = {}
    if len(current.whitelist_logins) == len(current.whitelist_user_ids):
        known = {login.casefold(): uid for login, uid in zip(current.whitelist_logins, current.whitelist_user_ids,
                                                               strict=True)}
    new = list(dict.fromkeys(login.casefold() for login in logins if login.casefold() not in known))
    if len(new) > MAX_NEW_WHITELIST_LOGINS:
        raise ApiError(422, "validation_error",
                       f"at most {MAX_NEW_WHITELIST_LOGINS} new whitelist logins per write ({len(new)} given)")
    if access.provider is Provider.BITBUCKET:
        known.update(await _bitbucket_ids(request, [login for login in logins if login.casefold() in new]))
        return [known[login.casefold()] for login in logins]
    unknown: list[str] = []
    for login in (login for login in logins if login.casefold() in new and login.casefold() not in known):
        try:
            found = await request.app[GITHUB_APP].user_id(access.installation_id, login)
        except GitHubUnavailable as exc:
            log.warning("owner API: GitHub unavailable resolving a login: %s", exc)
            raise ApiError(502, "github_unavailable", "prgate could not ask GitHub who the logins are") from None
        except InstallationRefused:
            raise ApiError(403, "forbidden", "GitHub refused prgate a token for this installation") from None
        if found is None:
            unknown.append(login)
        else:
            known[login.casefold()] = found
    if unknown:
        raise ApiError(422, "validation_error", f"GitHub knows no user {', '.join(unknown)}",
                       [{"loc": ["body", "whitelist_logins"], "msg": f"unknown GitHub login {u}",
                         "type": "unknown_login"} for u in unknown])
    return [known[login.casefold()] for login in logins]


async def _bitbucket_ids(request: web.Request, names: list[str]) -> dict[str, int]:
    """Bitbucket nicknames or ``account_id``s → user ids, as the gate matches a ``.prgate.yml``'s
    (``challenges.bitbucket.match_names``); 422 naming every unknown or shared name."""
    async with request.app[DB_POOL].acquire() as conn:
        match = match_names(names, await bitbucket_store.accounts_named(conn, names))
    details = [{"loc": ["body", "whitelist_logins"], "msg": f"no Bitbucket account {n} is known to prgate",
                "type": "unknown_login"} for n in match.unknown]
    details += [{"loc": ["body", "whitelist_logins"], "msg": f"{n} names several Bitbucket accounts; use the "
                 "account_id", "type": "ambiguous_login"} for n in match.ambiguous]
    if details:
        raise ApiError(422, "validation_error", "prgate knows no single Bitbucket account for "
                       f"{', '.join([*match.unknown, *match.ambiguous])} (a nickname or account_id of someone "
                       "who opened or commented on a pull request, or signed in, in a connected workspace)", details)
    return {name.casefold(): match.ids[name.lower()] for name in names}


# ---- handlers -------------------------------------------------------------------------------------


async def owner_session(request: web.Request) -> web.Response:
    session = await _session(request)
    token = request.app[SESSIONS].csrf_token(session, CSRF_SCOPE_OWNER_API)
    return json_response(OwnerSession(
        user_id=session.user_id, login=session.login, provider=session.provider, csrf_token=token,
        expires_at=datetime.fromtimestamp(session.expires_at, UTC),
    ))


async def get_repo_settings(request: web.Request) -> web.Response:
    access = await read_access(request)
    return json_response(await settings_view(request, access))


async def get_installation(request: web.Request) -> web.Response:
    """The install details (name, installation, account) the public status no longer gives."""
    access = await read_access(request)
    return json_response(access.status)


async def write_settings(
    request: web.Request, access: RepoAccess, values: dict[str, Any], challenge_answer: str | None
) -> OwnerRepoSettings:
    """Store ``values`` (RepoSettings' fields; ``whitelist_user_ids`` is resolved here) and, unless
    None, the answer; 422 before anything is written if they do not make valid settings."""
    async with request.app[DB_POOL].acquire() as conn:
        current = await repo_settings.get(conn, access.repo_id)
    try:
        checked = RepoSettings.model_validate({**values, "whitelist_user_ids": []})
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        details = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        raise ApiError(422, "validation_error", "the settings are not valid", details) from None
    ids = await _whitelist_ids(request, access, checked.whitelist_logins, current)
    new = checked.model_copy(update={"whitelist_user_ids": ids})
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        await repo_settings.put(conn, access.repo_id, new)
        if challenge_answer is not None:
            # Hashed exactly as the verification page checks it (challenges.verify); blank removes it.
            stored = answer_hash(challenge_answer) if normalize_answer(challenge_answer) else None
            await repo_settings.set_answer_hash(conn, access.repo_id, stored)
    changed = sorted(k for k, v in new.model_dump().items() if getattr(current, k) != v)
    log.info(
        "repository settings changed",
        extra={"repo_id": access.repo_id, "github_user_id": access.session.user_id, "fields": changed,
               "answer_changed": challenge_answer is not None},
    )
    return await settings_view(request, access)


async def put_repo_settings(request: web.Request) -> web.Response:
    access = await _admin(request, write=True)
    update = await read_model(request, RepoSettingsUpdate)
    values = update.model_dump(exclude={"challenge_answer", "whitelist_user_ids"})
    return json_response(await write_settings(request, access, values, update.challenge_answer))


async def patch_repo_settings(request: web.Request) -> web.Response:
    access = await _admin(request, write=True)
    patch = await read_model(request, RepoSettingsPatch)
    async with request.app[DB_POOL].acquire() as conn:
        current = await repo_settings.get(conn, access.repo_id)
    values = patch.apply(current)
    values.pop("whitelist_user_ids", None)
    return json_response(await write_settings(request, access, values, patch.challenge_answer))


async def list_challenges(request: web.Request) -> web.Response:
    access = await read_access(request)
    query = _page_query(request)
    async with request.app[DB_POOL].acquire() as conn:
        items = await owner_reads.repo_challenges(conn, access.repo_id, query.limit, query.before)
    return json_response(ChallengeList(
        items=items, next_before=next_before([c.challenge_id for c in items], query.limit)
    ))


async def list_actions(request: web.Request) -> web.Response:
    access = await read_access(request)
    query = _page_query(request)
    async with request.app[DB_POOL].acquire() as conn:
        items = await owner_reads.repo_actions(conn, access.repo_id, query.limit, query.before)
    return json_response(ActionList(items=items, next_before=next_before([a.action_id for a in items], query.limit)))


async def exempt_pull(request: web.Request) -> web.Response:
    access = await _admin(request, write=True)
    number = path_id(request, "number", maximum=PG_INTEGER_MAX)
    settings = request.app[SETTINGS]
    try:
        result = await exempt_pull_request(
            request.app[DB_POOL], access.repo_id, access.repo_full_name, number,
            Admin(user_id=access.session.user_id, login=access.session.login),
            public_url=settings.public_url, max_attempts=settings.action_max_attempts, provider=access.provider,
        )
    except UnknownPullRequest as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except ExemptRefused as exc:
        raise ApiError(409, "conflict", f"not exempted: {exc}") from None
    log.info(
        "pull request exempted from the owner API",
        extra={"repo_id": access.repo_id, "pr_number": number, "github_user_id": access.session.user_id,
               "challenge_id": result.challenge_id, "action_ids": result.enqueued_action_ids},
    )
    request[ENQUEUED] = Enqueued(tuple(result.enqueued_action_ids))
    return json_response(result)


async def list_repositories(request: web.Request) -> web.Response:
    """Every monitored repository the caller may read, any provider: a token's grant or an
    operator's session; another signed-in user is refused (a list of an installation's repositories
    would name private ones its admin rights do not cover)."""
    grant = await reader(request)
    if isinstance(grant, Session):
        raise ApiError(403, "forbidden", "the repository list is for operators and API tokens")
    async with request.app[DB_POOL].acquire() as conn:
        rows = await repositories.monitored(conn)
    return json_response(RepositoryList(items=[
        MonitoredRepository(id=r.repo_id, provider=r.provider, full_name=r.full_name, tenant_id=r.tenant_id,
                            tenant=r.tenant_name)
        for r in rows if can_read(grant, r.tenant)
    ]))
