"""docs/security.md, "Gate bypass through a foreign comment", "A run that outlives its lease keeps writing" and
"Throttled tenants in shared slots, expired leases of a deleted installation", on the backend: the PR comment id a
worker reports is handed back with the PR's next action; a running attempt's lease is extended only for its
holder; expired leases of a deleted installation are finished, so a reinstall is not blocked by them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from tests.support.ingest import send_installation
from tests.support.outbox import CLAIM, RESULTS, expire_leases, install, seed_actions
from tests.support.payloads import installation_payload
from tests.support.signed import SignedClient


def lease_path(action_id: int) -> str:
    return f"/internal/v2/bot-actions/{action_id}/lease"


async def claim(backend: SignedClient, worker: str = "w1", lease_seconds: int = 60) -> list[dict[str, Any]]:
    resp = await backend.post_json(CLAIM, {"worker_id": worker, "max_actions": 10, "lease_seconds": lease_seconds})
    return list(resp["actions"])


async def results(backend: SignedClient, worker: str, *items: dict[str, Any]) -> list[dict[str, Any]]:
    resp = await backend.post_json(RESULTS, {"worker_id": worker, "results": list(items)})
    return list(resp["results"])


async def test_the_reported_comment_id_comes_back_with_the_prs_next_action(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    await install(backend)
    first_id, second_id, third_id = await seed_actions(db, 3, prs=1)
    [first] = await claim(backend)
    assert first["action_id"] == first_id
    assert first["comment_id"] is None  # nothing written on this PR yet
    await results(backend, "w1", {"action_id": first_id, "attempt": 1, "outcome": "SUCCEEDED", "comment_id": 4242})
    [second] = await claim(backend)
    assert (second["action_id"], second["comment_id"]) == (second_id, 4242)
    # A worker that does not know the field (older version) reports without it: the id is kept.
    await results(backend, "w1", {"action_id": second_id, "attempt": 1, "outcome": "SUCCEEDED"})
    [third] = await claim(backend)
    assert (third["action_id"], third["comment_id"]) == (third_id, 4242)
    # A refused (stale) result stores nothing.
    [refused] = await results(backend, "w2", {"action_id": third_id, "attempt": 1, "outcome": "SUCCEEDED",
                                              "comment_id": 9999})
    assert refused["refused"] == "stale_lease"
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT comment_id FROM pr_comments") == 4242
    bad = await backend.post_json(RESULTS, {"worker_id": "w1", "results": [
        {"action_id": third_id, "attempt": 1, "outcome": "SUCCEEDED", "comment_id": -1}]}, expect=422)
    assert bad["error"]


async def test_a_running_attempts_lease_is_extended_only_for_its_holder(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    await install(backend)
    [action_id] = await seed_actions(db, 1)
    [action] = await claim(backend, lease_seconds=10)
    before = datetime.fromisoformat(action["lease_expires_at"])
    body = {"worker_id": "w1", "attempt": 1, "lease_seconds": 120}
    extended = await backend.post_json(lease_path(action_id), body)
    assert extended["action_id"] == action_id
    assert datetime.fromisoformat(extended["lease_expires_at"]) > before
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT lease_expires_at, next_attempt_at FROM bot_actions")
    assert row is not None
    assert row["lease_expires_at"] == row["next_attempt_at"] == datetime.fromisoformat(extended["lease_expires_at"])
    for refused in ({**body, "worker_id": "w2"}, {**body, "attempt": 2}):
        answer = await backend.post_json(lease_path(action_id), refused, expect=409)
        assert answer["error"] == "stale_lease"
    assert (await backend.post_json(lease_path(987654), body, expect=404))["error"] == "not_found"
    assert (await backend.post_json(lease_path(action_id), {"worker_id": "w1"}, expect=422))["error"]
    # An expired lease may already be another worker's: never extended.
    await expire_leases(db)
    await backend.post_json(lease_path(action_id), body, expect=409)


async def test_a_finished_attempt_cannot_extend(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    [action_id] = await seed_actions(db, 1)
    await claim(backend)
    await results(backend, "w1", {"action_id": action_id, "attempt": 1, "outcome": "SUCCEEDED"})
    await backend.post_json(lease_path(action_id), {"worker_id": "w1", "attempt": 1}, expect=409)


async def test_expired_claims_of_a_deleted_installation_do_not_block_its_prs_after_a_reinstall(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    await install(backend)
    [orphan] = await seed_actions(db, 1, prs=1)
    [live] = await seed_actions(db, 1, prs=1, repo="octo-org/other", repo_id=5002)
    claimed = await claim(backend, "gone-worker")
    assert sorted(a["action_id"] for a in claimed) == [orphan, live]
    async with db.acquire() as conn:  # the orphan's worker died: its lease ran out
        await conn.execute("UPDATE bot_actions SET lease_expires_at = now() - interval '1 second', "
                           "next_attempt_at = now() - interval '1 second' WHERE action_id = $1", orphan)
    await send_installation(backend, "installation", installation_payload("deleted"))
    await install(backend)  # reinstalled
    [fresh] = await seed_actions(db, 1, prs=1)
    assert [a["action_id"] for a in await claim(backend, "w2")] == [fresh]
    async with db.acquire() as conn:
        rows = {r["action_id"]: (r["status"], r["lease_owner"])
                for r in await conn.fetch("SELECT action_id, status, lease_owner FROM bot_actions")}
    assert rows[orphan] == ("CANCELLED", None)
    assert rows[live] == ("CLAIMED", "gone-worker")  # a live lease is honoured until it reports
