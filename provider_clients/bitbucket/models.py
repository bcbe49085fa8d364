"""Typed views of the Bitbucket REST 2.0 answers prgate reads (only the fields it reads).

Lenient on purpose: Bitbucket adds fields freely, so unknown keys are ignored; a missing field the
model needs is a `BadRequest` at the client, never a KeyError deep in a caller.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BuildState = Literal["INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"]
PermissionLevel = Literal["read", "write", "admin"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Account(_Model):
    """A user or an app user (`type: app_user` is a bot)."""

    uuid: str
    account_id: str | None = None
    nickname: str | None = None
    display_name: str | None = None
    type: str = "user"


class Workspace(_Model):
    uuid: str
    slug: str
    name: str = ""


class Branch(_Model):
    name: str


class Repository(_Model):
    uuid: str
    slug: str
    full_name: str
    name: str = ""
    is_private: bool = True
    mainbranch: Branch | None = None


class Hook(_Model):
    """A webhook subscription; Bitbucket never returns the secret, only whether one is set."""

    uuid: str
    url: str
    description: str = ""
    active: bool = True
    events: list[str] = Field(default_factory=list)
    secret_set: bool = False


class Commit(_Model):
    hash: str


class Endpoint(_Model):
    """A PR's source or destination."""

    branch: Branch
    commit: Commit | None = None


class PullRequest(_Model):
    id: int
    title: str = ""
    state: str  # OPEN | MERGED | DECLINED | SUPERSEDED
    draft: bool = False
    author: Account
    source: Endpoint
    destination: Endpoint


class Content(_Model):
    raw: str = ""


class Comment(_Model):
    id: int
    content: Content
    user: Account | None = None
    deleted: bool = False


class BuildStatus(_Model):
    key: str
    state: BuildState
    url: str = ""
    name: str | None = None
    description: str | None = None


class OAuthToken(_Model):
    """The answer of `POST /site/oauth2/access_token`."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int = 0
    refresh_token: str | None = None
    scopes: str = ""
