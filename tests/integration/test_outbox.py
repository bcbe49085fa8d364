from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backend_api import maintenance
from backend_api.store import outbox
from tests.support.ingest import send_installation
from tests.support.outbox import CLAIM, expire_leases, install, make_due, result_path, seed_actions
from tests.support.payloads import installation_payload
from tests.support.signed import SignedClient


async def claim(backend: SignedClient, worker: str = "w1", n: int = 10, **extra: Any) -> list[dict[str, Any]]:
    body = {"worker_id": worker, "max_actions": n, "lease_seconds": 60, **extra}
    resp = await backend.post_json(CLAIM, body)
    return list(resp["actions"])


async def report(
    backend: SignedClient, action: dict[str, Any], outcome: str, worker: str = "w1", expect: int = 200, **extra: Any
) -> dict[str, Any]:
    body = {"worker_id": worker, "attempt": action["attempt"], "outcome": outcome, **extra}
    result: dict[str, Any] = await backend.post_json(result_path(action["action_id"]), body, expect=expect)
    return result


async def _row(db: asyncpg.Pool, action_id: int) -> asyncpg.Record:
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM bot_actions WHERE action_id = $1", action_id)
    assert row is not None
    return row


async def test_claim_carries_everything_needed_to_execute(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    [action_id] = await seed_actions(db, 1)
    [action] = await claim(backend)
    assert action["action_id"] == action_id
    assert action["attempt"] == 1
    assert action["provider"] == "github"
    assert action["action_type"] == "UPSERT_PR_COMMENT"
    assert (action["installation_id"], action["repo_full_name"], action["github_pr_number"]) == (
        1001, "octo-org/widgets", 1
    )
    assert action["payload"] == {"marker": "<!-- m -->", "body": "<!-- m -->\nbody 0"}
    expires = datetime.fromisoformat(action["lease_expires_at"])
    assert timedelta(seconds=50) < expires - datetime.now(UTC) <= timedelta(seconds=61)
    row = await _row(db, action_id)
    assert (row["status"], row["lease_owner"]) == ("CLAIMED", "w1")
    assert await claim(backend, "w2") == []


async def test_claim_respects_max_actions(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    await seed_actions(db, 30)
    first = await claim(backend, n=25)
    second = await claim(backend, n=25)
    assert (len(first), len(second)) == (25, 5)
    assert not {a["action_id"] for a in first} & {a["action_id"] for a in second}


async def test_succeeded_marks_done(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    await seed_actions(db, 1)
    [action] = await claim(backend)
    resp = await report(backend, action, "SUCCEEDED")
    assert resp == {"action_id": action["action_id"], "status": "DONE", "next_attempt_at": None}
    row = await _row(db, action["action_id"])
    assert (row["status"], row["lease_owner"]) == ("DONE", None)
    assert row["completed_at"] is not None


async def test_retryable_requeues_with_backoff_honouring_retry_after(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    await seed_actions(db, 1)
    [action] = await claim(backend)
    resp = await report(backend, action, "RETRYABLE_FAILURE", error="502 from GitHub", retry_after_seconds=120)
    assert resp["status"] == "PENDING"
    next_at = datetime.fromisoformat(resp["next_attempt_at"])
    assert next_at - datetime.now(UTC) > timedelta(seconds=115)
    row = await _row(db, action["action_id"])
    assert (row["status"], row["last_error"], row["attempt"]) == ("PENDING", "502 from GitHub", 1)
    assert await claim(backend) == []  # not before its time
    await make_due(db)
    [again] = await claim(backend)
    assert again["attempt"] == 2


async def test_backoff_grows_with_attempts(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    await seed_actions(db, 1, max_attempts=20)
    delays = []
    for _ in range(6):
        [action] = await claim(backend)
        resp = await report(backend, action, "RETRYABLE_FAILURE", error="boom")
        delays.append((datetime.fromisoformat(resp["next_attempt_at"]) - datetime.now(UTC)).total_seconds())
        await make_due(db)
    # base 2 s, equal jitter: attempt n waits between 2**n / 2 and 2**n seconds.
    for n, delay in enumerate(delays, start=1):
        assert 2 ** (n - 1) / 2 - 1 <= delay <= 2 ** (n - 1) * 2 + 1, (n, delays)
    assert delays[-1] > delays[0]


async def test_retryable_on_last_attempt_fails_terminally(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    await seed_actions(db, 1, max_attempts=3)
    statuses = []
    for _ in range(3):
        [action] = await claim(backend)
        statuses.append((await report(backend, action, "RETRYABLE_FAILURE", error="still down"))["status"])
        await make_due(db)
    assert statuses == ["PENDING", "PENDING", "FAILED"]
    assert await claim(backend) == []
    row = await _row(db, action["action_id"])
    assert (row["status"], row["attempt"], row["last_error"]) == ("FAILED", 3, "still down")


async def test_failed_is_terminal(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    await seed_actions(db, 1)
    [action] = await claim(backend)
    resp = await report(backend, action, "FAILED", error="422 Validation Failed")
    assert resp["status"] == "FAILED"
    await make_due(db)
    assert await claim(backend) == []


async def test_result_from_other_worker_or_attempt_is_refused_and_changes_nothing(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    await install(backend)
    await seed_actions(db, 1)
    [action] = await claim(backend, "w1")
    before = await _row(db, action["action_id"])
    refused = await report(backend, action, "SUCCEEDED", worker="intruder", expect=409)
    assert refused["error"] == "stale_lease"
    stale_attempt = {**action, "attempt": action["attempt"] + 1}
    await report(backend, stale_attempt, "SUCCEEDED", expect=409)
    assert await _row(db, action["action_id"]) == before


async def test_lease_expiry_reclaims_with_next_attempt_and_refuses_the_old_worker(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    await install(backend)
    await seed_actions(db, 1)
    [first] = await claim(backend, "w1")
    await expire_leases(db)
    [second] = await claim(backend, "w2")
    assert second["action_id"] == first["action_id"]
    assert second["attempt"] == first["attempt"] + 1
    await report(backend, first, "SUCCEEDED", worker="w1", expect=409)
    assert (await report(backend, second, "SUCCEEDED", worker="w2"))["status"] == "DONE"


async def test_expired_lease_not_yet_reclaimed_still_accepts_its_result(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    await install(backend)
    await seed_actions(db, 1)
    [action] = await claim(backend, "w1")
    await expire_leases(db)
    assert (await report(backend, action, "SUCCEEDED", worker="w1"))["status"] == "DONE"


async def test_unknown_action_is_404(backend: SignedClient) -> None:
    resp = await backend.post(result_path(424242), {"worker_id": "w", "attempt": 1, "outcome": "SUCCEEDED"})
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


async def test_per_pr_order_holds_through_retries(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    comment, close = await seed_actions(db, 2, prs=1)
    [first] = await claim(backend, n=10)
    assert first["action_id"] == comment
    assert await claim(backend, n=10) == []  # the close waits for the comment
    await report(backend, first, "RETRYABLE_FAILURE", error="503")
    await make_due(db)
    [retry] = await claim(backend, n=10)
    assert retry["action_id"] == comment  # still first, the close still waits
    await report(backend, retry, "SUCCEEDED")
    [then] = await claim(backend, n=10)
    assert then["action_id"] == close


async def test_per_pr_order_waits_for_an_expired_lease_to_be_reclaimed(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    comment, _close = await seed_actions(db, 2, prs=1)
    await claim(backend, "w1")
    await expire_leases(db)
    claimed = await claim(backend, "w2", n=10)
    assert [a["action_id"] for a in claimed] == [comment]


async def test_suspended_installation_is_skipped_until_unsuspended(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend, 1001)
    await install(backend, 2002)
    await seed_actions(db, 3, installation_id=1001)
    other = await seed_actions(db, 2, installation_id=2002, repo="acme/x", repo_id=7001)
    await send_installation(backend, "installation", installation_payload("suspend", installation_id=1001))
    claimed = await claim(backend, n=10)
    assert sorted(a["action_id"] for a in claimed) == other
    await send_installation(backend, "installation", installation_payload("unsuspend", installation_id=1001))
    assert len(await claim(backend, n=10)) == 3


async def test_deleted_installation_actions_are_never_handed_out(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    [action_id] = await seed_actions(db, 1)
    await send_installation(backend, "installation", installation_payload("deleted"))
    assert await claim(backend) == []
    assert (await _row(db, action_id))["status"] == "CANCELLED"


async def test_long_poll_returns_when_an_action_is_enqueued(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    waiting = asyncio.create_task(claim(backend, wait_seconds=20))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    [action_id] = await seed_actions(db, 1)
    actions = await asyncio.wait_for(waiting, timeout=15)
    assert [a["action_id"] for a in actions] == [action_id]


async def test_long_poll_times_out_empty(backend: SignedClient) -> None:
    assert await claim(backend, wait_seconds=0.5) == []


async def test_exhausted_lease_is_failed_by_maintenance(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    [action_id] = await seed_actions(db, 1, max_attempts=1)
    await claim(backend)
    await expire_leases(db)
    assert await claim(backend) == []
    counts = await maintenance.run_once(db, public_url="http://prgate.test", max_attempts=8)
    assert counts["leases_failed"] == 1
    row = await _row(db, action_id)
    assert row["status"] == "FAILED"
    assert "lease expired" in row["last_error"]


@pytest.mark.parametrize("claimers", [8, 16])
async def test_concurrent_claimers_hand_out_every_action_exactly_once(
    backend: SignedClient, db: asyncpg.Pool, database_url: str, claimers: int
) -> None:
    """Claimers on separate connections drain 5,000 actions; counts, not timing, are asserted."""
    await install(backend)
    total = 5000
    ids = await seed_actions(db, total)
    seen: list[int] = []

    async def claimer(n: int) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            while True:
                rows = await outbox.claim(conn, f"w{n}", 7, 60)
                if not rows:
                    return
                seen.extend(r["action_id"] for r in rows)
                for r in rows:
                    applied = await outbox.apply_result(conn, r["action_id"], f"w{n}", r["attempt"],
                                                        outbox.Outcome.SUCCEEDED, 0, None)
                    assert applied is not None
        finally:
            await conn.close()

    await asyncio.gather(*(claimer(n) for n in range(claimers)))
    assert len(seen) == total
    assert sorted(seen) == ids
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM bot_actions WHERE status = 'DONE' AND attempt = 1") == total


async def test_concurrent_http_claimers_never_share_an_action(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    ids = await seed_actions(db, 600, prs=200)  # three actions per PR: ordering must hold too
    seen: list[int] = []
    last_done_per_pr: dict[int, int] = {}
    order_violations: list[tuple[int, int, int]] = []

    async def worker(n: int) -> None:
        while True:
            actions = await claim(backend, f"w{n}", n=5)
            if not actions:
                return
            for a in actions:
                pr = a["github_pr_number"]
                # An action may only be handed out after every earlier one of its PR finished.
                if last_done_per_pr.get(pr, 0) > a["action_id"]:
                    order_violations.append((pr, last_done_per_pr[pr], a["action_id"]))
                seen.append(a["action_id"])
                await report(backend, a, "SUCCEEDED", worker=f"w{n}")
                last_done_per_pr[pr] = a["action_id"]

    await asyncio.gather(*(worker(n) for n in range(8)))
    assert sorted(seen) == ids
    assert order_violations == []
    # Each PR's three actions were all handed out, in id order.
    assert len(last_done_per_pr) == 200


async def test_per_pr_order_is_by_repository_id_not_name(backend: SignedClient, db: asyncpg.Pool) -> None:
    # a/old renamed and a new a/old created: two repositories that share a name and a PR number.
    await install(backend)
    first = await seed_actions(db, 2, prs=1, repo="octo-org/old", repo_id=5001)
    second = await seed_actions(db, 2, prs=1, repo="octo-org/old", repo_id=5002)
    claimed = await claim(backend, "w1", n=10)
    # Each repository's first action is claimable: the namesake's queue neither blocks nor joins it.
    assert sorted((a["action_id"], a["repo_id"]) for a in claimed) == [(first[0], 5001), (second[0], 5002)]
