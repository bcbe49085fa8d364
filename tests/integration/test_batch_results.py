"""The batch result call: each result applied or refused exactly as alone, in one transaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.support.outbox import CLAIM, RESULTS, expire_leases, install, make_due, seed_actions
from tests.support.rows import snapshot
from tests.support.signed import SignedClient


async def claim(backend: SignedClient, worker: str = "w1", n: int = 10, **extra: Any) -> list[dict[str, Any]]:
    resp = await backend.post_json(CLAIM, {"worker_id": worker, "max_actions": n, "lease_seconds": 60, **extra})
    return list(resp["actions"])


def item(action: dict[str, Any], outcome: str, **extra: Any) -> dict[str, Any]:
    return {"action_id": action["action_id"], "attempt": action["attempt"], "outcome": outcome, **extra}


async def statuses(db: asyncpg.Pool) -> dict[int, tuple[str, str | None]]:
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT action_id, status, lease_owner FROM bot_actions")
    return {r["action_id"]: (r["status"], r["lease_owner"]) for r in rows}


async def test_each_outcome_is_applied_as_the_single_call_would(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    await seed_actions(db, 3, max_attempts=8)
    ok, retry, fail = await claim(backend)
    before = datetime.now(UTC)
    answer = await backend.post_json(RESULTS, {"worker_id": "w1", "results": [
        item(ok, "SUCCEEDED"),
        item(retry, "RETRYABLE_FAILURE", error="503", retry_after_seconds=120),
        item(fail, "FAILED", error="422 Validation Failed"),
    ]})
    by_id = {r["action_id"]: r for r in answer["results"]}
    assert [r["action_id"] for r in answer["results"]] == [ok["action_id"], retry["action_id"], fail["action_id"]]
    assert by_id[ok["action_id"]]["status"] == "DONE"
    assert by_id[fail["action_id"]]["status"] == "FAILED"
    assert by_id[retry["action_id"]]["status"] == "PENDING"
    next_at = datetime.fromisoformat(by_id[retry["action_id"]]["next_attempt_at"])
    assert next_at >= before + timedelta(seconds=119)  # retry_after honoured
    assert all(r["refused"] is None for r in answer["results"])
    assert await statuses(db) == {
        ok["action_id"]: ("DONE", None), retry["action_id"]: ("PENDING", None), fail["action_id"]: ("FAILED", None)
    }
    async with db.acquire() as conn:
        errors = dict(await conn.fetch("SELECT action_id, last_error FROM bot_actions"))
    assert errors[fail["action_id"]] == "422 Validation Failed"
    assert errors[ok["action_id"]] is None


async def test_stale_and_unknown_are_refused_one_by_one_and_the_rest_applied(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    await install(backend)
    await seed_actions(db, 3)
    first, second, third = await claim(backend, "w1")
    await expire_leases(db)
    reclaimed = await claim(backend, "w2", n=1)
    assert reclaimed[0]["action_id"] == first["action_id"]
    answer = await backend.post_json(RESULTS, {"worker_id": "w1", "results": [
        item(first, "SUCCEEDED"),  # w2 holds it now
        item(second, "SUCCEEDED"),
        {"action_id": 987654, "attempt": 1, "outcome": "SUCCEEDED"},
        item(third, "RETRYABLE_FAILURE"),
    ]})
    assert [(r["action_id"], r["status"], r["refused"]) for r in answer["results"]] == [
        (first["action_id"], None, "stale_lease"),
        (second["action_id"], "DONE", None),
        (987654, None, "unknown_action"),
        (third["action_id"], "PENDING", None),
    ]
    assert (await statuses(db))[first["action_id"]] == ("CLAIMED", "w2")


async def test_a_batch_with_a_refused_attempt_number_changes_only_the_others(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    await install(backend)
    await seed_actions(db, 2)
    a, b = await claim(backend)
    answer = await backend.post_json(RESULTS, {"worker_id": "w1", "results": [
        {**item(a, "SUCCEEDED"), "attempt": a["attempt"] + 1}, item(b, "SUCCEEDED"),
    ]})
    assert [r["refused"] for r in answer["results"]] == ["stale_lease", None]
    assert (await statuses(db))[a["action_id"]] == ("CLAIMED", "w1")


@pytest.mark.parametrize("results", [
    [],
    [{"action_id": 1, "attempt": 1, "outcome": "SUCCEEDED"}] * 2,  # one action twice
    [{"action_id": i, "attempt": 1, "outcome": "SUCCEEDED"} for i in range(1, 102)],  # over 100
    [{"action_id": 1, "attempt": 0, "outcome": "SUCCEEDED"}],
    [{"action_id": 1, "attempt": 1, "outcome": "MAYBE"}],
])
async def test_invalid_batches_are_422_and_change_nothing(
    backend: SignedClient, db: asyncpg.Pool, results: list[dict[str, Any]]
) -> None:
    await install(backend)
    await seed_actions(db, 1)
    await claim(backend)
    before = await snapshot(db)
    resp = await backend.post(RESULTS, {"worker_id": "w1", "results": results})
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"] == "validation_error"
    assert await snapshot(db) == before


async def test_a_finished_action_wakes_a_long_poll_waiting_for_its_successor(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    await install(backend)
    await seed_actions(db, 2, prs=1)  # the second waits for the first (per-PR order)
    [first] = await claim(backend, "w1")
    waiting = asyncio.create_task(claim(backend, "w2", wait_seconds=10))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await backend.post_json(RESULTS, {"worker_id": "w1", "results": [item(first, "SUCCEEDED")]})
    [successor] = await asyncio.wait_for(waiting, timeout=5)
    assert successor["action_id"] == first["action_id"] + 1


async def test_retryable_batch_result_is_claimable_again_after_backoff(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    await seed_actions(db, 1, max_attempts=2)
    [action] = await claim(backend)
    await backend.post_json(RESULTS, {"worker_id": "w1", "results": [item(action, "RETRYABLE_FAILURE")]})
    await make_due(db)
    [again] = await claim(backend)
    assert again["attempt"] == 2
    answer = await backend.post_json(RESULTS, {"worker_id": "w1", "results": [item(again, "RETRYABLE_FAILURE")]})
    assert answer["results"][0]["status"] == "FAILED"  # the last attempt: terminal


async def test_batch_results_are_counted_per_action_in_metrics(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    await seed_actions(db, 2)
    a, b = await claim(backend)
    await backend.post_json(RESULTS, {"worker_id": "w1", "results": [
        item(a, "SUCCEEDED"), item(b, "RETRYABLE_FAILURE"), {"action_id": 987654, "attempt": 1, "outcome": "FAILED"},
    ]})
    resp = await backend.client.get("/metrics")
    text = await resp.text()
    assert 'backend_action_results_total{outcome="SUCCEEDED",status="DONE"} 1.0' in text
    assert 'backend_action_results_total{outcome="RETRYABLE_FAILURE",status="PENDING"} 1.0' in text
    assert 'backend_action_results_total{outcome="FAILED",status="unknown_action"} 1.0' in text
