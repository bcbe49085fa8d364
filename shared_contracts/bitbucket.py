"""Bitbucket Cloud events on the receiver → backend wire (docs/bitbucket.md, docs/contract.md).

The receiver normalizes shape only and carries Bitbucket's own identifiers (workspace and
repository UUIDs, the author's `account_id`); the backend maps them to its tenant, repository and
account ids and puts the pull request through the same decision as GitHub's (`challenges/decide.py`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, SecretStr

from shared_contracts.common import WireModel
from shared_contracts.events import BodySha256, DeliveryId

# Bare, lower-case UUIDs (Bitbucket writes them with braces; the receiver strips them).
Uuid = str
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# Webhook payloads carry abbreviated hashes (12 characters); the API accepts them wherever a commit goes.
_HASH = r"^[0-9a-f]{7,40}$"

BitbucketPrState = Literal["OPEN", "MERGED", "DECLINED", "SUPERSEDED"]
BitbucketPrEventKey = Literal[
    "pullrequest:created", "pullrequest:updated", "pullrequest:fulfilled", "pullrequest:rejected"
]


class BitbucketAccount(WireModel):
    # Atlassian account id ("557058:…"): the stable identity prgate keys a person by.
    account_id: str | None = Field(default=None, max_length=128)
    uuid: Uuid = Field(pattern=_UUID)
    nickname: str = Field(default="", max_length=255)
    display_name: str = Field(default="", max_length=255)
    # "user", "app_user" (bots and access tokens), "team".
    type: str = Field(default="user", min_length=1, max_length=64)


class BitbucketRepository(WireModel):
    uuid: Uuid = Field(pattern=_UUID)
    full_name: str = Field(min_length=3, max_length=512, pattern=r"^[^/\s]+/[^/\s]+$")
    private: bool = True
    main_branch: str | None = Field(default=None, max_length=255)


class BitbucketPullRequest(WireModel):
    id: int = Field(ge=1, le=2**31 - 1)
    title: str = Field(default="", max_length=4096)
    state: BitbucketPrState
    draft: bool = False
    source_commit: str = Field(default="", max_length=40)
    source_branch: str = Field(default="", max_length=1024)
    destination_branch: str = Field(default="", max_length=1024)
    html_url: str = Field(default="", max_length=2048)
    author: BitbucketAccount


class BitbucketPullRequestEvent(WireModel):
    # X-Request-UUID; the backend dedups on the body digest too (docs/bitbucket.md, "Dedup").
    delivery_id: DeliveryId = Field(min_length=1, max_length=128)
    body_sha256: BodySha256 = None
    event: Literal["pullrequest"] = "pullrequest"
    event_key: BitbucketPrEventKey
    workspace_uuid: Uuid = Field(pattern=_UUID)
    workspace_slug: str = Field(min_length=1, max_length=255)
    repository: BitbucketRepository
    pull_request: BitbucketPullRequest
    actor: BitbucketAccount


class BitbucketCommandEvent(WireModel):
    """`pullrequest:comment_created` whose text is a `/prgate <command>`. The backend asks Bitbucket
    for the commenter's permission itself (it holds the workspace's token; the receiver does not)."""

    delivery_id: DeliveryId = Field(min_length=1, max_length=128)
    body_sha256: BodySha256 = None
    event: Literal["pullrequest:comment_created"] = "pullrequest:comment_created"
    workspace_uuid: Uuid = Field(pattern=_UUID)
    workspace_slug: str = Field(min_length=1, max_length=255)
    repository: BitbucketRepository
    pull_request: BitbucketPullRequest
    comment_id: int = Field(ge=1)
    command: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")
    actor: BitbucketAccount


class BitbucketPushEvent(WireModel):
    """`repo:push` touching the main branch: the backend re-reads `.prgate.yml` (the config file)."""

    delivery_id: DeliveryId = Field(min_length=1, max_length=128)
    body_sha256: BodySha256 = None
    event: Literal["repo:push"] = "repo:push"
    workspace_uuid: Uuid = Field(pattern=_UUID)
    workspace_slug: str = Field(min_length=1, max_length=255)
    repository: BitbucketRepository
    branch: str = Field(min_length=1, max_length=1024)
    head_commit: str = Field(pattern=_HASH)
    actor: BitbucketAccount | None = None


class BitbucketTokenResponse(WireModel):
    """`POST /internal/v2/bitbucket/tenants/{tenant_id}/token`: the workspace's access token for a
    worker that is about to act on it (never logged, kept in memory only, for `ttl_seconds`)."""

    tenant_id: int
    workspace_slug: str
    token: str = Field(min_length=1)
    ttl_seconds: int = Field(default=300, ge=1)


# ---- tenancy: the operator's connect / list / disconnect, and the workers' re-discovery ----------

# Bitbucket's workspace ids ("slugs"): letters, digits, '-', '_', '.', up to 62 characters.
_WORKSPACE_SLUG = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,61}$"


class BitbucketConnectRequest(WireModel):
    """`POST /api/v1/bitbucket/workspaces` (operator): connect, or connect again with a new token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace: str = Field(pattern=_WORKSPACE_SLUG)
    # A workspace or repository access token (Bearer). Never echoed, logged or returned.
    token: SecretStr = Field(min_length=1, max_length=4096)


BitbucketWorkspaceStatus = Literal["ACTIVE", "DISCONNECTED"]


class BitbucketWorkspaceView(WireModel):
    """A connected (or disconnected) workspace as the operator sees it: never its token."""

    tenant_id: int
    workspace_uuid: Uuid
    slug: str
    name: str
    status: BitbucketWorkspaceStatus
    hook_registered: bool
    repositories: int
    connected_at: datetime
    disconnected_at: datetime | None = None
    last_discovered_at: datetime | None = None
    last_error: str | None = None


class BitbucketConnectResponse(BitbucketWorkspaceView):
    # What this connect changed on Bitbucket: "created" a hook, "updated" the one found by its URL.
    hook: Literal["created", "updated"]
    added_repositories: list[str]
    removed_repositories: list[str]


class BitbucketWorkspaceList(WireModel):
    items: list[BitbucketWorkspaceView]


class BitbucketDisconnectResponse(WireModel):
    tenant_id: int
    slug: str
    status: BitbucketWorkspaceStatus
    # False: the hook could not be deleted (token already revoked); delete it in Bitbucket's settings.
    hook_deleted: bool
    cancelled_challenges: int
    cancelled_actions: int
    purged: bool


class BitbucketRediscoverRequest(WireModel):
    """`POST /internal/v2/bitbucket/rediscover` (the workers' periodic job): every ACTIVE workspace."""


class BitbucketRediscoveryItem(WireModel):
    tenant_id: int
    slug: str
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    # Why this workspace's listing failed (also stored as its last_error); None: it worked.
    error: str | None = None


class BitbucketRediscoveryReport(WireModel):
    workspaces: list[BitbucketRediscoveryItem]
