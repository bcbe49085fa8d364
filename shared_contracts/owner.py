"""Owner API models (ARCHITECTURE.md §6)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from shared_contracts.common import WireModel


class InstallationStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    DELETED = "DELETED"
    NOT_INSTALLED = "NOT_INSTALLED"


class GithubAppStatus(WireModel):
    repo_id: int
    repo_full_name: str | None
    installed: bool
    installation_id: int | None
    installation_status: InstallationStatus
    account_login: str | None
    repository_selection: Literal["selected", "all"] | None


class Health(WireModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


DEFAULT_EXEMPT_ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR")


class RepoSettings(WireModel):
    """Per-repository gate settings; a repository without a row gets these defaults."""

    gate_drafts: bool = False
    deadline_seconds: int = Field(default=72 * 3600, ge=60, le=90 * 24 * 3600)
    warn_only: bool = False
    exempt_comment: bool = True
    exempt_bots: bool = True
    whitelist_logins: list[str] = Field(default_factory=list, max_length=1000)
    exempt_associations: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXEMPT_ASSOCIATIONS), max_length=16
    )
    challenge_text: str | None = Field(default=None, max_length=20_000)
    challenge_question: str | None = Field(default=None, max_length=2_000)
    reopen_on_verify: bool = True
