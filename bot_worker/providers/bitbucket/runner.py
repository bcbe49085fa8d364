"""Bitbucket Cloud actions (`provider: "bitbucket"`) through REST API 2.0 with the workspace's token.

`ActionRunner` for the executor (docs/bitbucket.md, "Actions"). The action's `installation_id` is
the workspace's tenant id, `repo_full_name` is `workspace/slug`, `pr_number` the PR id.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Final, Protocol, TypeVar

import aiohttp

from bot_worker.providers.base import Classified, RequestBudget, Written
from bot_worker.providers.bitbucket.outcomes import BadAction, classify_exception
from bot_worker.providers.bitbucket.tokens import WorkspaceTokens
from provider_clients.bitbucket.api import BitbucketClient
from provider_clients.bitbucket.errors import AuthFailed, BitbucketError, NotFound
from provider_clients.bitbucket.models import BuildState, Comment
from shared_contracts.actions import ActionType, ClaimedAction, CommentPayload, Provider, StatusPayload
from shared_contracts.repo_config import CONFIG_STATUS_CONTEXT

log = logging.getLogger(__name__)
T = TypeVar("T")

# The build status key a merge check requires (docs/bitbucket.md).
STATUS_KEY: Final = "prgate"
# The config file's status (context `prgate/config`) has a key of its own, so an invalid
# `.prgate.yml` never replaces the gate's status on a commit that is also a PR's head.
CONFIG_STATUS_KEY: Final = "prgate-config"
STATUS_KEYS: Final[dict[str, str]] = {CONFIG_STATUS_CONTEXT: CONFIG_STATUS_KEY}
BUILD_STATES: Final[dict[str, BuildState]] = {
    "pending": "INPROGRESS", "success": "SUCCESSFUL", "failure": "FAILED", "error": "FAILED",
}
# prgate writes with the workspace's access token, whose user is an `app_user` (a bot): a comment
# with our marker by anyone else is foreign (docs/bitbucket.md).
OWN_AUTHOR_TYPE: Final = "app_user"


class RequestObserver(Protocol):
    def __call__(self, method: str, status: int, seconds: float) -> None: ...


class CommentResult(StrEnum):
    CREATED = "created"
    EDITED = "edited"
    UNCHANGED = "unchanged"


def split_full_name(full_name: str) -> tuple[str, str]:
    workspace, _, slug = full_name.partition("/")
    if not workspace or not slug or "/" in slug:
        raise BadAction(f"repository {full_name!r} is not workspace/slug")
    return workspace, slug


def build_state(state: str) -> BuildState:
    return BUILD_STATES[state]


def status_key(context: str) -> str:
    """Bitbucket keys a commit's statuses: one key per context prgate writes (the gate's is `prgate`)."""
    return STATUS_KEYS.get(context, STATUS_KEY)


_HTML_MARKER = re.compile(r"^<!--\s*(.*?)\s*-->$")


def markdown_payload(p: CommentPayload) -> CommentPayload:
    """The comment as Bitbucket shows it: its Markdown prints HTML, so an HTML comment marker would be
    visible text. A reference-style link definition renders as nothing and survives edits (docs/bitbucket.md)."""
    found = _HTML_MARKER.match(p.marker)
    if found is None:
        return p
    marker = f"[//]: # ({found.group(1)})"
    return CommentPayload(marker=marker, body=p.body.replace(p.marker, marker))


def owns_comment(comment: Comment, marker: str) -> bool:
    return (not comment.deleted and marker in comment.content.raw
            and comment.user is not None and comment.user.type == OWN_AUTHOR_TYPE)


class BitbucketRunner:
    def __init__(
        self, session: aiohttp.ClientSession, api_url: str, tokens: WorkspaceTokens,
        observer: RequestObserver | None = None, *,
        on_foreign_comment: Callable[[], None] | None = None,
        on_stored_comment_lost: Callable[[], None] | None = None,
    ) -> None:
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._tokens = tokens
        self._observer = observer
        self._on_foreign_comment = on_foreign_comment
        self._on_stored_comment_lost = on_stored_comment_lost

    @property
    def provider(self) -> Provider:
        return Provider.BITBUCKET

    def classify(self, exc: BaseException) -> Classified:
        return classify_exception(exc)

    async def perform(self, action: ClaimedAction, budget: RequestBudget, written: Written) -> None:
        workspace, slug = split_full_name(action.repo_full_name)
        tenant, pr_id = action.installation_id, action.pr_number
        p = action.payload
        if isinstance(p, StatusPayload):
            await self._as_workspace(tenant, budget, lambda bb: self._status(bb, budget, workspace, slug, p))
            written.detail = f"status {p.state} on {p.sha[:7]}"
            return
        assert isinstance(p, CommentPayload)
        shown = markdown_payload(p)
        detail: list[str] = []

        async def op(bb: BitbucketClient) -> None:
            detail.clear()
            # A comment written by an earlier try (or before a 401) is the one to edit.
            remembered = written.comment_id or action.comment_id
            result, written.comment_id = await self._upsert(bb, budget, tenant, workspace, slug, pr_id, shown,
                                                            remembered)
            detail.append(f"comment {result.value}")
            if action.action_type is ActionType.CLOSE_PR_WITH_COMMENT:
                await self._call(budget, "POST", bb.decline(workspace, slug, pr_id))
                detail.append("declined")
            elif action.action_type is ActionType.REOPEN_PR_WITH_COMMENT:
                # Bitbucket cannot reopen a declined pull request: the comment is the nearest right thing.
                detail.append("reopen impossible on Bitbucket: commented only")

        await self._as_workspace(tenant, budget, op)
        written.detail = "; ".join(detail)

    async def _as_workspace(
        self, tenant_id: int, budget: RequestBudget, op: Callable[[BitbucketClient], Awaitable[T]]
    ) -> T:
        """Run `op` with the workspace's token; a 401 drops the token, asks the backend again once."""
        for attempt in (1, 2):
            token = await self._tokens.get(tenant_id)
            client = BitbucketClient(self._session, self._api_url, token, timeout_seconds=budget.provider_timeout)
            try:
                return await op(client)
            except AuthFailed as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                log.warning("Bitbucket refused the workspace's token (401): asking the backend again",
                            extra={"installation_id": tenant_id})
                self._tokens.invalidate(tenant_id, token)
        raise AssertionError("unreachable")

    async def _call(self, budget: RequestBudget, method: str, call: Awaitable[T]) -> T:
        """One client call, started only when the lease still covers it, observed by status."""
        try:
            budget.timeout_for(method)
        except BaseException:
            if hasattr(call, "close"):
                call.close()  # the coroutine is never awaited
            raise
        started = time.perf_counter()
        status = 200
        try:
            return await call
        except BitbucketError as exc:
            status = exc.status or 0
            raise
        except BaseException:
            status = 0
            raise
        finally:
            if self._observer is not None:
                self._observer(method, status, time.perf_counter() - started)

    async def _status(self, bb: BitbucketClient, budget: RequestBudget, workspace: str, slug: str,
                      p: StatusPayload) -> None:
        """Statuses are keyed: posting `prgate` again replaces the commit's previous one (a repeat is harmless)."""
        url = p.target_url or f"{self._api_url}/2.0/repositories/{workspace}/{slug}/commit/{p.sha}"
        await self._call(budget, "POST", bb.set_build_status(
            workspace, slug, p.sha, key=status_key(p.context), state=build_state(p.state), url=url, name=p.context,
            description=p.description or None,
        ))

    async def _upsert(
        self, bb: BitbucketClient, budget: RequestBudget, tenant: int, workspace: str, slug: str, pr_id: int,
        p: CommentPayload, comment_id: int | None,
    ) -> tuple[CommentResult, int]:
        """Edit our comment or create it; never a second one. The comment's id comes back."""

        async def write_over(comment: Comment) -> tuple[CommentResult, int] | None:
            """Ours edited (or left as it is); None when Bitbucket says it is not this token's to edit."""
            if comment.content.raw == p.body:
                return CommentResult.UNCHANGED, comment.id
            try:
                await self._call(budget, "PUT", bb.update_comment(workspace, slug, pr_id, comment.id, p.body))
            except AuthFailed as exc:
                if exc.status != 403:
                    raise
                # Another app_user wrote it: the bot of an earlier token of this workspace (each access
                # token has its own bot) or another integration. Passed over like a foreign comment.
                self._foreign(comment, tenant, "written by another bot: not ours to edit")
                return None
            return CommentResult.EDITED, comment.id

        if comment_id is not None:
            stored = await self._stored_comment(bb, budget, workspace, slug, pr_id, comment_id)
            if stored is not None and owns_comment(stored, p.marker):
                written = await write_over(stored)
                if written is not None:
                    return written
            else:
                log.warning("stored comment is gone or not ours; searching the PR",
                            extra={"installation_id": tenant, "comment_id": comment_id})
                if self._on_stored_comment_lost is not None:
                    self._on_stored_comment_lost()
        budget.timeout_for("GET")
        async for comment in bb.list_comments(workspace, slug, pr_id):
            if comment.deleted or p.marker not in comment.content.raw or comment.id == comment_id:
                continue
            if owns_comment(comment, p.marker):
                written = await write_over(comment)
                if written is not None:
                    return written
                continue
            self._foreign(comment, tenant, "prgate did not write it")
        created = await self._call(budget, "POST", bb.create_comment(workspace, slug, pr_id, p.body))
        return CommentResult.CREATED, created.id

    def _foreign(self, comment: Comment, tenant: int, why: str) -> None:
        log.warning("ignoring a comment with our marker: %s", why,
                    extra={"installation_id": tenant, "comment_id": comment.id,
                           "author_type": comment.user.type if comment.user else None})
        if self._on_foreign_comment is not None:
            self._on_foreign_comment()

    async def _stored_comment(self, bb: BitbucketClient, budget: RequestBudget, workspace: str, slug: str,
                              pr_id: int, comment_id: int) -> Comment | None:
        """The remembered comment, or None when Bitbucket no longer has it (deleted)."""
        path = (f"/2.0/repositories/{workspace}/{slug}/pullrequests/{int(pr_id)}/comments/{int(comment_id)}")
        try:
            body = await self._call(budget, "GET", bb.get(path, call="get_comment"))
        except NotFound:
            return None
        try:
            return Comment.model_validate(body)
        except ValueError:
            return None
