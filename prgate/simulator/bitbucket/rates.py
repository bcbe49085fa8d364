"""Bitbucket's rate limit: a rolling one-hour window per credential (not GitHub's fixed window)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RollingSnapshot:
    limit: int
    used: int
    exhausted: bool
    retry_after: int  # seconds until the oldest counted request leaves the window (0 when not exhausted)

    def headers(self) -> dict[str, str]:
        """The headers Bitbucket sends for access-token requests to the `api` resource group.

        `X-RateLimit-Limit` is the hourly budget (not a countdown), `X-RateLimit-NearLimit` is true when
        less than 20 % of it is left (Bitbucket's "Scaled rate limits" announcement)."""
        near = (self.limit - self.used) < 0.2 * self.limit
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Resource": "api",
            "X-RateLimit-NearLimit": "true" if near else "false",
        }


class RollingRateLimiter:
    WINDOW_SECONDS = 3600.0

    def __init__(self, limit_per_hour: int) -> None:
        self.limit_per_hour = limit_per_hour
        self._windows: dict[str, deque[float]] = {}

    def reset(self) -> None:
        self._windows.clear()

    def consume(self, key: str, now: float) -> RollingSnapshot:
        """Count one request, or refuse it (a refused request is not counted)."""
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - self.WINDOW_SECONDS:
            window.popleft()
        if len(window) >= self.limit_per_hour:
            retry = max(1, math.ceil(window[0] + self.WINDOW_SECONDS - now))
            return RollingSnapshot(self.limit_per_hour, len(window), True, retry)
        window.append(now)
        return RollingSnapshot(self.limit_per_hour, len(window), False, 0)
