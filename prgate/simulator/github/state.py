"""In-memory state of the GitHub simulator, its configuration, and its JSON rendering.

Everything a test may want to set up or read back is a plain method here
(``state.add_installation(...)``, ``state.comments_for(...)``), so tests can drive the simulator
in-process as well as through the ``/_sim/`` routes. The state never reads the wall clock
directly: it is handed a ``clock`` (unix seconds) so tests can move time.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import secrets
import string
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prgate.simulator.core.faults import ContentThrottle, FaultConfig, FaultInjector

JsonDict = dict[str, Any]
Clock = Callable[[], float]

DEFAULT_PERMISSIONS: dict[str, str] = {
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
_TOKEN_ALPHABET = string.ascii_letters + string.digits


class SimulatorConfig(BaseModel):
    """Configuration of one simulator instance; read once at the entry point and passed down."""

    model_config = ConfigDict(extra="forbid")

    app_id: int
    app_public_key_pem: str
    app_slug: str = "prgate"
    app_bot_user_id: int = 900_000_001
    token_length: int = Field(520, ge=40)
    token_ttl_seconds: int = Field(3600, ge=1)
    rate_limit_per_hour: int = Field(5000, ge=1)
    secondary_limit_per_minute: int = Field(80, ge=1)
    seed: int | None = None
    faults: FaultConfig = Field(default_factory=FaultConfig)
    # Webhooks the simulator sends itself (on /_sim/ changes asking for it, and on API changes).
    webhook_url: str | None = None
    webhook_secret: str = ""
    webhooks_on_api_changes: bool = True
    html_base_url: str = "https://github.com"
    # Used for URLs in webhook payloads and in-process rendering, where there is no request.
    api_base_url: str = "https://api.github.com"
    request_log_limit: int = Field(100_000, ge=1)
    # The OAuth web flow (oauth.py): the client a backend signs users in with.
    oauth_client_id: str = "prgate-sim-oauth-client"
    oauth_client_secret: str = "prgate-sim-oauth-secret"

    @property
    def client_id(self) -> str:
        """The App's client id; GitHub accepts it as well as the numeric app id as a JWT ``iss``."""
        return f"Iv1.{self.app_id:016x}"


def iso(ts: float) -> str:
    """GitHub's timestamp format: ``2024-01-02T03:04:05Z``."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(type_name: str, ident: int) -> str:
    """A node id in GitHub's legacy format, e.g. ``MDExOlB1bGxSZXF1ZXN0MQ==`` for PullRequest 1."""
    raw = f"0{len(type_name)}:{type_name}{ident}"
    return base64.b64encode(raw.encode()).decode()


def _stable_id(login: str) -> int:
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
class RequestRecord:
    method: str
    path: str
    query: str
    installation_id: int | None
    status: int
    at: float
    fault: str | None = None

    def to_json(self) -> JsonDict:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "installation_id": self.installation_id,
            "status": self.status,
            "at": iso(self.at),
            "fault": self.fault,
        }


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


@dataclass(slots=True)
class RateBucket:
    limit: int
    used: int
    reset_at: float


@dataclass(frozen=True, slots=True)
class RateSnapshot:
    limit: int
    remaining: int
    used: int
    reset_at: int
    exhausted: bool

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(self.reset_at),
            "x-ratelimit-resource": "core",
        }


class RateLimiter:
    """GitHub's primary limit: a budget per hour per key (installation, app, anonymous)."""

    WINDOW_SECONDS = 3600

    def __init__(self, limit_per_hour: int) -> None:
        self.limit_per_hour = limit_per_hour
        self._buckets: dict[str, RateBucket] = {}

    def reset(self) -> None:
        self._buckets.clear()

    def _bucket(self, key: str, now: float, limit: int) -> RateBucket:
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket.reset_at:
            bucket = RateBucket(limit=limit, used=0, reset_at=float(int(now) + self.WINDOW_SECONDS))
            self._buckets[key] = bucket
        return bucket

    def consume(self, key: str, now: float, limit: int | None = None, block: bool = True) -> RateSnapshot:
        """Count one request; ``exhausted`` means it is refused (and not counted)."""
        bucket = self._bucket(key, now, limit or self.limit_per_hour)
        if bucket.used >= bucket.limit and block:
            return self._snapshot(bucket, exhausted=True)
        bucket.used = min(bucket.used + 1, bucket.limit)
        return self._snapshot(bucket, exhausted=False)

    def peek(self, key: str, now: float, limit: int | None = None) -> RateSnapshot:
        return self._snapshot(self._bucket(key, now, limit or self.limit_per_hour), exhausted=False)

    @staticmethod
    def _snapshot(bucket: RateBucket, exhausted: bool) -> RateSnapshot:
        return RateSnapshot(
            limit=bucket.limit,
            remaining=max(0, bucket.limit - bucket.used),
            used=bucket.used,
            reset_at=int(bucket.reset_at),
            exhausted=exhausted,
        )


class SimulatorError(Exception):
    """A state operation that GitHub would refuse; the app maps it to an HTTP status."""

    def __init__(self, status: int, message: str, errors: list[JsonDict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


class NotFound(SimulatorError):
    def __init__(self, message: str = "Not Found") -> None:
        super().__init__(404, message)


class SimulatorState:
    """All simulated GitHub data for one app instance."""

    def __init__(self, config: SimulatorConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.faults = FaultInjector(config.faults, seed=config.seed)
        self.throttle = ContentThrottle(config.secondary_limit_per_minute)
        self.rate_limiter = RateLimiter(config.rate_limit_per_hour)
        self._clear()

    def _clear(self) -> None:
        self.installations: dict[int, Installation] = {}
        self.repositories: dict[int, Repository] = {}
        self._repo_by_name: dict[str, int] = {}
        self.pulls: dict[tuple[int, int], PullRequest] = {}
        self.comments: dict[int, IssueComment] = {}
        self._issue_comments: dict[tuple[int, int], list[int]] = {}
        self.statuses: dict[tuple[int, str], list[CommitStatus]] = {}
        self.collaborators: dict[tuple[int, str], str] = {}
        self.users: dict[str, SimUser] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.tokens_issued: dict[int, int] = {}
        self.request_log: deque[RequestRecord] = deque(maxlen=self.config.request_log_limit)
        self.deliveries: list[WebhookDelivery] = []
        self._next_issue_number: dict[int, int] = {}
        self._ids: dict[str, int] = {
            "pull": 1_000_000_000,
            "comment": 2_000_000_000,
            "status": 3_000_000_000,
            "delivery": 4_000_000_000,
        }

    def reset(self) -> None:
        """Forget all data, tokens, logs, rate-limit windows and faults (the config stays)."""
        self._clear()
        self.faults.reset()
        self.faults.configure(self.config.faults)
        self.throttle.reset()
        self.rate_limiter.reset()

    def now(self) -> float:
        return self.clock()

    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    @property
    def bot_user(self) -> SimUser:
        return SimUser(login=f"{self.config.app_slug}[bot]", id=self.config.app_bot_user_id, type="Bot")

    @property
    def app(self) -> SimApp:
        """The configured App: what `GET /app` answers to its JWT and what its installation tokens act as."""
        owner = SimUser(login=f"{self.config.app_slug}-owner", id=_stable_id(f"{self.config.app_slug}-owner"),
                        type="Organization")
        return SimApp(id=self.config.app_id, slug=self.config.app_slug, name=self.config.app_slug, owner=owner)

    # ---- users ---------------------------------------------------------------------------------

    def ensure_user(self, login: str, user_id: int | None = None, user_type: str | None = None) -> SimUser:
        """The known user with this login, registering (or updating) it when details are given."""
        key = login.lower()
        known = self.users.get(key)
        if known is not None and user_id is None and user_type is None:
            return known
        user = SimUser(
            login=login,
            id=user_id if user_id is not None else (known.id if known else _stable_id(login)),
            type=user_type or (known.type if known else "User"),
        )
        self.users[key] = user
        return user

    # ---- installations and repositories ---------------------------------------------------------

    def add_installation(
        self,
        installation_id: int,
        account_login: str,
        account_id: int | None = None,
        account_type: str = "Organization",
        repository_selection: str = "selected",
        permissions: dict[str, str] | None = None,
    ) -> Installation:
        now = self.now()
        account = self.ensure_user(account_login, account_id, account_type)
        existing = self.installations.get(installation_id)
        installation = Installation(
            id=installation_id,
            account=account,
            repository_selection=repository_selection,
            permissions=dict(permissions or DEFAULT_PERMISSIONS),
            created_at=existing.created_at if existing else now,
            updated_at=now,
            suspended_at=existing.suspended_at if existing else None,
        )
        self.installations[installation_id] = installation
        return installation

    def get_installation(self, installation_id: int) -> Installation:
        installation = self.installations.get(installation_id)
        if installation is None:
            raise NotFound()
        return installation

    def remove_installation(self, installation_id: int) -> Installation:
        installation = self.get_installation(installation_id)
        for repo in [r for r in self.repositories.values() if r.installation_id == installation_id]:
            self.remove_repository(installation_id, repo.id)
        self.tokens = {t: v for t, v in self.tokens.items() if v.installation_id != installation_id}
        del self.installations[installation_id]
        return installation

    def set_suspended(self, installation_id: int, suspended: bool) -> Installation:
        installation = self.get_installation(installation_id)
        installation.suspended_at = self.now() if suspended else None
        installation.updated_at = self.now()
        if suspended:
            self.tokens = {t: v for t, v in self.tokens.items() if v.installation_id != installation_id}
        return installation

    def add_repository(
        self,
        installation_id: int,
        repo_id: int,
        full_name: str,
        private: bool = False,
        default_branch: str = "main",
    ) -> Repository:
        self.get_installation(installation_id)
        if full_name.count("/") != 1 or not all(full_name.split("/")):
            raise SimulatorError(422, f"full_name must be 'owner/name', got {full_name!r}")
        other = self._repo_by_name.get(full_name.lower())
        if other is not None and other != repo_id:
            raise SimulatorError(422, f"{full_name} already exists with id {other}")
        previous = self.repositories.get(repo_id)
        if previous is not None:
            self._repo_by_name.pop(previous.full_name.lower(), None)
        repo = Repository(
            id=repo_id,
            full_name=full_name,
            private=private,
            installation_id=installation_id,
            default_branch=default_branch,
            created_at=previous.created_at if previous else self.now(),
        )
        self.repositories[repo_id] = repo
        self._repo_by_name[full_name.lower()] = repo_id
        self.ensure_user(repo.owner_login)
        return repo

    def remove_repository(self, installation_id: int, repo_id: int) -> Repository:
        repo = self.repositories.get(repo_id)
        if repo is None or repo.installation_id != installation_id:
            raise NotFound()
        # The data stays (as it does on GitHub); only the installation loses access.
        del self.repositories[repo_id]
        self._repo_by_name.pop(repo.full_name.lower(), None)
        return repo

    def rename_repository(self, repo_id: int, full_name: str) -> tuple[Repository, str]:
        """Give a repository a new name (its id, data and installation stay); the old name is free
        at once for a new repository. Returns the repository and its previous name."""
        repo = self.repositories.get(repo_id)
        if repo is None:
            raise NotFound()
        if full_name.count("/") != 1 or not all(full_name.split("/")):
            raise SimulatorError(422, f"full_name must be 'owner/name', got {full_name!r}")
        other = self._repo_by_name.get(full_name.lower())
        if other is not None and other != repo_id:
            raise SimulatorError(422, f"{full_name} already exists with id {other}")
        previous = repo.full_name
        self._repo_by_name.pop(previous.lower(), None)
        repo.full_name = full_name
        self._repo_by_name[full_name.lower()] = repo_id
        self.ensure_user(repo.owner_login)
        return repo, previous

    def repo_by_id(self, repo_id: int) -> Repository:
        repo = self.repositories.get(repo_id)
        if repo is None:
            raise NotFound()
        return repo

    def repo_by_name(self, full_name: str) -> Repository:
        repo_id = self._repo_by_name.get(full_name.lower())
        if repo_id is None:
            raise NotFound()
        return self.repositories[repo_id]

    def installation_repositories(self, installation_id: int) -> list[Repository]:
        return sorted(
            (r for r in self.repositories.values() if r.installation_id == installation_id),
            key=lambda r: r.full_name.lower(),
        )

    # ---- tokens --------------------------------------------------------------------------------

    def issue_token(
        self,
        installation_id: int,
        permissions: dict[str, str] | None = None,
        repository_ids: Iterable[int] | None = None,
    ) -> AccessToken:
        installation = self.get_installation(installation_id)
        if installation.suspended_at is not None:
            raise SimulatorError(403, "This installation has been suspended")
        granted = dict(installation.permissions)
        if permissions is not None:
            for name, level in permissions.items():
                if PERMISSION_LEVELS.get(level, 99) > PERMISSION_LEVELS.get(granted.get(name, "none"), 0):
                    raise SimulatorError(422, f"The permissions requested are not granted to this installation: {name}")
            granted = dict(permissions)
        repo_ids: frozenset[int] | None = None
        if repository_ids is not None:
            repo_ids = frozenset(repository_ids)
            owned = {r.id for r in self.installation_repositories(installation_id)}
            if not repo_ids <= owned:
                raise SimulatorError(
                    422,
                    "There is at least one repository that does not exist or is not "
                    "accessible to the parent installation.",
                )
        body_length = self.config.token_length - len("ghs_")
        token = "ghs_" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(body_length))
        issued = AccessToken(
            token=token,
            installation_id=installation_id,
            expires_at=self.now() + self.config.token_ttl_seconds,
            permissions=granted,
            repository_ids=repo_ids,
        )
        self.tokens[token] = issued
        self.tokens_issued[installation_id] = self.tokens_issued.get(installation_id, 0) + 1
        return issued

    def token_info(self, token: str) -> AccessToken | None:
        """The token if it is known and not expired (expired tokens are forgotten)."""
        info = self.tokens.get(token)
        if info is None:
            return None
        if info.expires_at <= self.now():
            del self.tokens[token]
            return None
        return info

    def expire_tokens(self, installation_id: int | None = None) -> None:
        """Test helper: make tokens (of one installation, or all) invalid right now."""
        self.tokens = {t: v for t, v in self.tokens.items() if installation_id not in (None, v.installation_id)}

    # ---- pull requests -------------------------------------------------------------------------

    def upsert_pull_request(
        self,
        full_name: str,
        number: int | None = None,
        *,
        author_login: str | None = None,
        author_id: int | None = None,
        author_type: str | None = None,
        author_association: str | None = None,
        state: PrState | None = None,
        draft: bool | None = None,
        merged: bool | None = None,
        head_sha: str | None = None,
        head_ref: str | None = None,
        base_ref: str | None = None,
        title: str | None = None,
        body: str | None = None,
    ) -> tuple[PullRequest, bool]:
        """Create the PR (``number`` None: the next free number) or update the given fields."""
        repo = self.repo_by_name(full_name)
        now = self.now()
        existing = self.pulls.get((repo.id, number)) if number is not None else None
        if existing is None:
            if author_login is None:
                raise SimulatorError(422, "author login is required to create a pull request")
            if number is None:
                number = self._next_issue_number.get(repo.id, 1)
            self._next_issue_number[repo.id] = max(self._next_issue_number.get(repo.id, 1), number + 1)
            user = self.ensure_user(author_login, author_id, author_type)
            digest = hashlib.sha1(f"{full_name}#{number}".encode()).hexdigest()
            pr = PullRequest(
                id=self._next_id("pull"),
                repo_id=repo.id,
                number=number,
                title=title or f"Pull request #{number}",
                body=body,
                user=user,
                author_association=author_association or "NONE",
                state=state or "open",
                draft=bool(draft),
                merged=bool(merged),
                head_sha=head_sha or digest,
                head_ref=head_ref or f"{user.login}/patch-{number}",
                base_ref=base_ref or repo.default_branch,
                created_at=now,
                updated_at=now,
            )
            if pr.state == "closed":
                pr.closed_at = now
            if pr.merged:
                pr.state, pr.closed_at, pr.merged_at = "closed", now, now
            self.pulls[(repo.id, pr.number)] = pr
            return pr, True
        pr = existing
        if author_login is not None:
            pr.user = self.ensure_user(author_login, author_id, author_type)
        if author_association is not None:
            pr.author_association = author_association
        if draft is not None:
            pr.draft = draft
        if head_sha is not None:
            pr.head_sha = head_sha
        if head_ref is not None:
            pr.head_ref = head_ref
        if base_ref is not None:
            pr.base_ref = base_ref
        if title is not None:
            pr.title = title
        if body is not None:
            pr.body = body
        if merged:
            pr.merged, pr.merged_at, pr.state, pr.closed_at = True, now, "closed", now
        if state is not None:
            self._set_pr_state(pr, state, now)
        pr.updated_at = now
        return pr, False

    def _set_pr_state(self, pr: PullRequest, state: PrState, now: float) -> None:
        if state == pr.state:
            return
        if state == "open" and pr.merged:
            raise SimulatorError(422, "state cannot be changed. The pull request has already been merged.")
        pr.state = state
        pr.closed_at = now if state == "closed" else None

    def get_pull_request(self, full_name: str, number: int) -> PullRequest:
        repo = self.repo_by_name(full_name)
        pr = self.pulls.get((repo.id, number))
        if pr is None:
            raise NotFound()
        return pr

    def edit_pull_request(
        self,
        full_name: str,
        number: int,
        *,
        state: PrState | None = None,
        title: str | None = None,
        body: str | None = None,
    ) -> PullRequest:
        """What ``PATCH /repos/{owner}/{repo}/pulls/{n}`` does."""
        pr = self.get_pull_request(full_name, number)
        now = self.now()
        if state is not None:
            self._set_pr_state(pr, state, now)
        if title is not None:
            pr.title = title
        if body is not None:
            pr.body = body
        pr.updated_at = now
        return pr

    def list_pull_requests(self, full_name: str, state: str = "open", direction: str = "desc") -> list[PullRequest]:
        repo = self.repo_by_name(full_name)
        pulls = [p for (rid, _), p in self.pulls.items() if rid == repo.id and state in ("all", p.state)]
        return sorted(pulls, key=lambda p: (p.created_at, p.number), reverse=direction != "asc")

    # ---- issue comments ------------------------------------------------------------------------

    def add_comment(
        self, full_name: str, number: int, body: str, user: SimUser | None = None, via_app: SimApp | None = None
    ) -> IssueComment:
        pr = self.get_pull_request(full_name, number)
        author = user or self.bot_user
        now = self.now()
        comment = IssueComment(
            id=self._next_id("comment"),
            repo_id=pr.repo_id,
            issue_number=number,
            body=body,
            user=author,
            author_association="NONE" if author.type == "Bot" else self._association(pr.repo_id, author),
            created_at=now,
            updated_at=now,
            via_app=via_app,
        )
        self.comments[comment.id] = comment
        self._issue_comments.setdefault((pr.repo_id, number), []).append(comment.id)
        return comment

    def _association(self, repo_id: int, user: SimUser) -> str:
        repo = self.repositories.get(repo_id)
        if repo is not None and repo.owner_login.lower() == user.login.lower():
            return "OWNER"
        role = self.collaborators.get((repo_id, user.login.lower()))
        return "COLLABORATOR" if role not in (None, "none") else "NONE"

    def get_comment(self, full_name: str, comment_id: int) -> IssueComment:
        repo = self.repo_by_name(full_name)
        comment = self.comments.get(comment_id)
        if comment is None or comment.repo_id != repo.id:
            raise NotFound()
        return comment

    def update_comment(self, full_name: str, comment_id: int, body: str) -> IssueComment:
        comment = self.get_comment(full_name, comment_id)
        comment.body = body
        comment.updated_at = self.now()
        return comment

    def delete_comment(self, full_name: str, comment_id: int) -> None:
        comment = self.get_comment(full_name, comment_id)
        del self.comments[comment_id]
        self._issue_comments[(comment.repo_id, comment.issue_number)].remove(comment_id)

    def comments_for(self, full_name: str, number: int) -> list[IssueComment]:
        """All comments of an issue/PR, oldest first (raises NotFound for an unknown PR)."""
        pr = self.get_pull_request(full_name, number)
        return [self.comments[c] for c in self._issue_comments.get((pr.repo_id, number), [])]

    def comment_count(self, repo_id: int, number: int) -> int:
        return len(self._issue_comments.get((repo_id, number), []))

    # ---- commit statuses -----------------------------------------------------------------------

    def add_status(
        self,
        full_name: str,
        sha: str,
        state: str,
        context: str = "default",
        description: str | None = None,
        target_url: str | None = None,
        creator: SimUser | None = None,
    ) -> CommitStatus:
        repo = self.repo_by_name(full_name)
        if state not in STATUS_STATES:
            raise SimulatorError(
                422,
                "Validation Failed",
                [
                    {
                        "resource": "Status",
                        "code": "custom",
                        "field": "state",
                        "message": f"state is not included in the list ({', '.join(STATUS_STATES)})",
                    }
                ],
            )
        status = CommitStatus(
            id=self._next_id("status"),
            repo_id=repo.id,
            sha=sha,
            state=state,
            context=context,
            description=description,
            target_url=target_url,
            creator=creator or self.bot_user,
            created_at=self.now(),
        )
        self.statuses.setdefault((repo.id, sha), []).append(status)
        return status

    def statuses_for(self, full_name: str, ref: str) -> list[CommitStatus]:
        """Statuses of a SHA (or of the head SHA of a branch with open PRs), newest first."""
        repo = self.repo_by_name(full_name)
        sha = ref
        if (repo.id, ref) not in self.statuses:
            for pr in self.pulls.values():
                if pr.repo_id == repo.id and pr.head_ref == ref:
                    sha = pr.head_sha
        return list(reversed(self.statuses.get((repo.id, sha), [])))

    # ---- collaborators -------------------------------------------------------------------------

    def set_permission(
        self,
        full_name: str,
        login: str,
        permission: str,
        user_id: int | None = None,
        user_type: str | None = None,
    ) -> None:
        if permission not in ROLES:
            raise SimulatorError(422, f"permission must be one of {', '.join(ROLES)}")
        repo = self.repo_by_name(full_name)
        self.ensure_user(login, user_id, user_type)
        self.collaborators[(repo.id, login.lower())] = permission

    def permission_of(self, full_name: str, login: str) -> tuple[str, SimUser]:
        """(role, user); a user with no role has ``read`` on a public and ``none`` on a private repo."""
        repo = self.repo_by_name(full_name)
        user = self.ensure_user(login)
        role = self.collaborators.get((repo.id, login.lower()))
        if role is None:
            role = "admin" if repo.owner_login.lower() == login.lower() else ("none" if repo.private else "read")
        return role, user

    # ---- logs ----------------------------------------------------------------------------------

    def record_request(self, record: RequestRecord) -> None:
        self.request_log.append(record)

    def record_delivery(
        self,
        *,
        guid: str,
        event: str,
        action: str | None,
        url: str,
        status_code: int | None,
        error: str | None,
        duration: float,
        installation_id: int | None,
        repository_id: int | None,
    ) -> WebhookDelivery:
        delivery = WebhookDelivery(
            id=self._next_id("delivery"),
            guid=guid,
            event=event,
            action=action,
            url=url,
            status_code=status_code,
            error=error,
            delivered_at=self.now(),
            duration=duration,
            installation_id=installation_id,
            repository_id=repository_id,
        )
        self.deliveries.append(delivery)
        return delivery

    def get_delivery(self, delivery_id: int) -> WebhookDelivery:
        for delivery in self.deliveries:
            if delivery.id == delivery_id:
                return delivery
        raise NotFound()

    def amend_delivery(
        self, delivery_id: int, *, payload: JsonDict | None = None, redelivery: bool | None = None
    ) -> WebhookDelivery:
        """Attach the payload sent (for redelivery) and/or mark the attempt as a redelivery."""
        for index, delivery in enumerate(self.deliveries):
            if delivery.id == delivery_id:
                amended = dataclasses.replace(
                    delivery,
                    payload=delivery.payload if payload is None else payload,
                    redelivery=delivery.redelivery if redelivery is None else redelivery,
                )
                self.deliveries[index] = amended
                return amended
        raise NotFound()


    # ---- users: lookup, registration, rename (issue 13, item 7) -----------------------------------

    def find_user(self, login: str) -> SimUser | None:
        """The user holding ``login`` now, if any (no auto-registration, unlike ``ensure_user``)."""
        return self.users.get(login.lower())

    def register_user(self, login: str, user_id: int, user_type: str = "User") -> SimUser:
        """A new account under a free login; a taken login or a used id is GitHub's 422."""
        if login.lower() in self.users:
            raise SimulatorError(422, f"login {login} is already taken")
        if any(u.id == user_id for u in self.users.values()):
            raise SimulatorError(422, f"user id {user_id} already exists")
        user = SimUser(login=login, id=user_id, type=user_type)
        self.users[login.lower()] = user
        return user

    def rename_user(self, login: str, new_login: str) -> SimUser:
        """GitHub's username change: the id stays, repository roles follow it, the old login is free
        (anyone may register it next, under a new id)."""
        user = self.find_user(login)
        if user is None:
            raise NotFound()
        if new_login.lower() in self.users and new_login.lower() != login.lower():
            raise SimulatorError(422, f"login {new_login} is already taken")
        del self.users[login.lower()]
        renamed = SimUser(login=new_login, id=user.id, type=user.type)
        self.users[new_login.lower()] = renamed
        for (repo_id, who), role in list(self.collaborators.items()):
            if who == login.lower():
                del self.collaborators[(repo_id, who)]
                self.collaborators[(repo_id, new_login.lower())] = role
        return renamed

    def user_installations(self, login: str) -> list[Installation]:
        """Installations of this App the user can reach (``GET /user/installations``): those on the
        user's own account, and those holding a repository on which the user has a role."""
        wanted = login.lower()
        reachable: set[int] = {i.id for i in self.installations.values() if i.account.login.lower() == wanted}
        for (repo_id, who), role in self.collaborators.items():
            repo = self.repositories.get(repo_id)
            if who == wanted and role != "none" and repo is not None and repo.installation_id in self.installations:
                reachable.add(repo.installation_id)
        return [self.installations[i] for i in sorted(reachable)]


class Renderer:
    """Renders state objects as GitHub's REST JSON; API URLs point at ``api_base``."""

    def __init__(self, state: SimulatorState, api_base: str | None = None) -> None:
        self.state = state
        self.api = (api_base or state.config.api_base_url).rstrip("/")
        self.html = state.config.html_base_url.rstrip("/")

    def user(self, user: SimUser) -> JsonDict:
        api_user = f"{self.api}/users/{user.login}"
        html_path = f"apps/{user.login.removesuffix('[bot]')}" if user.type == "Bot" else user.login
        return {
            "login": user.login,
            "id": user.id,
            "node_id": node_id("Bot" if user.type == "Bot" else user.type, user.id),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
            "gravatar_id": "",
            "url": api_user,
            "html_url": f"{self.html}/{html_path}",
            "followers_url": f"{api_user}/followers",
            "following_url": f"{api_user}/following{{/other_user}}",
            "gists_url": f"{api_user}/gists{{/gist_id}}",
            "starred_url": f"{api_user}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api_user}/subscriptions",
            "organizations_url": f"{api_user}/orgs",
            "repos_url": f"{api_user}/repos",
            "events_url": f"{api_user}/events{{/privacy}}",
            "received_events_url": f"{api_user}/received_events",
            "type": user.type,
            "user_view_type": "public",
            "site_admin": False,
        }

    def repository(self, repo: Repository) -> JsonDict:
        base = f"{self.api}/repos/{repo.full_name}"
        owner = self.state.ensure_user(repo.owner_login)
        templated = {
            "archive_url": "/{archive_format}{/ref}",
            "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}",
            "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}",
            "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}",
            "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}",
            "contributors_url": "/contributors",
            "deployments_url": "/deployments",
            "downloads_url": "/downloads",
            "events_url": "/events",
            "forks_url": "/forks",
            "git_commits_url": "/git/commits{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "hooks_url": "/hooks",
            "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}",
            "languages_url": "/languages",
            "merges_url": "/merges",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}",
            "stargazers_url": "/stargazers",
            "statuses_url": "/statuses/{sha}",
            "subscribers_url": "/subscribers",
            "subscription_url": "/subscription",
            "tags_url": "/tags",
            "teams_url": "/teams",
            "trees_url": "/git/trees{/sha}",
        }
        ts = iso(repo.created_at)
        data: JsonDict = {
            "id": repo.id,
            "node_id": node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self.user(owner),
            "html_url": f"{self.html}/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": base,
        }
        data.update({key: base + suffix for key, suffix in templated.items()})
        host = self.html.split("://", 1)[-1]
        data.update(
            {
                "git_url": f"git://{host}/{repo.full_name}.git",
                "ssh_url": f"git@{host}:{repo.full_name}.git",
                "clone_url": f"{self.html}/{repo.full_name}.git",
                "svn_url": f"{self.html}/{repo.full_name}",
                "mirror_url": None,
                "homepage": None,
                "language": None,
                "forks": 0,
                "forks_count": 0,
                "stargazers_count": 0,
                "watchers_count": 0,
                "watchers": 0,
                "network_count": 0,
                "subscribers_count": 0,
                "size": 0,
                "default_branch": repo.default_branch,
                "open_issues": self._open_pulls(repo.id),
                "open_issues_count": self._open_pulls(repo.id),
                "is_template": False,
                "topics": [],
                "has_issues": True,
                "has_projects": True,
                "has_wiki": True,
                "has_pages": False,
                "has_downloads": True,
                "has_discussions": False,
                "archived": False,
                "disabled": False,
                "visibility": "private" if repo.private else "public",
                "license": None,
                "pushed_at": ts,
                "created_at": ts,
                "updated_at": ts,
                "allow_forking": True,
                "web_commit_signoff_required": False,
            }
        )
        return data

    def _open_pulls(self, repo_id: int) -> int:
        return sum(1 for (rid, _), p in self.state.pulls.items() if rid == repo_id and p.state == "open")

    def installation(self, installation: Installation) -> JsonDict:
        config = self.state.config
        account = installation.account
        return {
            "id": installation.id,
            "client_id": config.client_id,
            "account": self.user(account),
            "repository_selection": installation.repository_selection,
            "access_tokens_url": f"{self.api}/app/installations/{installation.id}/access_tokens",
            "repositories_url": f"{self.api}/installation/repositories",
            "html_url": (
                f"{self.html}/organizations/{account.login}/settings/installations/{installation.id}"
                if account.type == "Organization"
                else f"{self.html}/settings/installations/{installation.id}"
            ),
            "app_id": config.app_id,
            "app_slug": config.app_slug,
            "target_id": account.id,
            "target_type": account.type,
            "permissions": dict(installation.permissions),
            "events": ["pull_request", "installation", "installation_repositories"],
            "created_at": iso(installation.created_at),
            "updated_at": iso(installation.updated_at),
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": None if installation.suspended_at is None else self.user(account),
            "suspended_at": None if installation.suspended_at is None else iso(installation.suspended_at),
        }

    def pull_request(self, pr: PullRequest, full: bool = True) -> JsonDict:
        repo = self.state.repositories[pr.repo_id]
        base = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.html}/{repo.full_name}/pull/{pr.number}"
        repo_json = self.repository(repo)
        owner = self.state.ensure_user(repo.owner_login)
        data: JsonDict = {
            "url": f"{base}/pulls/{pr.number}",
            "id": pr.id,
            "node_id": node_id("PullRequest", pr.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{base}/issues/{pr.number}",
            "number": pr.number,
            "state": pr.state,
            "locked": False,
            "title": pr.title,
            "user": self.user(pr.user),
            "body": pr.body,
            "labels": [],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": iso(pr.created_at),
            "updated_at": iso(pr.updated_at),
            "closed_at": None if pr.closed_at is None else iso(pr.closed_at),
            "merged_at": None if pr.merged_at is None else iso(pr.merged_at),
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "draft": pr.draft,
            "commits_url": f"{base}/pulls/{pr.number}/commits",
            "review_comments_url": f"{base}/pulls/{pr.number}/comments",
            "review_comment_url": f"{base}/pulls/comments{{/number}}",
            "comments_url": f"{base}/issues/{pr.number}/comments",
            "statuses_url": f"{base}/statuses/{pr.head_sha}",
            "head": {
                "label": f"{pr.user.login}:{pr.head_ref}",
                "ref": pr.head_ref,
                "sha": pr.head_sha,
                "user": self.user(pr.user),
                "repo": repo_json,
            },
            "base": {
                "label": f"{owner.login}:{pr.base_ref}",
                "ref": pr.base_ref,
                "sha": hashlib.sha1(f"{repo.full_name}:{pr.base_ref}".encode()).hexdigest(),
                "user": self.user(owner),
                "repo": repo_json,
            },
            "_links": {
                "self": {"href": f"{base}/pulls/{pr.number}"},
                "html": {"href": html},
                "issue": {"href": f"{base}/issues/{pr.number}"},
                "comments": {"href": f"{base}/issues/{pr.number}/comments"},
                "review_comments": {"href": f"{base}/pulls/{pr.number}/comments"},
                "review_comment": {"href": f"{base}/pulls/comments{{/number}}"},
                "commits": {"href": f"{base}/pulls/{pr.number}/commits"},
                "statuses": {"href": f"{base}/statuses/{pr.head_sha}"},
            },
            "author_association": pr.author_association,
            "auto_merge": None,
        }
        if full:
            data.update(
                {
                    "merged": pr.merged,
                    "mergeable": None if pr.state == "closed" else True,
                    "rebaseable": None if pr.state == "closed" else True,
                    "mergeable_state": "draft" if pr.draft else ("unknown" if pr.state == "closed" else "clean"),
                    "merged_by": None,
                    "comments": self.state.comment_count(pr.repo_id, pr.number),
                    "review_comments": 0,
                    "maintainer_can_modify": False,
                    "commits": 1,
                    "additions": 1,
                    "deletions": 0,
                    "changed_files": 1,
                }
            )
        return data

    def comment(self, comment: IssueComment) -> JsonDict:
        repo = self.state.repositories.get(comment.repo_id)
        full_name = repo.full_name if repo else "unknown/unknown"
        base = f"{self.api}/repos/{full_name}"
        return {
            "id": comment.id,
            "node_id": node_id("IssueComment", comment.id),
            "url": f"{base}/issues/comments/{comment.id}",
            "html_url": f"{self.html}/{full_name}/pull/{comment.issue_number}#issuecomment-{comment.id}",
            "body": comment.body,
            "user": self.user(comment.user),
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "issue_url": f"{base}/issues/{comment.issue_number}",
            "author_association": comment.author_association,
            "performed_via_github_app": None if comment.via_app is None else self.app(comment.via_app),
            "reactions": {
                "url": f"{base}/issues/comments/{comment.id}/reactions",
                "total_count": 0,
                "+1": 0,
                "-1": 0,
                "laugh": 0,
                "hooray": 0,
                "confused": 0,
                "heart": 0,
                "rocket": 0,
                "eyes": 0,
            },
        }

    def app(self, app: SimApp) -> JsonDict:
        """An App as GitHub renders it in `GET /app` and `performed_via_github_app`."""
        ts = iso(app.created_at)
        return {
            "id": app.id,
            "slug": app.slug,
            "node_id": node_id("Integration", app.id),
            "client_id": f"Iv1.{app.id:016x}",
            "owner": self.user(app.owner),
            "name": app.name,
            "description": "",
            "external_url": f"{self.html}/apps/{app.slug}",
            "html_url": f"{self.html}/apps/{app.slug}",
            "created_at": ts,
            "updated_at": ts,
            "permissions": {"issues": "write", "metadata": "read", "pull_requests": "write", "statuses": "write"},
            "events": ["pull_request", "installation", "installation_repositories"],
        }

    def status(self, status: CommitStatus) -> JsonDict:
        repo = self.state.repositories.get(status.repo_id)
        full_name = repo.full_name if repo else "unknown/unknown"
        ts = iso(status.created_at)
        return {
            "url": f"{self.api}/repos/{full_name}/statuses/{status.sha}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{status.creator.id}?v=4",
            "id": status.id,
            "node_id": node_id("StatusContext", status.id),
            "state": status.state,
            "description": status.description,
            "target_url": status.target_url,
            "context": status.context,
            "created_at": ts,
            "updated_at": ts,
            "creator": self.user(status.creator),
        }

    def installation_token(self, token: AccessToken) -> JsonDict:
        installation = self.state.installations[token.installation_id]
        data: JsonDict = {
            "token": token.token,
            "expires_at": iso(token.expires_at),
            "permissions": dict(token.permissions),
            "repository_selection": "selected"
            if token.repository_ids is not None
            else installation.repository_selection,
        }
        if token.repository_ids is not None:
            data["repositories"] = [
                self.repository(self.state.repositories[r])
                for r in sorted(token.repository_ids)
                if r in self.state.repositories
            ]
        return data

    def collaborator_permission(self, role: str, user: SimUser) -> JsonDict:
        permission = ROLE_TO_PERMISSION[role]
        user_json = self.user(user)
        user_json["permissions"] = {
            "admin": role == "admin",
            "maintain": role in ("admin", "maintain"),
            "push": permission in ("admin", "write"),
            "triage": role in ("admin", "maintain", "write", "triage"),
            "pull": role != "none",
        }
        user_json["role_name"] = role
        return {"permission": permission, "role_name": role, "user": user_json}
