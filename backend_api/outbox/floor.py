"""The claim floor: where in the outbox index a claim starts looking.

Every finished action leaves index entries behind its position (its insert time, its lease expiry)
until they are marked dead. A transaction held open anywhere on the server stops that, and a claim
that walks the index from its oldest entry re-reads every action finished since — the cost grows
with the transaction's age (docs/benchmarks.md, "Contention and bloat"). The floor is the oldest
next_attempt_at of a claimable row (never later than `margin` ago), found by one such walk at most
every `refresh` seconds per backend process; claims start there.

Nothing is lost: a row below the floor (a blocked successor that became claimable, an installation
unsuspended, an insert whose transaction ran longer than `margin`) is found by the next refresh,
which walks from the start. Its claim is late by at most `refresh`; a result that unblocks a
successor drops this process's floor at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from backend_api.store import outbox
from backend_api.store.db import Conn

REFRESH_SECONDS = 1.0
MARGIN_SECONDS = 1.0


class ClaimFloor:
    def __init__(
        self,
        refresh_seconds: float = REFRESH_SECONDS,
        margin_seconds: float = MARGIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._refresh = refresh_seconds
        self._margin = margin_seconds
        self._clock = clock
        self._value: datetime | None = None
        self._taken_at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> datetime | None:
        if self._value is not None and self._clock() - self._taken_at < self._refresh:
            return self._value
        return None

    async def get(self, conn: Conn) -> datetime:
        value = self._fresh()
        if value is not None:
            return value
        async with self._lock:  # one walk at a time; the others use its answer
            value = self._fresh()
            if value is None:
                value = await outbox.claim_floor(conn, self._margin)
                self._value, self._taken_at = value, self._clock()
        return value

    def drop(self) -> None:
        """Look from the start again on the next claim (a successor became claimable)."""
        self._value = None
