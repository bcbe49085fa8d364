"""docs/security.md, "A pull request that arrives before its installation is never gated": events for an installation
not known yet are parked, then decided when it is."""

from __future__ import annotations

from typing import Any

import asyncpg

from backend_api import maintenance
from backend_api.challenges import messages
from tests.conftest import INTERNAL_SECRET, backend_settings
from tests.support.ingest import send_installation, send_pr
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.signed import SignedClient

UNKNOWN = 4242


async def _deliveries(db: asyncpg.Pool) -> dict[str, tuple[str, str | None]]:
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT delivery_id, status, decision FROM webhook_deliveries")
    return {r["delivery_id"]: (r["status"], r["decision"]) for r in rows}


async def _parked(db: asyncpg.Pool) -> int:
    async with db.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM parked_pull_request_events"))


def _pr(number: int, action: str = "opened", **kw: Any) -> dict[str, Any]:
    return pull_request_payload(action, installation_id=UNKNOWN, number=number, **kw)


async def test_pull_request_before_its_installation_is_gated_when_the_installation_arrives(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    first = await send_pr(backend, _pr(1), delivery_id="pr-1")
    assert (first["status"], first["enqueued_action_ids"]) == ("PARKED", [])
    # GitHub redelivering the same delivery: still a duplicate, still parked once.
    again = await send_pr(backend, _pr(1), delivery_id="pr-1")
    assert again["status"] == "DUPLICATE"
    await send_pr(backend, _pr(1, "synchronize", head_sha="f" * 40), delivery_id="pr-1-sync")
    assert await _parked(db) == 2
    assert await _deliveries(db) == {"pr-1": ("PARKED", None), "pr-1-sync": ("PARKED", None)}

    await send_installation(backend, "installation", installation_payload(
        "created", installation_id=UNKNOWN, repos=[(5001, "octo-org/widgets")]
    ), delivery_id="inst-created")

    assert await _parked(db) == 0
    rows = await _deliveries(db)
    assert rows["pr-1"] == ("ACCEPTED", "GATE")
    assert rows["pr-1-sync"] == ("ACCEPTED", "GATE")  # decided after `opened`: the pending challenge moves
    async with db.acquire() as conn:
        challenges = await conn.fetch("SELECT status, delivery_id FROM challenges")
        comments = await conn.fetch(
            "SELECT payload FROM bot_actions WHERE action_type = 'UPSERT_PR_COMMENT' AND installation_id = $1",
            UNKNOWN,
        )
    assert [(c["status"], c["delivery_id"]) for c in challenges] == [("PENDING", "pr-1")]
    assert len(comments) == 1
    assert comments[0]["payload"]["marker"] == messages.PR_COMMENT_MARKER

    # Known now: the next event is decided at once, as it always was.
    later = await send_pr(backend, _pr(2), delivery_id="pr-2")
    assert (later["status"], later["decision"]) == ("ACCEPTED", "GATE")


async def test_parking_is_bounded_per_installation_and_in_all(
    db: asyncpg.Pool, database_url: str, aiohttp_client: Any
) -> None:
    from backend_api.app import create_app

    settings = backend_settings(database_url, PARKED_EVENTS_PER_INSTALLATION_MAX=2, PARKED_EVENTS_MAX=3)
    backend = SignedClient(await aiohttp_client(create_app(settings)), INTERNAL_SECRET)
    answers = [
        (await send_pr(backend, pull_request_payload("opened", installation_id=inst, number=n),
                       delivery_id=f"{inst}-{n}"))["status"]
        for inst, n in [(UNKNOWN, 1), (UNKNOWN, 2), (UNKNOWN, 3), (UNKNOWN + 1, 1), (UNKNOWN + 1, 2)]
    ]
    assert answers == ["PARKED", "PARKED", "DROPPED", "PARKED", "DROPPED"]
    assert await _parked(db) == 3
    rows = await _deliveries(db)
    assert rows[f"{UNKNOWN}-3"] == ("DROPPED", None)
    assert rows[f"{UNKNOWN + 1}-2"] == ("DROPPED", None)
    metrics = await (await backend.client.get("/metrics")).text()
    assert 'backend_parked_events_total{outcome="parked"} 3.0' in metrics
    assert 'backend_parked_events_total{outcome="dropped"} 2.0' in metrics


async def test_parked_events_expire_after_the_ttl(backend: SignedClient, db: asyncpg.Pool) -> None:
    await send_pr(backend, _pr(1), delivery_id="old")
    await send_pr(backend, _pr(2), delivery_id="young")
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE parked_pull_request_events SET received_at = now() - interval '3 days 1 minute'"
            " WHERE delivery_id = 'old'"
        )
    counts = await maintenance.run_once(db, public_url="http://prgate.test", max_attempts=8)
    assert counts["parked_expired"] == 1
    assert await _parked(db) == 1
    assert (await _deliveries(db))["old"] == ("IGNORED", None)
    assert (await _deliveries(db))["young"] == ("PARKED", None)
