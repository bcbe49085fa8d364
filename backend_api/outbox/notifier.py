"""Wakes long-polling claim requests when PostgreSQL announces new claimable actions.

One LISTEN connection per backend process fans NOTIFY out to every waiting
request, so idle workers cost one held HTTP request each instead of a poll loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from backend_api.store.outbox import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class ActionNotifier:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._conn: asyncpg.Connection | None = None

    def wake(self) -> None:
        # Replace the event so waiters that start after this wake wait for the next one.
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, seconds: float) -> bool:
        """True when woken, False on timeout."""
        event = self._event
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            return False
        return True

    def _on_notify(self, *_: object) -> None:
        self.wake()

    async def start(self, dsn: str) -> None:
        self._conn = await asyncpg.connect(dsn)
        await self._conn.add_listener(NOTIFY_CHANNEL, self._on_notify)

    async def stop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
