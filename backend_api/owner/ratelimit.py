"""A per-key sliding-window counter, in this process's memory (the owner API's per-session limit).

Per replica on purpose: what it bounds is how fast one session can make a backend ask GitHub, and a
replica's own GitHub calls are what it holds. The clock is injected.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

MAX_KEYS = 50_000


class SlidingWindow:
    def __init__(self, limit: int, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str) -> float | None:
        """Count one hit; ``None`` when within the limit, else the seconds until one is allowed (the
        refused hit is not counted, so a client that waits gets through)."""
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= MAX_KEYS:
                self._forget_idle(now)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(hits[0] + self.window - now, 0.0)
        hits.append(now)
        return None

    def _forget_idle(self, now: float) -> None:
        self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - self.window}
        if len(self._hits) >= MAX_KEYS:
            self._hits.clear()
