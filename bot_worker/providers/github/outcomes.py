"""Map what happened at GitHub to the outcome reported to the backend. Pure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp
import gidgethub

from bot_worker.providers.base import Classified, LeaseBudgetExhausted
from bot_worker.providers.github.auth import GitHubAuthError
from bot_worker.providers.github.paging import ForeignOrigin
from shared_contracts.actions import Outcome

SECONDARY_LIMIT_MIN_SECONDS = 60.0


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify_http(status: int, headers: Mapping[str, str], message: str, now: float | None = None) -> Classified:
    now = time.time() if now is None else now
    text = f"{status} {message}".strip()
    remaining = _header(headers, "x-ratelimit-remaining")
    retry_after = _float(_header(headers, "retry-after"))
    if status in (403, 429) and remaining == "0":
        reset = _float(_header(headers, "x-ratelimit-reset"))
        wait = max(1.0, reset - now) if reset is not None else SECONDARY_LIMIT_MIN_SECONDS
        return Classified(Outcome.RETRYABLE_FAILURE, f"primary rate limit: {text}", wait, "primary")
    if status == 429 or (status == 403 and (retry_after is not None or "secondary rate limit" in message.lower())):
        wait = max(SECONDARY_LIMIT_MIN_SECONDS, retry_after or 0.0)
        return Classified(Outcome.RETRYABLE_FAILURE, f"secondary rate limit: {text}", wait, "secondary")
    if status >= 500 or status in (408, 409):
        return Classified(Outcome.RETRYABLE_FAILURE, text)
    if status == 401:
        # Credentials problem (key rotated, clock skew): retry with backoff rather than drop the action.
        return Classified(Outcome.RETRYABLE_FAILURE, f"unauthorized: {text}")
    return Classified(Outcome.FAILED, text)


def classify_exception(exc: BaseException, now: float | None = None) -> Classified:
    if isinstance(exc, gidgethub.HTTPException):
        message = str(exc.args[0]) if exc.args else ""
        return classify_http(int(exc.status_code), exc.headers, message, now)
    if isinstance(exc, LeaseBudgetExhausted):
        # Nothing more was written: hand the action back now rather than write after the lease.
        return Classified(Outcome.RETRYABLE_FAILURE, f"lease budget: {exc}")
    if isinstance(exc, ForeignOrigin):
        # Nothing was sent; GitHub's next answer (or a fixed GITHUB_API_URL) may point home again.
        return Classified(Outcome.RETRYABLE_FAILURE, f"foreign next link: {exc}")
    if isinstance(exc, GitHubAuthError):
        return classify_http(exc.status, exc.headers, str(exc), now)
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return Classified(Outcome.RETRYABLE_FAILURE, f"{type(exc).__name__}: {exc}".strip(": "))
    return Classified(Outcome.RETRYABLE_FAILURE, f"unexpected {type(exc).__name__}: {exc}")
