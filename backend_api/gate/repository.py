"""Apply a `repository.renamed` event: the stored name of a known repository id follows GitHub."""

from __future__ import annotations

import asyncpg

from backend_api.store import deliveries, installations
from shared_contracts.events import IngestResponse, IngestStatus, RepositoryRenamedEvent


async def ingest_repository_renamed(pool: asyncpg.Pool, event: RepositoryRenamedEvent) -> IngestResponse:
    repo = event.repository
    async with pool.acquire() as conn, conn.transaction():
        fresh = await deliveries.begin(
            conn, event.delivery_id, event.event, event.action, event.installation_id, repo.id,
            event.body_sha256,
        )
        if not fresh:
            return IngestResponse(
                status=IngestStatus.DUPLICATE, delivery_id=event.delivery_id, reason="delivery already processed"
            )
        # Same lock as the installation's membership events, so a rename never interleaves with them.
        await installations.lock(conn, event.installation_id)
        renamed = await installations.rename_repository(conn, repo.id, repo.full_name)
        status = IngestStatus.ACCEPTED if renamed else IngestStatus.IGNORED
        reason = f"renamed to {repo.full_name}" if renamed else "repository not known by this id"
        await deliveries.finish(
            conn, event.delivery_id, event.event,
            deliveries.DeliveryRecord(status=status, decision=None, challenge_id=None, reason=reason),
        )
    return IngestResponse(status=status, delivery_id=event.delivery_id, reason=reason)
