"""GitHub REST operations prgate performs, over gidgethub, authenticated per installation."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import quote

import aiohttp
import gidgethub
from gidgethub.aiohttp import GitHubAPI

from bot_worker.providers.github_auth import InstallationTokens
from shared_contracts.actions import StatusPayload

T = TypeVar("T")


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

    def __init__(self, session: aiohttp.ClientSession, observer: RequestObserver | None, **kwargs: Any) -> None:
        super().__init__(session, "prgate", **kwargs)
        self._observer = observer

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        started = time.perf_counter()
        status = 0
        try:
            status, resp_headers, data = await super()._request(method, url, headers, body)
            return status, resp_headers, data
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
    ) -> None:
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._tokens = tokens
        self._observer = observer

    async def _as_installation(self, installation_id: int, op: Callable[[GitHubAPI], Awaitable[T]]) -> T:
        """Run `op` with the installation's token; a 401 refreshes the token once and retries."""
        for attempt in (1, 2):
            token = await self._tokens.get(installation_id)
            gh = _ObservedAPI(self._session, self._observer, oauth_token=token, base_url=self._api_url)
            try:
                return await op(gh)
            except gidgethub.BadRequest as exc:
                if exc.status_code != 401 or attempt == 2:
                    raise
                self._tokens.invalidate(installation_id, token)
        raise AssertionError("unreachable")

    async def upsert_comment(
        self, installation_id: int, repo_id: int, number: int, marker: str, body: str
    ) -> CommentResult:
        """Edit our comment (found by its hidden marker) or create it; never a second one."""
        base = f"{repo_path(repo_id)}/issues"

        async def op(gh: GitHubAPI) -> CommentResult:
            async for comment in gh.getiter(f"{base}/{number}/comments?per_page=100"):
                user = comment.get("user") or {}
                if marker in (comment.get("body") or "") and user.get("type") == "Bot":
                    if comment.get("body") == body:
                        return CommentResult.UNCHANGED
                    await gh.patch(f"{base}/comments/{comment['id']}", data={"body": body})
                    return CommentResult.EDITED
            await gh.post(f"{base}/{number}/comments", data={"body": body})
            return CommentResult.CREATED

        return await self._as_installation(installation_id, op)

    async def set_pull_request_state(
        self, installation_id: int, repo_id: int, number: int, state: Literal["open", "closed"]
    ) -> StateResult:
        """Close or reopen; a PR already in that state is left alone (success, no write)."""
        path = f"{repo_path(repo_id)}/pulls/{number}"

        async def op(gh: GitHubAPI) -> StateResult:
            pr = await gh.getitem(path)
            if pr.get("state") == state:
                return StateResult.ALREADY
            await gh.patch(path, data={"state": state})
            return StateResult.CHANGED

        return await self._as_installation(installation_id, op)

    async def set_commit_status(self, installation_id: int, repo_id: int, status: StatusPayload) -> None:
        """Statuses are append-only on GitHub: the newest per context wins, so a repeat is harmless."""
        path = f"{repo_path(repo_id)}/statuses/{status.sha}"
        data: dict[str, str] = {"state": status.state, "context": status.context,
                                "description": status.description}
        if status.target_url:
            data["target_url"] = status.target_url

        async def op(gh: GitHubAPI) -> None:
            await gh.post(path, data=data)

        await self._as_installation(installation_id, op)

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

