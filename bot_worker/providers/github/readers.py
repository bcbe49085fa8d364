"""What reconciliation reads from GitHub: the App's installations, each one's repositories, each
repository's open pull requests. Paginated (the `Link` header's `rel="next"`) and rate-limit aware.

Every answer's primary rate-limit headers are read; once `X-RateLimit-Remaining` falls below the
reserve (a fraction of `X-RateLimit-Limit`), the listing stops and says so: the budget that is
left belongs to the outbox actions, which share the installation's hourly limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Generic, Protocol, TypeVar

import aiohttp
from pydantic import ValidationError

from bot_worker.providers.github.client import repo_path
from bot_worker.providers.github.normalize import NotForwardable, installation_info, pull_request
from bot_worker.providers.github.paging import next_page
from provider_clients.github.app import AppJwtSource, api_headers
from shared_contracts.events import InstallationInfo, Repository
from shared_contracts.reconcile import OpenPullRequest

log = logging.getLogger(__name__)

T = TypeVar("T")

PER_PAGE: Final = 100
MAX_INSTALLATION_PAGES: Final = 100  # 10,000 installations
MAX_REPOSITORY_PAGES: Final = 100  # 10,000 repositories per installation (the snapshot's bound)


class TokenSource(AppJwtSource, Protocol):
    async def get(self, installation_id: int) -> str: ...


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int
    remaining: int
    reset_at: float  # unix seconds

    def below(self, reserve: float) -> bool:
        return self.remaining < self.limit * reserve

    def describe(self) -> str:
        reset = time.strftime("%H:%M:%S UTC", time.gmtime(self.reset_at))
        return f"{self.remaining}/{self.limit} requests left until {reset}"


def rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    """GitHub's primary rate-limit headers; None when absent or unreadable."""
    try:
        return RateLimit(
            limit=int(headers["X-RateLimit-Limit"]),
            remaining=int(headers["X-RateLimit-Remaining"]),
            reset_at=float(headers["X-RateLimit-Reset"]),
        )
    except (KeyError, ValueError):
        return None


class ReserveReached(Exception):
    """The budget fell below the reserve (or GitHub refused: limit exhausted): defer the rest."""

    def __init__(self, budget: RateLimit | None, partial: list[Any] | None = None) -> None:
        what = budget.describe() if budget else "rate limit exhausted"
        super().__init__(f"deferred to keep the rate-limit reserve: {what}")
        self.budget = budget
        self.partial = partial or []


class GitHubError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"GitHub answered {status}: {message[:300]}")
        self.status = status


@dataclass(frozen=True, slots=True)
class ListedInstallation:
    info: InstallationInfo
    created_at: datetime | None  # GitHub's; pull requests opened before it are not "missed"


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(slots=True)
class Listing(Generic[T]):
    items: list[T] = field(default_factory=list)
    # False: pages were left unread (page bound) or an item could not be read.
    complete: bool = True


class GitHubReader:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_url: str,
        auth: TokenSource,
        *,
        reserve: float,
        observe: Callable[[str, int, float], None] | None = None,
        on_foreign_link: Callable[[], None] | None = None,
    ) -> None:
        self._session = session
        self._api_url = api_url
        self._on_foreign_link = on_foreign_link
        self._api = api_url.rstrip("/")
        self._auth = auth
        self._reserve = reserve
        self._observe = observe
        # The last budget seen per bucket ("app", or an installation id).
        self.budgets: dict[str | int, RateLimit] = {}

    def exhausted(self, bucket: str | int) -> RateLimit | None:
        """The bucket's last known budget if it is below the reserve and has not been reset since."""
        budget = self.budgets.get(bucket)
        if budget is not None and budget.below(self._reserve) and budget.reset_at > time.time():
            return budget
        return None

    async def _pages(self, path: str, bucket: str | int, max_pages: int) -> tuple[list[Any], bool]:
        """Every page's JSON (at most `max_pages`), and whether the last page was reached."""
        if (budget := self.exhausted(bucket)) is not None:
            raise ReserveReached(budget)
        url: str | None = f"{self._api}{path}"
        pages: list[Any] = []
        for _ in range(max_pages):
            assert url is not None
            token = self._auth.app_jwt() if bucket == "app" else await self._auth.get(int(bucket))
            headers = api_headers(token)
            started = time.perf_counter()
            async with self._session.get(url, headers=headers) as resp:
                if self._observe is not None:
                    self._observe("GET", resp.status, time.perf_counter() - started)
                budget = rate_limit(resp.headers)
                if budget is not None:
                    self.budgets[bucket] = budget
                if resp.status in (403, 429) and budget is not None and budget.remaining == 0:
                    raise ReserveReached(budget, pages)
                if resp.status != 200:
                    raise GitHubError(resp.status, await resp.text())
                pages.append(await resp.json(content_type=None))
                following = next_page(resp.headers.get("Link"), self._api_url)
                url = following.url
            if following.refused is not None:
                # Incomplete, so nothing is concluded from what is missing (no cancellation).
                log.error("reconcile: GitHub's next-page link for %s points to %s, not GITHUB_API_URL; "
                          "not followed (the token is never sent there)", path.split("?")[0], following.refused)
                if self._on_foreign_link is not None:
                    self._on_foreign_link()
                return pages, False
            if url is None:
                return pages, True
            if budget is not None and budget.below(self._reserve):
                raise ReserveReached(budget, pages)
        return pages, False

    async def installations(self, only: int | None = None) -> Listing[ListedInstallation]:
        """`GET /app/installations` (App JWT); with `only`, `GET /app/installations/{id}` (404: gone)."""
        if only is not None:
            try:
                pages, _ = await self._pages(f"/app/installations/{only}", "app", 1)
            except GitHubError as exc:
                if exc.status == 404:
                    return Listing()
                raise
            items: list[Any] = pages
        else:
            pages, complete = await self._pages(f"/app/installations?per_page={PER_PAGE}", "app",
                                                MAX_INSTALLATION_PAGES)
            items = [item for page in pages if isinstance(page, list) for item in page]
            if not complete:
                return Listing(parse_installations(items).items, complete=False)
        return parse_installations(items)

    async def repositories(self, installation_id: int) -> Listing[Repository]:
        """`GET /installation/repositories` with the installation's token."""
        pages, complete = await self._pages(
            f"/installation/repositories?per_page={PER_PAGE}", installation_id, MAX_REPOSITORY_PAGES
        )
        return parse_repositories(pages, complete)

    async def open_pull_requests(
        self, installation_id: int, repo: Repository, max_pages: int
    ) -> Listing[OpenPullRequest]:
        """`GET /repositories/{id}/pulls?state=open` (by id: the name may be another repository's now),
        at most `max_pages` pages."""
        pages, complete = await self._pages(
            f"{repo_path(repo.id)}/pulls?state=open&per_page={PER_PAGE}", installation_id, max_pages
        )
        return parse_pull_requests(pages, complete)


def parse_installations(items: list[Any]) -> Listing[ListedInstallation]:
    listing: Listing[ListedInstallation] = Listing()
    for item in items:
        try:
            info = installation_info(item)
        except (ValidationError, NotForwardable):
            listing.complete = False
            continue
        listing.items.append(ListedInstallation(info, _time(item.get("created_at"))))
    return listing


def parse_repositories(pages: list[Any], complete: bool) -> Listing[Repository]:
    listing: Listing[Repository] = Listing(complete=complete)
    for page in pages:
        repos = page.get("repositories") if isinstance(page, dict) else None
        if not isinstance(repos, list):
            listing.complete = False
            continue
        for item in repos:
            try:
                listing.items.append(Repository.model_validate(item))
            except ValidationError:
                listing.complete = False
    return listing


def parse_pull_requests(pages: list[Any], complete: bool) -> Listing[OpenPullRequest]:
    listing: Listing[OpenPullRequest] = Listing(complete=complete)
    for page in pages:
        if not isinstance(page, list):
            listing.complete = False
            continue
        for item in page:
            try:
                pr = pull_request(item) if isinstance(item, dict) else None
            except ValidationError:
                pr = None
            if pr is None:
                listing.complete = False  # an unreadable item must not look closed
                continue
            # The decision needs neither title nor URL; dropping them keeps a 2,000-PR snapshot well
            # under 1 MiB.
            listing.items.append(OpenPullRequest.model_validate({
                **pr.model_dump(), "title": "", "html_url": "", "created_at": _time(item.get("created_at")),
            }))
    return listing

