"""The Bitbucket simulator's records. Identifiers are Bitbucket's own: braced UUIDs, `account_id`s,
workspace and repository slugs, full 40-character commit hashes (payloads abbreviate them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TokenKind = Literal["workspace", "user"]
PrState = Literal["OPEN", "MERGED", "DECLINED", "SUPERSEDED"]
BuildState = Literal["INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"]
Permission = Literal["read", "write", "admin"]
BUILD_STATES: tuple[BuildState, ...] = ("INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED")
PERMISSIONS: tuple[Permission, ...] = ("read", "write", "admin")


@dataclass(slots=True)
class Workspace:
    uuid: str
    slug: str
    name: str


@dataclass(slots=True)
class User:
    account_id: str
    uuid: str
    nickname: str
    display_name: str
    type: str = "user"  # or "app_user"


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    kind: TokenKind
    workspace: str | None = None  # the slug, for a workspace access token
    account_id: str | None = None  # the user of an OAuth token; the bot (app_user) of an access token
    expires_at: float | None = None


@dataclass(slots=True)
class Commit:
    hash: str
    message: str
    author: str | None  # account_id
    date: float
    parents: list[str]
    files: dict[str, str]  # the whole tree at this commit


@dataclass(slots=True)
class Repository:
    uuid: str
    slug: str
    name: str
    workspace: str  # slug
    mainbranch: str
    is_private: bool
    created_on: float
    branches: dict[str, str] = field(default_factory=dict)  # name -> head hash
    commits: dict[str, Commit] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.workspace}/{self.slug}"


@dataclass(slots=True)
class PullRequest:
    id: int
    workspace: str
    repo: str  # slug
    title: str
    description: str
    author: str  # account_id
    source_branch: str
    source_hash: str
    destination_branch: str
    destination_hash: str
    state: PrState
    draft: bool
    created_on: float
    updated_on: float
    closed_by: str | None = None
    merge_commit: str | None = None
    reason: str = ""


@dataclass(slots=True)
class Comment:
    id: int
    workspace: str
    repo: str
    pr_id: int
    user: str  # account_id
    raw: str
    created_on: float
    updated_on: float
    deleted: bool = False


@dataclass(slots=True)
class BuildStatus:
    key: str
    workspace: str
    repo: str
    commit: str  # the full hash
    state: BuildState
    url: str
    name: str | None
    description: str | None
    created_on: float
    updated_on: float
    refname: str | None = None


@dataclass(slots=True)
class Hook:
    uuid: str
    workspace: str
    url: str
    description: str
    active: bool
    secret: str | None
    events: list[str]
    created_at: float


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One POST of one delivery; retries keep the body and get a new request UUID."""

    request_uuid: str
    hook_uuid: str
    workspace: str
    event_key: str
    url: str
    attempt: int
    status: int | None
    error: str | None
    at: float
    body_sha256: str
