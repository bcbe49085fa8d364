"""API tokens (docs/api-tokens.md): the admin's internal calls of ``prgate api-token``, and the
public repository list a token reads."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from shared_contracts.common import WireModel

# A name is what `revoke` is given: letters, digits and . _ : @ -, not all digits (an id is).
TOKEN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$"


class TokenScope(StrEnum):
    OPERATOR = "operator"
    INSTALLATION = "installation"
    WORKSPACE = "workspace"
    JIRA_SITE = "jira_site"


class ApiTokenCreate(WireModel):
    """``POST /internal/v2/api-tokens`` (admin key): exactly the target of ``scope`` is given."""

    name: str = Field(pattern=TOKEN_NAME_PATTERN)
    scope: TokenScope
    installation_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    workspace: str | None = Field(default=None, min_length=1, max_length=255)  # the workspace's slug
    jira_site: str | None = Field(default=None, min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _one_target(self) -> ApiTokenCreate:
        if self.name.isdigit():
            raise ValueError("a token name cannot be all digits (revoke takes a name or an id)")
        given = {k for k in ("installation_id", "workspace", "jira_site") if getattr(self, k) is not None}
        wanted = {
            TokenScope.OPERATOR: set(), TokenScope.INSTALLATION: {"installation_id"},
            TokenScope.WORKSPACE: {"workspace"}, TokenScope.JIRA_SITE: {"jira_site"},
        }[self.scope]
        if given != wanted:
            need = ", ".join(sorted(wanted)) or "no target"
            raise ValueError(f"scope {self.scope.value} takes {need}; given: {', '.join(sorted(given)) or 'none'}")
        return self


class ApiTokenInfo(WireModel):
    """A token as listed: never the token, never its hash."""

    token_id: int
    name: str
    scope: TokenScope
    installation_id: int | None
    workspace_id: int | None
    workspace: str | None
    jira_site: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenCreated(ApiTokenInfo):
    """The one answer that carries the token: it is not stored and cannot be shown again."""

    token: str


class ApiTokenList(WireModel):
    items: list[ApiTokenInfo]


class ApiTokenRevoke(WireModel):
    """``POST /internal/v2/api-tokens/revoke``: a live token's name, or any token's id (digits)."""

    name_or_id: str = Field(min_length=1, max_length=100)


class ApiTokenRevoked(WireModel):
    token: ApiTokenInfo
    already_revoked: bool


class MonitoredRepository(WireModel):
    """One item of ``GET /api/v1/repositories``: a repository prgate watches, on any provider."""

    id: int
    provider: Literal["github", "bitbucket"]
    full_name: str
    # The tenant's id (GitHub installation id, Bitbucket workspace id) and its name (account login, slug).
    tenant_id: int
    tenant: str


class RepositoryList(WireModel):
    items: list[MonitoredRepository]
