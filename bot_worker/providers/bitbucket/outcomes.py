"""Map what happened at Bitbucket (or on the way to its token) to the outcome reported. Pure."""

from __future__ import annotations

import asyncio

import aiohttp

from bot_worker.providers.base import Classified, LeaseBudgetExhausted
from bot_worker.providers.bitbucket.tokens import TokenUnavailable, WorkspaceDisconnected
from provider_clients.bitbucket.errors import AuthFailed, BadRequest, NotFound, RateLimited, Unavailable
from shared_contracts.actions import Outcome


class BadAction(ValueError):
    """An action this provider cannot carry out as given (a repository name that is not `workspace/slug`)."""


# Bitbucket's limits are hourly; a 429 without Retry-After waits at least this long.
RATE_LIMIT_MIN_SECONDS = 60.0


def classify_exception(exc: BaseException) -> Classified:
    if isinstance(exc, RateLimited):
        wait = max(RATE_LIMIT_MIN_SECONDS, exc.retry_after or 0.0)
        return Classified(Outcome.RETRYABLE_FAILURE, f"rate limited: {exc}", wait, "primary")
    if isinstance(exc, Unavailable):
        return Classified(Outcome.RETRYABLE_FAILURE, str(exc))
    if isinstance(exc, AuthFailed):
        # Asked again once with a fresh token before this (runner.py): the token cannot do this.
        what = "the workspace's token is refused" if exc.status == 401 else "the workspace's token may not do this"
        return Classified(Outcome.FAILED, f"{what}: {exc}")
    if isinstance(exc, NotFound):
        return Classified(Outcome.FAILED, f"not found (the repository or pull request is gone, or the token "
                                          f"cannot see it): {exc}")
    if isinstance(exc, BadRequest):
        return Classified(Outcome.FAILED, str(exc))
    if isinstance(exc, (WorkspaceDisconnected, BadAction)):
        return Classified(Outcome.FAILED, str(exc))
    if isinstance(exc, TokenUnavailable):
        return Classified(Outcome.RETRYABLE_FAILURE, str(exc))
    if isinstance(exc, LeaseBudgetExhausted):
        return Classified(Outcome.RETRYABLE_FAILURE, f"lease budget: {exc}")
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return Classified(Outcome.RETRYABLE_FAILURE, f"{type(exc).__name__}: {exc}".strip(": "))
    return Classified(Outcome.RETRYABLE_FAILURE, f"unexpected {type(exc).__name__}: {exc}")
