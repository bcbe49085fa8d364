"""`POST /internal/v2/github/events/pull-requests`: several deliveries in one signed call.

Through the real backend and PostgreSQL. Each delivery must get what the single call gives it
(compared side by side on two pull requests that see the same events), in order; a call that does
not validate writes nothing; a delivery the database refuses (a trigger, a real PostgreSQL error)
is answered with an error item while its neighbours are written.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from bot_worker.providers.github.normalize import pull_request_event
from shared_contracts.events import PULL_REQUEST_EVENTS_MAX
from tests.integration.test_backend_metrics import scrape, value
from tests.support.ingest import send_installation, send_pr
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.signed import SignedClient

GROUP_PATH = "/internal/v2/github/events/pull-requests"


@pytest.fixture
async def installed(backend: SignedClient) -> SignedClient:
    await send_installation(backend, "installation", installation_payload("created"))
    return backend


def _event(payload: dict[str, Any], delivery_id: str | None = None) -> dict[str, Any]:
    return pull_request_event(delivery_id or str(uuid.uuid4()), payload).model_dump(mode="json")


def _story(number: int) -> list[dict[str, Any]]:
    """What one pull request goes through: gated, pushed to, closed, reopened; a bot's PR beside it."""
    return [
        pull_request_payload("opened", number=number, author_login=f"new-{number}", author_id=80_000 + number),
        pull_request_payload("synchronize", number=number, author_login=f"new-{number}", author_id=80_000 + number),
        pull_request_payload("closed", number=number, author_login=f"new-{number}", author_id=80_000 + number,
                             state="closed"),
        pull_request_payload("reopened", number=number, author_login=f"new-{number}", author_id=80_000 + number),
        pull_request_payload("opened", number=number + 1, author_login="dependabot[bot]", author_id=49_699_333,
                             author_type="Bot"),
    ]


def _comparable(answer: dict[str, Any]) -> tuple[Any, ...]:
    return (answer["status"], answer["decision"], answer["reason"], len(answer["enqueued_action_ids"]),
            answer["challenge_id"] is not None)


async def _rows(db: asyncpg.Pool, sql: str, *args: Any) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return list(await conn.fetch(sql, *args))


async def test_each_delivery_gets_what_the_single_call_gives_it_in_order(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    single = [await send_pr(installed, payload) for payload in _story(10)]
    events = [_event(payload) for payload in _story(20)]
    events.append(dict(events[0]))  # the first delivery again, in the same call
    answer = await installed.post_json(GROUP_PATH, {"events": events})

    items = answer["results"]
    assert [item["response"]["delivery_id"] for item in items] == [e["delivery_id"] for e in events]
    assert all(item["error"] is None for item in items)
    responses = [item["response"] for item in items]
    assert [_comparable(r) for r in responses[:-1]] == [_comparable(r) for r in single]
    assert responses[-1]["status"] == "DUPLICATE"
    # The story moved the gate through its states (not all ACCEPTED alike): it exercises order.
    assert len({_comparable(r) for r in single}) >= 3

    # What each wrote matches too: the same challenges and actions per pull request, by type and state.
    def shape(number: int) -> str:
        return f"""SELECT c.status AS challenge, array_agg(a.action_type ORDER BY a.action_id) AS actions
                   FROM challenges c LEFT JOIN bot_actions a USING (challenge_id)
                   WHERE c.pr_number = {number} GROUP BY c.challenge_id ORDER BY c.challenge_id"""

    assert [dict(r) for r in await _rows(db, shape(20))] == [dict(r) for r in await _rows(db, shape(10))]
    deliveries = await _rows(db, "SELECT delivery_id FROM webhook_deliveries WHERE delivery_id = ANY($1::text[])",
                             [e["delivery_id"] for e in events])
    assert len(deliveries) == len(events) - 1


async def test_metrics_count_each_delivery_of_a_group(installed: SignedClient) -> None:
    before = await scrape(installed)
    events = [_event(pull_request_payload("opened", number=200 + n, author_login=f"m-{n}", author_id=81_000 + n))
              for n in range(3)]
    await installed.post_json(GROUP_PATH, {"events": events})
    after = await scrape(installed)
    name, labels = "backend_webhook_ingests_total", {"event": "pull_request", "status": "ACCEPTED",
                                                     "decision": "GATE"}
    assert value(after, name, **labels) - value(before, name, **labels) == 3
    enqueued = "backend_actions_enqueued_total"
    comments = {"action_type": "UPSERT_PR_COMMENT", "source": "webhook"}
    assert value(after, enqueued, **comments) - value(before, enqueued, **comments) == 3


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"events": []}, "validation_error"),
        ({}, "validation_error"),
        ({"events": "nope"}, "validation_error"),
        ("not an object", "validation_error"),
    ],
)
async def test_a_call_that_does_not_validate_is_422(
    installed: SignedClient, db: asyncpg.Pool, body: Any, error: str
) -> None:
    resp = await installed.post(GROUP_PATH, body)
    assert resp.status == 422
    assert (await resp.json())["error"] == error


async def test_one_invalid_event_refuses_the_whole_call_and_writes_nothing(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    good = [_event(pull_request_payload("opened", number=300 + n, author_id=82_000 + n)) for n in range(3)]
    bad = dict(good[1], pull_request={**good[1]["pull_request"], "number": 0})
    resp = await installed.post(GROUP_PATH, {"events": [good[0], bad, good[2]]})
    assert resp.status == 422
    details = (await resp.json())["details"]
    assert details[0]["loc"][:3] == ["events", 1, "pull_request"]
    assert await _rows(db, "SELECT 1 FROM webhook_deliveries WHERE event_name = 'pull_request'") == []

    too_many = [_event(pull_request_payload("opened", number=400 + n, author_id=83_000 + n))
                for n in range(PULL_REQUEST_EVENTS_MAX + 1)]
    resp = await installed.post(GROUP_PATH, {"events": too_many})
    assert resp.status == 422
    assert await _rows(db, "SELECT 1 FROM webhook_deliveries WHERE event_name = 'pull_request'") == []


async def test_unsigned_or_replayed_group_is_401(installed: SignedClient, db: asyncpg.Pool) -> None:
    events = [_event(pull_request_payload("opened", number=500, author_id=84_000))]
    resp = await installed.post(GROUP_PATH, {"events": events}, sign_with="not-the-secret")
    assert resp.status == 401
    nonce = uuid.uuid4().hex
    assert (await installed.post(GROUP_PATH, {"events": events}, nonce=nonce)).status == 200
    resp = await installed.post(GROUP_PATH, {"events": events}, nonce=nonce)
    assert resp.status == 401
    assert len(await _rows(db, "SELECT 1 FROM webhook_deliveries WHERE event_name = 'pull_request'")) == 1


@pytest.fixture
async def refuse_boom(db: asyncpg.Pool) -> Any:
    """PostgreSQL itself refuses to record deliveries whose id starts with `boom` (a real error, raised
    inside the backend's transaction)."""
    async with db.acquire() as conn:
        await conn.execute("""
            CREATE FUNCTION test_refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.delivery_id LIKE 'boom%' THEN RAISE EXCEPTION 'refused by the test'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_refuse_boom BEFORE INSERT ON webhook_deliveries
                FOR EACH ROW EXECUTE FUNCTION test_refuse_boom();""")
    yield
    async with db.acquire() as conn:
        await conn.execute("DROP TRIGGER IF EXISTS test_refuse_boom ON webhook_deliveries;"
                           "DROP FUNCTION IF EXISTS test_refuse_boom()")


async def test_a_delivery_the_database_refuses_gets_an_error_item_and_its_neighbours_are_written(
    installed: SignedClient, db: asyncpg.Pool, refuse_boom: None
) -> None:
    events = [_event(pull_request_payload("opened", number=600 + n, author_login=f"b-{n}", author_id=85_000 + n),
                     delivery_id=f"boom-{n}" if n == 2 else None)
              for n in range(5)]
    answer = await installed.post_json(GROUP_PATH, {"events": events})
    items = answer["results"]
    assert items[2]["response"] is None
    assert items[2]["error"]["error"] == "unavailable"
    assert [item["response"]["status"] for n, item in enumerate(items) if n != 2] == ["ACCEPTED"] * 4
    written = await _rows(db, "SELECT delivery_id FROM webhook_deliveries WHERE event_name = 'pull_request'")
    assert {r["delivery_id"] for r in written} == {e["delivery_id"] for n, e in enumerate(events) if n != 2}
    numbers = await _rows(db, "SELECT pr_number FROM challenges ORDER BY pr_number")
    assert [r["pr_number"] for r in numbers] == [600, 601, 603, 604]

    async with db.acquire() as conn:  # the database takes it again: the retried delivery is written once
        await conn.execute("DROP TRIGGER test_refuse_boom ON webhook_deliveries")
    again = await installed.post_json(GROUP_PATH, {"events": [events[2]]})
    assert again["results"][0]["response"]["status"] == "ACCEPTED"
    assert len(await _rows(db, "SELECT 1 FROM challenges WHERE pr_number = 602")) == 1
