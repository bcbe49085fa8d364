"""GitHub's webhook deliveries API (App JWT): list the attempts, ask for a redelivery.

The redelivery job (`bot_worker/jobs/redelivery.py`) decides what to redeliver; this module only
talks to `GET /app/hook/deliveries` (newest first, cursor pages through `Link: rel="next"`, followed
only on GITHUB_API_URL's origin) and `POST /app/hook/deliveries/{id}/attempts`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp

from bot_worker.providers.github.paging import NextPage, next_page
from provider_clients.github.app import AppJwtSource, api_headers

log = logging.getLogger(__name__)

GITHUB_WINDOW: Final = timedelta(days=3)  # GitHub refuses to redeliver older deliveries
PER_PAGE: Final = 100
MAX_PAGES: Final = 100  # at most 10,000 attempts per run; the rest waits for the next run


@dataclass(frozen=True, slots=True)
class Attempt:
    """One item of `GET /app/hook/deliveries`: one delivery attempt."""

    id: int
    guid: str
    delivered_at: datetime
    status_code: int  # 0: no response
    redelivery: bool = False
    event: str = ""
    action: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


class RedeliveryError(Exception):
    """GitHub answered the list or redelivery call with an unexpected status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"GitHub answered {status}: {message[:300]}")
        self.status = status


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def parse_attempt(item: Mapping[str, Any]) -> Attempt | None:
    """An item of GitHub's list as an `Attempt`; None when it lacks what selection needs."""
    try:
        status = item.get("status_code")
        action = item.get("action")
        return Attempt(
            id=int(item["id"]),
            guid=str(item["guid"]),
            delivered_at=parse_time(str(item["delivered_at"])),
            status_code=int(status) if isinstance(status, int) else 0,
            redelivery=bool(item.get("redelivery", False)),
            event=str(item.get("event") or ""),
            action=action if isinstance(action, str) else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


class GitHubDeliveries:
    """The App's webhook deliveries, read and redelivered with the App JWT."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str, app_auth: AppJwtSource) -> None:
        self._session = session
        self._api_url = api_url
        self._app_auth = app_auth

    def _headers(self) -> dict[str, str]:
        return api_headers(self._app_auth.app_jwt())

    async def list_attempts(self, *, after_id: int, not_before: datetime) -> tuple[list[Attempt], bool]:
        """Attempts newer than `after_id` and not older than `not_before`, following the cursor pages;
        and True when a `next` link led off the API's origin, so the listing stopped short."""
        url: str | None = f"{self._api_url.rstrip('/')}/app/hook/deliveries?per_page={PER_PAGE}"
        found: list[Attempt] = []
        foreign = False
        for _ in range(MAX_PAGES):
            if url is None:
                break
            async with self._session.get(url, headers=self._headers()) as resp:
                if resp.status != 200:
                    raise RedeliveryError(resp.status, await resp.text())
                items = await resp.json(content_type=None)
                link = resp.headers.get("Link")
            if not isinstance(items, list):
                raise RedeliveryError(200, "the deliveries list is not a JSON array")
            reached_end = False
            for item in items:
                attempt = parse_attempt(item) if isinstance(item, dict) else None
                if attempt is None:
                    continue
                if attempt.id <= after_id or attempt.delivered_at < not_before:
                    reached_end = True  # newest first: everything after this was seen or is too old
                    continue
                found.append(attempt)
            following = NextPage(None) if reached_end else next_page(link, self._api_url)
            if following.refused is not None:
                foreign = True
                log.error("redelivery: GitHub's next-page link points to %s, not GITHUB_API_URL; not followed "
                          "(the token is never sent there), listing stopped", following.refused)
            url = following.url
        else:
            if url is not None:
                log.warning("redelivery: stopped listing after %d pages; the rest waits for the next run", MAX_PAGES)
        return found, foreign

    async def redeliver(self, attempt: Attempt) -> None:
        """`POST /app/hook/deliveries/{id}/attempts`; RedeliveryError unless GitHub accepted it."""
        url = f"{self._api_url.rstrip('/')}/app/hook/deliveries/{attempt.id}/attempts"
        async with self._session.post(url, headers=self._headers()) as resp:
            if resp.status not in (200, 201, 202):
                raise RedeliveryError(resp.status, await resp.text())
