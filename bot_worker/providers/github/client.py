"""GitHub REST operations prgate performs, over gidgethub, authenticated per installation."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import quote

import aiohttp
import gidgethub
from gidgethub.aiohttp import GitHubAPI

from bot_worker.providers.base import Classified, RequestBudget, Written
from bot_worker.providers.github.auth import InstallationTokens
from bot_worker.providers.github.outcomes import classify_exception
from bot_worker.providers.github.paging import ForeignOrigin, check_origin
from shared_contracts.actions import ActionType, ClaimedAction, Provider, StatusPayload

T = TypeVar("T")
log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class AppIdentity:
    """This App as GitHub knows it (`GET /app`). Its bot user's login is `<slug>[bot]`: people cannot
    register logins with brackets, so that login is ours alone."""

    id: int
    slug: str

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"


def owns_comment(comment: Mapping[str, Any], app: AppIdentity) -> bool:
    """Whether this App wrote the comment: its bot user, and (where GitHub says) through this App."""
    user = comment.get("user") or {}
    if user.get("type") != "Bot" or user.get("login") != app.bot_login:
        return False
    via = comment.get("performed_via_github_app")
    return not isinstance(via, Mapping) or via.get("id") == app.id


def comment_on(comment: Mapping[str, Any], number: int) -> bool:
    """Whether the comment belongs to issue/PR `number` (its `issue_url` ends with `/issues/{number}`)."""
    return str(comment.get("issue_url") or "").endswith(f"/issues/{number}")


class RequestObserver(Protocol):
    def __call__(self, method: str, status: int, seconds: float) -> None: ...


class CommentResult(StrEnum):
    CREATED = "created"
    EDITED = "edited"
    UNCHANGED = "unchanged"


class StateResult(StrEnum):
    CHANGED = "changed"
    ALREADY = "already"


class _ObservedAPI(GitHubAPI):
    """gidgethub's aiohttp client, reporting every request's status and latency."""

    def __init__(
        self, session: aiohttp.ClientSession, observer: RequestObserver | None,
        budget: RequestBudget | None = None, *, base_url: str,
        on_foreign_link: Callable[[], None] | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(session, "prgate", base_url=base_url, **kwargs)
        self._observer = observer
        self._budget = budget
        self._on_foreign_link = on_foreign_link

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        # Every URL gidgethub builds is on base_url; only a `next` link `getiter` follows can be elsewhere.
        try:
            check_origin(url, self.base_url)
        except ForeignOrigin as exc:
            log.error("GitHub's next-page link points to %s, not GITHUB_API_URL; not followed "
                      "(the token is never sent there)", exc.refused)
            if self._on_foreign_link is not None:
                self._on_foreign_link()
            raise
        # Raises before anything is sent when the lease cannot cover this request.
        timeout = None if self._budget is None else aiohttp.ClientTimeout(total=self._budget.timeout_for(method))
        started = time.perf_counter()
        status = 0
        try:
            async with self._session.request(method, url, headers=headers, data=body, timeout=timeout) as resp:
                status = resp.status
                return resp.status, resp.headers, await resp.read()
        finally:
            if self._observer is not None:
                self._observer(method, status, time.perf_counter() - started)


def repo_path(repo_id: int) -> str:
    """`/repositories/{id}`: GitHub serves every `/repos/{owner}/{repo}` route there too. Acting by
    id, never by name: after a rename a new repository can take the old name (and its PR numbers)."""
    return f"/repositories/{int(repo_id)}"


class GitHubProvider:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_url: str,
        tokens: InstallationTokens,
        observer: RequestObserver | None = None,
        *,
        on_foreign_comment: Callable[[], None] | None = None,
        on_stored_comment_lost: Callable[[], None] | None = None,
        on_foreign_link: Callable[[], None] | None = None,
    ) -> None:
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._tokens = tokens
        self._observer = observer
        self._on_foreign_comment = on_foreign_comment
        self._on_stored_comment_lost = on_stored_comment_lost
        self._on_foreign_link = on_foreign_link
        self._identity: AppIdentity | None = None
        self._identity_lock = asyncio.Lock()

    @property
    def provider(self) -> Provider:
        return Provider.GITHUB

    def classify(self, exc: BaseException) -> Classified:
        return classify_exception(exc)

    async def perform(self, action: ClaimedAction, budget: RequestBudget, written: Written) -> None:
        """The action's writes (`providers.base.ActionRunner`), by repository id: the stored name may
        since belong to another repository (rename + reuse)."""
        inst, repo, number = action.installation_id, action.repo_id, action.pr_number
        p = action.payload
        if isinstance(p, StatusPayload):
            await self.set_commit_status(inst, repo, p, budget=budget)
            written.detail = f"status {p.state} on {p.sha[:7]}"
            return
        detail = []
        if action.action_type is ActionType.REOPEN_PR_WITH_COMMENT:
            # Reopen first: the comment then reads right on an open PR.
            reopened = await self.set_pull_request_state(inst, repo, number, "open", budget=budget)
            detail.append(f"reopen {reopened.value}")
        comment, written.comment_id = await self.upsert_comment(
            inst, repo, number, p.marker, p.body, comment_id=action.comment_id, budget=budget
        )
        detail.append(f"comment {comment.value}")
        if action.action_type is ActionType.CLOSE_PR_WITH_COMMENT:
            closed = await self.set_pull_request_state(inst, repo, number, "closed", budget=budget)
            detail.append(f"close {closed.value}")
        written.detail = "; ".join(detail)

    async def app_identity(self, budget: RequestBudget | None = None) -> AppIdentity:
        """This App's id and slug, from `GET /app` with the App JWT; asked once per process (an App's
        id and slug never change), and never taken from configuration that could name another App."""
        if self._identity is not None:
            return self._identity
        async with self._identity_lock:
            if self._identity is None:
                gh = _ObservedAPI(self._session, self._observer, budget, base_url=self._api_url)
                app = await gh.getitem("/app", jwt=self._tokens.app_jwt())
                identity = AppIdentity(id=int(app["id"]), slug=str(app["slug"]))
                log.info("GitHub App identity", extra={"app_id": identity.id, "bot_login": identity.bot_login})
                self._identity = identity
            return self._identity

    async def _as_installation(
        self, installation_id: int, op: Callable[[GitHubAPI], Awaitable[T]], budget: RequestBudget | None = None
    ) -> T:
        """Run `op` with the installation's token; a 401 refreshes the token once and retries."""
        for attempt in (1, 2):
            token = await self._tokens.get(installation_id)
            gh = _ObservedAPI(self._session, self._observer, budget, oauth_token=token, base_url=self._api_url,
                              on_foreign_link=self._on_foreign_link)
            try:
                return await op(gh)
            except gidgethub.BadRequest as exc:
                if exc.status_code != 401 or attempt == 2:
                    raise
                self._tokens.invalidate(installation_id, token)
        raise AssertionError("unreachable")

    async def upsert_comment(
        self, installation_id: int, repo_id: int, number: int, marker: str, body: str,
        *, comment_id: int | None = None, budget: RequestBudget | None = None,
    ) -> tuple[CommentResult, int]:
        """Edit our comment or create it; never a second one. The comment's id comes back.

        With `comment_id` (the one we wrote before, stored by the backend) the comment is read and
        edited directly; without it, or when it is gone, the PR's comments are searched for the
        marker in a comment *this App* wrote. A foreign comment with the marker (a bot echoing PR
        text, another deployment) is never edited and never decides anything: it is logged, counted
        and passed over."""
        base = f"{repo_path(repo_id)}/issues"
        app = await self.app_identity(budget)

        async def write_over(gh: GitHubAPI, comment: Mapping[str, Any]) -> tuple[CommentResult, int]:
            if comment.get("body") == body:
                return CommentResult.UNCHANGED, int(comment["id"])
            await gh.patch(f"{base}/comments/{int(comment['id'])}", data={"body": body})
            return CommentResult.EDITED, int(comment["id"])

        async def op(gh: GitHubAPI) -> tuple[CommentResult, int]:
            if comment_id is not None:
                stored = await self._stored_comment(gh, f"{base}/comments/{int(comment_id)}")
                if stored is not None and owns_comment(stored, app) and comment_on(stored, number):
                    return await write_over(gh, stored)
                log.warning("stored comment is gone or not ours; searching the PR",
                            extra={"installation_id": installation_id, "comment_id": comment_id})
                if self._on_stored_comment_lost is not None:
                    self._on_stored_comment_lost()
            async for comment in gh.getiter(f"{base}/{number}/comments?per_page=100"):
                if marker not in (comment.get("body") or ""):
                    continue
                if owns_comment(comment, app):
                    return await write_over(gh, comment)
                self._foreign(comment, installation_id)
            created = await gh.post(f"{base}/{number}/comments", data={"body": body})
            return CommentResult.CREATED, int(created["id"])

        return await self._as_installation(installation_id, op, budget)

    @staticmethod
    async def _stored_comment(gh: GitHubAPI, path: str) -> dict[str, Any] | None:
        """The comment, or None when GitHub no longer has it (a maintainer deleted it)."""
        try:
            comment: dict[str, Any] = await gh.getitem(path)
        except gidgethub.BadRequest as exc:
            if exc.status_code == 404:
                return None
            raise
        return comment

    def _foreign(self, comment: Mapping[str, Any], installation_id: int) -> None:
        user = comment.get("user") or {}
        log.warning(
            "ignoring a comment with our marker that this App did not write",
            extra={"installation_id": installation_id, "comment_id": comment.get("id"), "author": user.get("login")},
        )
        if self._on_foreign_comment is not None:
            self._on_foreign_comment()

    async def set_pull_request_state(
        self, installation_id: int, repo_id: int, number: int, state: Literal["open", "closed"],
        *, budget: RequestBudget | None = None,
    ) -> StateResult:
        """Close or reopen; a PR already in that state is left alone (success, no write)."""
        path = f"{repo_path(repo_id)}/pulls/{number}"

        async def op(gh: GitHubAPI) -> StateResult:
            pr = await gh.getitem(path)
            if pr.get("state") == state:
                return StateResult.ALREADY
            await gh.patch(path, data={"state": state})
            return StateResult.CHANGED

        return await self._as_installation(installation_id, op, budget)

    async def set_commit_status(
        self, installation_id: int, repo_id: int, status: StatusPayload, *, budget: RequestBudget | None = None
    ) -> None:
        """Statuses are append-only on GitHub: the newest per context wins, so a repeat is harmless."""
        path = f"{repo_path(repo_id)}/statuses/{status.sha}"
        data: dict[str, str] = {"state": status.state, "context": status.context,
                                "description": status.description}
        if status.target_url:
            data["target_url"] = status.target_url

        async def op(gh: GitHubAPI) -> None:
            await gh.post(path, data=data)

        await self._as_installation(installation_id, op, budget)

    async def get_pull_request(self, installation_id: int, repo_id: int, number: int) -> dict[str, Any]:
        path = f"{repo_path(repo_id)}/pulls/{number}"

        async def op(gh: GitHubAPI) -> dict[str, Any]:
            pr: dict[str, Any] = await gh.getitem(path)
            return pr

        return await self._as_installation(installation_id, op)

    async def installation_exists(self, installation_id: int) -> bool:
        """Whether GitHub still has this installation of the App (`GET /app/installations/{id}`, App
        JWT): False only on GitHub's 404; any other failure raises (the caller cannot tell)."""
        gh = _ObservedAPI(self._session, self._observer, base_url=self._api_url)
        try:
            await gh.getitem(f"/app/installations/{int(installation_id)}", jwt=self._tokens.app_jwt())
        except gidgethub.BadRequest as exc:
            if exc.status_code == 404:
                return False
            raise
        return True

    async def get_permission(self, installation_id: int, repo_id: int, login: str) -> str:
        """The user's permission on the repository: admin, write, read or none (GitHub folds maintain
        into write and triage into read in this field)."""
        path = f"{repo_path(repo_id)}/collaborators/{quote(login, safe='')}/permission"

        async def op(gh: GitHubAPI) -> str:
            try:
                answer = await gh.getitem(path)
            except gidgethub.BadRequest as exc:
                if exc.status_code == 404:  # not a collaborator at all
                    return "none"
                raise
            return str(answer.get("permission") or "none")

        return await self._as_installation(installation_id, op)

