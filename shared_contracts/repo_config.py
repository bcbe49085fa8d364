"""The repository config file, `.github/prgate.yml` (docs/configuration.md).

Its keys are the owner API's settings fields (`RepoSettings`), every one optional: a key the file
leaves out keeps the value of the level below it (organization defaults, then the owner API's
settings, then the defaults). `_extends` names another repository whose file this one builds on
(Probot's convention). The published JSON Schema, `docs/prgate.schema.json`, is generated from
`RepoConfigFile` (`config_json_schema`); a test holds the committed copy equal to it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ConfigDict, Field

from shared_contracts.common import WireModel
from shared_contracts.owner import RepoSettings

CONFIG_PATH = ".github/prgate.yml"
# The organization-wide defaults: the same file in the account's `.github` repository.
ORG_CONFIG_REPO = ".github"
CONFIG_STATUS_CONTEXT = "prgate/config"
# Bitbucket has no `.github/` convention: the file sits at the root of the main branch (docs/bitbucket.md).
BITBUCKET_CONFIG_PATH = ".prgate.yml"
# Not settable from a file: the whitelist's user ids are resolved by prgate from the logins, and
# the challenge answer is a secret (a file in a repository is readable by everyone who can read it).
FILE_EXCLUDED = frozenset({"whitelist_user_ids"})
FILE_KEYS: tuple[str, ...] = tuple(k for k in RepoSettings.model_fields if k not in FILE_EXCLUDED)

SettingSource = Literal["file", "api", "default"]
EXTENDS_HELP = ("Inherit from another repository's .github/prgate.yml: `repo` (same owner) or `owner/repo`; "
                "this file's keys win over the inherited ones.")


def default_text(name: str) -> str:
    """A settings field's default as the docs and the schema write it (JSON)."""
    info = RepoSettings.model_fields[name]
    value = info.get_default(call_default_factory=True)
    return "none" if value is None else json.dumps(value)


def field_help(name: str) -> str:
    """A settings field's help text (`RepoSettings`' description, the one source) with its default."""
    return f"{RepoSettings.model_fields[name].description} Default: {default_text(name)}."


def config_fields_table() -> str:
    """The fields table of docs/configuration.md (a test holds the committed one equal to it)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | `{default_text(name)}` | {RepoSettings.model_fields[name].description} |"
             for name in FILE_KEYS]
    rows.append(f"| `_extends` | `none` | {EXTENDS_HELP} |")
    return "\n".join(rows) + "\n"


class RepoConfigFile(WireModel):
    """One `.github/prgate.yml`, as written: unknown keys are refused (a typo must not pass unseen)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              title="prgate repository configuration (.github/prgate.yml)")

    extends: str | None = Field(
        default=None, alias="_extends", min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$",
        description=EXTENDS_HELP,
    )
    gate_drafts: bool | None = Field(default=None, description=field_help("gate_drafts"))
    deadline_seconds: int | None = Field(
        default=None, ge=10, le=90 * 24 * 3600, description=field_help("deadline_seconds"))
    warn_only: bool | None = Field(default=None, description=field_help("warn_only"))
    exempt_comment: bool | None = Field(default=None, description=field_help("exempt_comment"))
    exempt_bots: bool | None = Field(default=None, description=field_help("exempt_bots"))
    whitelist_logins: list[str] | None = Field(
        default=None, max_length=1000, description=field_help("whitelist_logins"))
    exempt_associations: list[str] | None = Field(
        default=None, max_length=16, description=field_help("exempt_associations"))
    challenge_text: str | None = Field(default=None, max_length=20_000, description=field_help("challenge_text"))
    challenge_question: str | None = Field(
        default=None, max_length=2_000, description=field_help("challenge_question"))
    reopen_on_verify: bool | None = Field(default=None, description=field_help("reopen_on_verify"))

    def values(self) -> dict[str, Any]:
        """The settings keys the file sets (`null` counts as not set)."""
        return {k: v for k, v in self.model_dump(exclude={"extends"}).items() if v is not None}


def config_json_schema() -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **RepoConfigFile.model_json_schema(by_alias=True)}


# ---- the config-refresh job's call (POST /internal/v2/github/config/refresh, docs/contract.md) ----

RefreshResult = Literal["valid", "invalid", "absent", "unavailable", "skipped"]


class ConfigRefreshRequest(WireModel):
    """Read up to ``max_repositories`` of the repositories marked stale (oldest mark first)."""

    max_repositories: int = Field(default=20, ge=1, le=100)


class ConfigRefreshItem(WireModel):
    repo_id: int
    result: RefreshResult


class ConfigRefreshResponse(WireModel):
    """What this call read, and how many repositories are still marked (due now or backing off)."""

    refreshed: list[ConfigRefreshItem]
    remaining: int
