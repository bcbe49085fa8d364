"""The accounts side of the GitHub simulator's state: users, installations, repositories, tokens and
the logs; :mod:`.state` adds what lives inside a repository.

Everything a test may want to set up or read back is a plain method here
(``state.add_installation(...)``, ``state.comments_for(...)``), so tests can drive the simulator
in-process as well as through the ``/_sim/`` routes. The state never reads the wall clock
directly: it is handed a ``clock`` (unix seconds) so tests can move time.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections import deque
from collections.abc import Iterable

from prgate.simulator.core.errors import NotFound, SimulatorError
from prgate.simulator.core.faults import ContentThrottle, FaultInjector
from prgate.simulator.core.rates import RateLimiter
from prgate.simulator.core.records import RequestRecord
from prgate.simulator.core.types import Clock, JsonDict
from prgate.simulator.github.config import SimulatorConfig
from prgate.simulator.github.model import (
    DEFAULT_PERMISSIONS,
    PERMISSION_LEVELS,
    TOKEN_ALPHABET,
    AccessToken,
    CommitStatus,
    Installation,
    IssueComment,
    PullRequest,
    Repository,
    SimApp,
    SimCommit,
    SimUser,
    WebhookDelivery,
    stable_id,
)


class AccountsState:
    """Every store of one app instance (created and cleared here) and the account-level operations."""

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
        self.commits: dict[int, list[SimCommit]] = {}  # per repository id, oldest first
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
        owner = SimUser(login=f"{self.config.app_slug}-owner", id=stable_id(f"{self.config.app_slug}-owner"),
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
            id=user_id if user_id is not None else (known.id if known else stable_id(login)),
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
        token = "ghs_" + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(body_length))
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


    # ---- users: lookup, registration, rename (docs/security.md, "Rights keyed by login, not user id") ----------------

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
