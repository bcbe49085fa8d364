"""Replay protection for signed requests, written in batches that form by themselves.

Every signed request's nonce must be recorded before it is served. One INSERT per request was one
more pooled round trip on every claim, result and ingest; here the nonces of requests arriving
while an INSERT is in flight go together in the next one (no timer: a lone request costs what it
did). A nonce seen twice within one batch is a replay too.
"""

from __future__ import annotations

import asyncio

import asyncpg

from backend_api.store import nonces


class NonceLedger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        self._writer: asyncio.Task[None] | None = None

    async def first_use(self, nonce: str) -> bool:
        """True when this nonce was never recorded before (the request may be served)."""
        if nonce in self._waiting:
            return False
        fresh: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[nonce] = fresh
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        return await asyncio.shield(fresh)

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    async with self._pool.acquire() as conn:
                        recorded = await nonces.record(conn, list(batch))
                except Exception as exc:  # each waiting request fails as its own INSERT would have
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                            future.exception()  # retrieved here too: a cancelled request never awaits it
                    continue
                for nonce, future in batch.items():
                    if not future.done():
                        future.set_result(nonce in recorded)
        finally:
            self._writer = None
