"""The GitHub simulator's records: users, installations, repositories, pull requests, comments,
statuses, tokens and webhook deliveries, plus GitHub's id formats."""

from __future__ import annotations

import base64
import hashlib
import string
from dataclasses import dataclass
from typing import Literal

from prgate.simulator.core.types import JsonDict, iso

DEFAULT_PERMISSIONS: dict[str, str] = {
    "contents": "read",
    "issues": "write",
    "metadata": "read",
    "members": "read",
    "pull_requests": "write",
    "statuses": "write",
}
PERMISSION_LEVELS = {"none": 0, "read": 1, "write": 2, "admin": 3}
ROLES = ("admin", "maintain", "write", "triage", "read", "none")
# GitHub's legacy `permission` field folds maintain into write and triage into read.
ROLE_TO_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}
STATUS_STATES = ("error", "failure", "pending", "success")
PrState = Literal["open", "closed"]
TOKEN_ALPHABET = string.ascii_letters + string.digits



def node_id(type_name: str, ident: int) -> str:
    """A node id in GitHub's legacy format, e.g. ``MDExOlB1bGxSZXF1ZXN0MQ==`` for PullRequest 1."""
    raw = f"0{len(type_name)}:{type_name}{ident}"
    return base64.b64encode(raw.encode()).decode()


def stable_id(login: str) -> int:
    digest = hashlib.sha256(login.lower().encode()).digest()
    return 10_000_000 + int.from_bytes(digest[:4], "big") % 90_000_000


@dataclass(frozen=True, slots=True)
class SimUser:
    login: str
    id: int
    type: str = "User"


@dataclass(slots=True)
class Installation:
    id: int
    account: SimUser
    repository_selection: str
    permissions: dict[str, str]
    created_at: float
    updated_at: float
    suspended_at: float | None = None


@dataclass(slots=True)
class Repository:
    id: int
    full_name: str
    private: bool
    installation_id: int
    default_branch: str
    created_at: float

    @property
    def owner_login(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]


@dataclass(frozen=True, slots=True)
class SimCommit:
    """A commit on a repository's default branch: the whole tree after it (path → bytes), and what it
    changed, as a push webhook lists it."""

    sha: str
    message: str
    author: str
    timestamp: float
    tree: dict[str, bytes]
    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def blob_sha(content: bytes) -> str:
    """Git's blob id, as the contents API returns it in `sha`."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


@dataclass(slots=True)
class PullRequest:
    id: int
    repo_id: int
    number: int
    title: str
    body: str | None
    user: SimUser
    author_association: str
    state: PrState
    draft: bool
    merged: bool
    head_sha: str
    head_ref: str
    base_ref: str
    created_at: float
    updated_at: float
    closed_at: float | None = None
    merged_at: float | None = None


@dataclass(frozen=True, slots=True)
class SimApp:
    """A GitHub App as `performed_via_github_app` and `GET /app` show it."""

    id: int
    slug: str
    name: str
    owner: SimUser
    created_at: float = 1_600_000_000.0

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"


@dataclass(slots=True)
class IssueComment:
    id: int
    repo_id: int
    issue_number: int
    body: str
    user: SimUser
    author_association: str
    created_at: float
    updated_at: float
    # The App whose installation token wrote it (GitHub's `performed_via_github_app`), or None.
    via_app: SimApp | None = None


@dataclass(frozen=True, slots=True)
class CommitStatus:
    id: int
    repo_id: int
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    creator: SimUser
    created_at: float


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    installation_id: int
    expires_at: float
    permissions: dict[str, str]
    repository_ids: frozenset[int] | None  # None: every repository of the installation




@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: int
    guid: str
    event: str
    action: str | None
    url: str
    status_code: int | None  # None: the receiver was unreachable or timed out
    error: str | None
    delivered_at: float
    duration: float
    installation_id: int | None
    repository_id: int | None
    payload: JsonDict | None = None  # kept so the delivery can be redelivered
    redelivery: bool = False

    def to_json_with_request(self) -> JsonDict:
        """Shaped like GitHub's ``GET /app/hook/deliveries/{delivery_id}``: the item plus request/response."""
        return {
            **self.to_json(),
            "request": {
                "headers": {"X-GitHub-Delivery": self.guid, "X-GitHub-Event": self.event},
                "payload": self.payload,
            },
            "response": {"headers": {}, "payload": None},
        }

    def to_json(self) -> JsonDict:
        """Shaped like an item of GitHub's ``GET /app/hook/deliveries``."""
        if self.status_code is None:
            status = self.error or "Unreachable"
        else:
            status = "OK" if 200 <= self.status_code < 300 else f"Invalid HTTP Response: {self.status_code}"
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": iso(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": round(self.duration, 3),
            "status": status,
            "status_code": self.status_code if self.status_code is not None else 0,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "url": self.url,
            "throttled_at": None,
        }
