"""What connecting a workspace asks of Bitbucket: the token's workspace, every repository, prgate's
one workspace hook (docs/bitbucket.md, "Tenancy" and "Webhooks in").

Errors are provider_clients.bitbucket's (`AuthFailed`, `NotFound`, `RateLimited`, `Unavailable`,
`BadRequest`); the use cases (backend_api/gate/bitbucket_tenancy.py) say what each means.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, Literal

import aiohttp

from provider_clients.bitbucket.api import HOOK_EVENTS, BitbucketClient, RequestCounter
from provider_clients.bitbucket.errors import NotFound
from provider_clients.bitbucket.hook_secret import bare_uuid
from provider_clients.bitbucket.models import Repository, Workspace

log = logging.getLogger(__name__)

HOOK_DESCRIPTION: Final = "prgate"


def hook_url(bot_public_url: str, workspace_uuid: str) -> str:
    """`{BOT_PUBLIC_URL}/webhooks/bitbucket/{bare workspace uuid}`: the receiver derives the secret from it."""
    bare = bare_uuid(workspace_uuid)
    if bare is None:
        raise ValueError(f"not a workspace UUID: {workspace_uuid!r}")
    return f"{bot_public_url.rstrip('/')}/webhooks/bitbucket/{bare}"


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


@dataclass(frozen=True, slots=True)
class HookOutcome:
    hook_uuid: str  # bare
    change: Literal["created", "updated"]


class WorkspaceApi:
    """One workspace token's view of Bitbucket."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str, token: str,
                 counter: RequestCounter | None = None) -> None:
        self._client = BitbucketClient(session, api_url, token, counter=counter)

    def __repr__(self) -> str:
        return "WorkspaceApi(…)"

    async def workspace(self, workspace: str) -> Workspace:
        """`GET /2.0/workspaces/{workspace}`: the token works, and names this workspace's UUID."""
        return await self._client.workspace(workspace)

    async def repositories(self, workspace: str) -> list[Repository]:
        """Every repository, every page (the client follows `next` and refuses a truncated listing)."""
        return [repo async for repo in self._client.repositories(workspace)]

    async def ensure_hook(self, workspace: str, url: str, secret: str) -> HookOutcome:
        """Find prgate's hook by its URL and update it (URL, secret, events), or create it. Hooks a
        crashed earlier connect left with the same URL are deleted: one hook, one delivery per event."""
        ours = [hook for hook in await self._client.list_hooks(workspace) if _same_url(hook.url, url)]
        if not ours:
            created = await self._client.create_hook(workspace, url=url, secret=secret, events=HOOK_EVENTS,
                                                     description=HOOK_DESCRIPTION)
            return HookOutcome(_bare(created.uuid), "created")
        keep, *extra = ours
        for hook in extra:
            log.warning("bitbucket: deleting a duplicate prgate hook", extra={"workspace": workspace})
            await self._delete_quietly(workspace, hook.uuid)
        updated = await self._client.update_hook(workspace, keep.uuid, url=url, secret=secret, events=HOOK_EVENTS,
                                                 description=HOOK_DESCRIPTION)
        return HookOutcome(_bare(updated.uuid), "updated")

    async def delete_hooks(self, workspace: str, url: str, hook_uuid: str | None) -> int:
        """Delete prgate's hook (by its stored UUID, and any other with our URL). Returns how many
        were deleted; one already gone is not an error."""
        deleted = 0
        targets = {_bare(h.uuid) for h in await self._client.list_hooks(workspace) if _same_url(h.url, url)}
        if hook_uuid:
            targets.add(_bare(hook_uuid))
        for uid in sorted(targets):
            deleted += await self._delete_quietly(workspace, uid)
        return deleted

    async def _delete_quietly(self, workspace: str, uid: str) -> int:
        try:
            await self._client.delete_hook(workspace, "{" + _bare(uid) + "}")
        except NotFound:
            return 0
        return 1


def _bare(value: str) -> str:
    return bare_uuid(value) or value.strip("{}").lower()
