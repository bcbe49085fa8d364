"""Owner API models (docs/contract.md "github-app-status", docs/owner-api.md)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from shared_contracts.actions import Provider
from shared_contracts.common import WireModel


class InstallationStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    DELETED = "DELETED"
    NOT_INSTALLED = "NOT_INSTALLED"


class PublicAppStatus(WireModel):
    """`GET /api/v1/repos/{repo_id}/github-app-status`, answered to anyone: whether prgate is
    installed, nothing that names the repository or its account (ids are sequential, and a private
    repository's name is a secret of its owner)."""

    repo_id: int
    installed: bool


class GitHubAppStatus(WireModel):
    """`GET /api/v1/repos/{repo_id}/installation` (the repository's admins only): the details."""

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
    """Per-repository gate settings; a repository without a row gets these defaults.

    Each field's description is its help text, the one source for the settings page
    (`backend_api/web/settings.py`), the config file's JSON Schema (`docs/prgate.schema.json`) and
    the fields table of `docs/configuration.md` (a test holds both documents equal to the model)."""

    gate_drafts: bool = Field(
        default=False, description="Gate draft pull requests too. Off: a draft is left alone until it is marked "
                                   "ready for review.")
    deadline_seconds: int = Field(
        default=72 * 3600, ge=10, le=90 * 24 * 3600,
        description="How long a contributor has to verify before the pull request is closed (or, warn-only, "
                    "flagged), in seconds: between 10 s and 90 days; applies to challenges created after the "
                    "change.")
    warn_only: bool = Field(
        default=False, description="Comment and set the commit status, but never close a pull request when its "
                                   "deadline passes.")
    exempt_comment: bool = Field(
        default=True, description="Tell a whitelisted or exempt-association author in a comment that they are "
                                  "exempt.")
    exempt_bots: bool = Field(
        default=True, description="Bot accounts (type Bot, or a login ending in [bot], e.g. dependabot[bot]) are "
                                  "never gated.")
    whitelist_logins: list[str] = Field(
        default_factory=list, max_length=1000,
        description="GitHub logins never gated. Each is resolved to its user id when the settings are saved or "
                    "the file is read; a login GitHub does not know refuses the save (or makes the file invalid).")
    # The GitHub user ids `whitelist_logins` resolved to when the settings were written; what the gate
    # compares (a login can be renamed and re-registered by someone else). Ignored on PUT.
    whitelist_user_ids: list[int] = Field(
        default_factory=list, max_length=1000,
        description="The user ids whitelist_logins resolved to (set by prgate, ignored on input).")
    exempt_associations: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXEMPT_ASSOCIATIONS), max_length=16,
        description="Authors GitHub associates with the repository this way (OWNER, MEMBER, COLLABORATOR, "
                    "CONTRIBUTOR, FIRST_TIME_CONTRIBUTOR, FIRST_TIMER, MANNEQUIN, NONE) are never gated.")
    challenge_text: str | None = Field(
        default=None, max_length=20_000,
        description="What a contributor must read and accept (e.g. a CLA), Markdown, shown on the verification "
                    "page. Empty: prgate's default statement.")
    challenge_question: str | None = Field(
        default=None, max_length=2_000,
        description="An optional question the contributor must answer. Empty: no question. Its expected answer "
                    "is set with the owner API or the settings page only, never in a file.")
    reopen_on_verify: bool = Field(
        default=True, description="Reopen a pull request prgate closed once its author verifies.")


# ---- owner API: per-repository settings, challenges, actions (docs/owner-api.md) ----------------------


# What `GET …/settings` answers beside the settings: accepted on input and dropped, so that GET's
# answer, edited, can be sent back as PUT's or PATCH's body. Anything else unknown is refused (422).
READ_ONLY_SETTINGS_FIELDS = frozenset(
    {"repo_id", "repo_full_name", "challenge_answer_set", "whitelist_user_ids", "sources"}
)


def _drop_read_only(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k not in READ_ONLY_SETTINGS_FIELDS}
    return data


class RepoSettingsUpdate(RepoSettings):
    """`PUT /api/v1/repos/{repo_id}/settings`: the whole settings object (missing fields take their
    defaults), plus the expected answer to `challenge_question`. An unknown field is refused (422
    naming it): a typo must not answer 200 and reset the field it meant to set.

    `challenge_answer` is write-only: it is stored as a hash and never returned. Absent or `null`
    keeps the stored answer; a blank string removes it (the question then accepts any answer).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    challenge_answer: str | None = Field(default=None, max_length=2_000)

    @model_validator(mode="before")
    @classmethod
    def _read_only_dropped(cls, data: Any) -> Any:
        return _drop_read_only(data)


class RepoSettingsPatch(WireModel):
    """`PATCH /api/v1/repos/{repo_id}/settings`: only the fields given change (JSON merge patch,
    RFC 7396): absent keeps the stored value, `null` sets the field back to its default. An unknown
    field is refused (422 naming it). `challenge_answer` as on PUT: absent or `null` keeps the
    stored answer, a blank string removes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gate_drafts: bool | None = None
    deadline_seconds: int | None = Field(default=None, ge=10, le=90 * 24 * 3600)
    warn_only: bool | None = None
    exempt_comment: bool | None = None
    exempt_bots: bool | None = None
    whitelist_logins: list[str] | None = Field(default=None, max_length=1000)
    exempt_associations: list[str] | None = Field(default=None, max_length=16)
    challenge_text: str | None = Field(default=None, max_length=20_000)
    challenge_question: str | None = Field(default=None, max_length=2_000)
    reopen_on_verify: bool | None = None
    challenge_answer: str | None = Field(default=None, max_length=2_000)

    @model_validator(mode="before")
    @classmethod
    def _read_only_dropped(cls, data: Any) -> Any:
        return _drop_read_only(data)

    def apply(self, current: RepoSettings) -> dict[str, Any]:
        """The settings after this patch, as RepoSettings' fields (not yet validated as a whole)."""
        defaults = RepoSettings()
        merged = current.model_dump()
        for name in self.model_fields_set - {"challenge_answer"}:
            value = getattr(self, name)
            merged[name] = getattr(defaults, name) if value is None else value
        return merged


class OwnerRepoSettings(RepoSettings):
    """`GET`/`PUT /api/v1/repos/{repo_id}/settings`: the settings and whether an answer is stored."""

    repo_id: int
    repo_full_name: str
    challenge_answer_set: bool
    # Where each value in force came from: the repository's `.github/prgate.yml` ("file", which wins),
    # these settings ("api") or the defaults (docs/configuration.md). Absent from an older backend.
    sources: dict[str, Literal["file", "api", "default"]] = Field(default_factory=dict)


ChallengeState = Literal["PENDING", "VERIFIED", "TIMED_OUT", "CANCELLED", "EXEMPTED"]


class ChallengeItem(WireModel):
    challenge_id: int
    pr_number: int
    head_sha: str
    author_id: int
    author_login: str
    status: ChallengeState
    created_at: datetime
    deadline_at: datetime
    resolved_at: datetime | None
    resolution: str | None


class ChallengeList(WireModel):
    """Most recent first. `next_before`: pass it as `?before=` for the next page (null: no more)."""

    items: list[ChallengeItem]
    next_before: int | None


class ActionItem(WireModel):
    action_id: int
    action_type: str
    status: Literal["PENDING", "CLAIMED", "DONE", "FAILED", "CANCELLED"]
    pr_number: int
    challenge_id: int | None
    attempt: int
    max_attempts: int
    next_attempt_at: datetime | None  # PENDING: when it is next tried; CLAIMED: when its lease ends
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class ActionList(WireModel):
    """Most recent first. `next_before`: pass it as `?before=` for the next page (null: no more)."""

    items: list[ActionItem]
    next_before: int | None


class ExemptResponse(WireModel):
    """`POST /api/v1/repos/{repo_id}/pulls/{number}/exempt`: what the exemption did."""

    repo_id: int
    pr_number: int
    challenge_id: int
    exempted_by: str
    already_exempted: bool
    enqueued_action_ids: list[int]


class OwnerSession(WireModel):
    """`GET /api/v1/session`: who is signed in, and the token state-changing calls must send
    in the `X-CSRF-Token` header."""

    user_id: int
    login: str
    # Which provider vouches for the user: an admin of that provider's repositories only.
    provider: Provider = Provider.GITHUB
    csrf_token: str
    expires_at: datetime


# ---- session revocation (admin key; docs/security.md, "Reopen after timeout, session revocation, …") -----------------


class SessionRevokeRequest(WireModel):
    """`POST /internal/v2/sessions/revoke`: one session by its id (logged at sign-in as `session_id`),
    or every session of a GitHub user issued until now. Exactly one of the two."""

    session_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    github_user_id: int | None = Field(default=None, ge=1, le=2**63 - 1)

    @model_validator(mode="after")
    def _exactly_one(self) -> SessionRevokeRequest:
        if (self.session_id is None) == (self.github_user_id is None):
            raise ValueError("give exactly one of session_id and github_user_id")
        return self


class SessionRevokeResponse(WireModel):
    session_id: str | None
    github_user_id: int | None
    # For a user: sessions issued up to this moment are refused (a new sign-in works).
    revoked_before: datetime | None
