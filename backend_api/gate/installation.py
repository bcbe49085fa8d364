"""Apply one installation / installation_repositories event in one transaction."""

from __future__ import annotations

import asyncpg

from backend_api.challenges import messages
from backend_api.gate.replay import replay_parked
from backend_api.store import challenges, deliveries, installations, outbox, repo_config
from backend_api.store.db import Conn
from shared_contracts.events import IngestResponse, IngestStatus, InstallationSyncEvent
from shared_contracts.owner import InstallationStatus


async def ingest_installation_sync(
    pool: asyncpg.Pool, event: InstallationSyncEvent, *, public_url: str, max_attempts: int
) -> tuple[IngestResponse, int]:
    """The answer, and how many events parked for the installation were decided now that it is known."""
    inst = event.installation
    async with pool.acquire() as conn, conn.transaction():
        fresh = await deliveries.begin(
            conn, event.delivery_id, event.event, event.action, inst.id, None, event.body_sha256
        )
        if not fresh:
            return IngestResponse(
                status=IngestStatus.DUPLICATE, delivery_id=event.delivery_id,
                reason="delivery already processed",
            ), 0
        # Serialize events of one installation so membership updates never interleave.
        await installations.lock(conn, inst.id)
        status, reason = await apply_sync(conn, event)
        # Every installation event records the installation (`upsert`): what waited for it is decided
        # now, under the same lock, before any later event of one of its pull requests.
        replayed = await replay_parked(conn, inst.id, public_url=public_url, max_attempts=max_attempts)
        await deliveries.finish(
            conn, event.delivery_id, event.event,
            deliveries.DeliveryRecord(status=status, decision=None, challenge_id=None, reason=reason),
        )
    return IngestResponse(status=status, delivery_id=event.delivery_id, reason=reason), replayed


async def apply_sync(conn: Conn, event: InstallationSyncEvent) -> tuple[IngestStatus, str | None]:
    """What one installation event changes, inside the caller's transaction (which holds
    `installations.lock`); reconciliation applies the events it finds missing through it too."""
    inst = event.installation
    key = (event.event, event.action)
    if key == ("installation", "created"):
        await installations.upsert(conn, inst, reactivate=True)
        await installations.add_repositories(conn, inst.id, event.repositories_added)
        await _config_stale(conn, inst.id, event, "installation created")
        return IngestStatus.ACCEPTED, f"installed on {messages.plural(len(event.repositories_added), 'repository')}"
    if key == ("installation", "deleted"):
        await installations.upsert(conn, inst, reactivate=False)
        await installations.set_status(conn, inst.id, InstallationStatus.DELETED)
        await installations.remove_all_repositories(conn, inst.id)
        cancelled = await outbox.cancel_pending_for_installation(conn, inst.id, "installation deleted")
        await challenges.cancel_pending_for_installation(conn, inst.id, "installation deleted")
        return IngestStatus.ACCEPTED, f"installation deleted; {cancelled} pending actions cancelled"
    if key == ("installation", "suspend"):
        await installations.upsert(conn, inst, reactivate=False)
        await installations.set_status(conn, inst.id, InstallationStatus.SUSPENDED)
        return IngestStatus.ACCEPTED, "installation suspended"
    if key == ("installation", "unsuspend"):
        await installations.upsert(conn, inst, reactivate=False)
        await installations.set_status(conn, inst.id, InstallationStatus.ACTIVE)
        # Pushes while suspended were not read (no token to read with): read every file again.
        members = [(m.repo_id, m.full_name) for m in await installations.memberships(conn, inst.id)
                   if m.removed_at is None]
        await repo_config.mark_stale(conn, inst.id, members, "installation unsuspended")
        # Its held-back actions are claimable again: wake long-polling workers.
        await outbox.notify(conn)
        return IngestStatus.ACCEPTED, "installation unsuspended"
    if key == ("installation_repositories", "added"):
        await installations.upsert(conn, inst, reactivate=False)
        await installations.add_repositories(conn, inst.id, event.repositories_added)
        await _config_stale(conn, inst.id, event, "repository added to the installation")
        return IngestStatus.ACCEPTED, f"{messages.plural(len(event.repositories_added), 'repository')} added"
    if key == ("installation_repositories", "removed"):
        await installations.upsert(conn, inst, reactivate=False)
        repo_ids = [r.id for r in event.repositories_removed]
        await installations.remove_repositories(conn, inst.id, repo_ids)
        await outbox.cancel_pending_for_repos(conn, inst.id, repo_ids, "repository removed from installation")
        await challenges.cancel_pending_for_repos(conn, inst.id, repo_ids, "repository removed")
        return IngestStatus.ACCEPTED, f"{messages.plural(len(repo_ids), 'repository')} removed"
    return IngestStatus.IGNORED, f"{event.event}.{event.action} does not change installation state"


async def _config_stale(conn: Conn, installation_id: int, event: InstallationSyncEvent, reason: str) -> None:
    """A repository can hold its `.github/prgate.yml` before prgate is installed on it, and no push
    will announce it: mark it to be read (the config-refresh job, docs/configuration.md)."""
    await repo_config.mark_stale(conn, installation_id, [(r.id, r.full_name) for r in event.repositories_added],
                                 reason)
