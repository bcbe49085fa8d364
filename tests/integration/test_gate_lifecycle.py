"""Deadlines, commit statuses, synchronize, reopen-after-timeout and re-evaluation, on real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from backend_api.challenges import messages
from backend_api.challenges.tokens import hash_token
from backend_api.gate.deadlines import sweep_all, sweep_deadlines
from backend_api.store import challenges, repo_settings
from bot_worker.providers.github.normalize import pull_request_event
from shared_contracts.owner import RepoSettings
from tests.support.ingest import PR_PATH, send_installation, send_pr
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.signed import SignedClient

SHA2 = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
async def installed(backend: SignedClient) -> SignedClient:
    await send_installation(backend, "installation", installation_payload("created"))
    return backend


async def rows(db: asyncpg.Pool, sql: str, *args: object) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return list(await conn.fetch(sql, *args))


async def expire_deadlines(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await conn.execute("UPDATE challenges SET deadline_at = now() - interval '1 second' WHERE status = 'PENDING'")


async def sweep(db: asyncpg.Pool) -> int:
    return await sweep_all(db, public_url="http://prgate.test", max_attempts=8)


async def actions_after(db: asyncpg.Pool, action_id: int) -> list[asyncpg.Record]:
    return await rows(db, "SELECT * FROM bot_actions WHERE action_id > $1 ORDER BY action_id", action_id)


async def last_action_id(db: asyncpg.Pool) -> int:
    async with db.acquire() as conn:
        return int(await conn.fetchval("SELECT coalesce(max(action_id), 0) FROM bot_actions"))


async def test_timeout_closes_with_a_fresh_link_and_fails_the_status(installed: SignedClient, db: asyncpg.Pool) -> None:
    await send_pr(installed, pull_request_payload("opened"))
    assert await sweep(db) == 0  # not due yet
    mark = await last_action_id(db)
    await expire_deadlines(db)
    assert await sweep(db) == 1
    [challenge] = await rows(db, "SELECT * FROM challenges")
    assert (challenge["status"], challenge["resolution"]) == ("TIMED_OUT", messages.RESOLUTION_TIMED_OUT_CLOSED)
    close, status = await actions_after(db, mark)
    assert close["action_type"] == "CLOSE_PR_WITH_COMMENT"
    body = close["payload"]["body"]
    assert body.startswith(messages.PR_COMMENT_MARKER)
    assert "was closed" in body
    token = body.split("http://prgate.test/verify/")[1].split()[0]
    assert hash_token(token) == challenge["token_hash"]  # the new link works; the old one no longer does
    assert (status["action_type"], status["payload"]["state"]) == ("SET_COMMIT_STATUS", "failure")
    assert status["payload"]["description"] == messages.STATUS_TIMED_OUT
    assert await sweep(db) == 0  # nothing is timed out twice


async def test_warn_only_comments_and_fails_status_but_never_closes(installed: SignedClient, db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await repo_settings.put(conn, 5001, RepoSettings(warn_only=True))
    gated = await send_pr(installed, pull_request_payload("opened"))
    [comment] = await rows(db, "SELECT payload FROM bot_actions WHERE action_id = $1", gated["enqueued_action_ids"][0])
    assert "warn-only" in comment["payload"]["body"]
    mark = await last_action_id(db)
    await expire_deadlines(db)
    assert await sweep(db) == 1
    types = [a["action_type"] for a in await actions_after(db, mark)]
    assert types == ["UPSERT_PR_COMMENT", "SET_COMMIT_STATUS"]
    assert await rows(db, "SELECT 1 FROM bot_actions WHERE action_type = 'CLOSE_PR_WITH_COMMENT'") == []
    [challenge] = await rows(db, "SELECT status, resolution FROM challenges")
    assert (challenge["status"], challenge["resolution"]) == ("TIMED_OUT", messages.RESOLUTION_TIMED_OUT_WARNED)


async def test_concurrent_sweepers_time_out_each_challenge_once(installed: SignedClient, db: asyncpg.Pool) -> None:
    await asyncio.gather(*(send_pr(installed, pull_request_payload("opened", number=n, author_id=10_000 + n))
                           for n in range(1, 121)))
    await expire_deadlines(db)
    counts = await asyncio.gather(*(sweep_deadlines(db, public_url="http://x", max_attempts=8, batch=7)
                                    for _ in range(40)))
    counts_rest = await sweep(db)
    assert sum(counts) + counts_rest == 120
    closes = await rows(db, "SELECT pr_number FROM bot_actions WHERE action_type = 'CLOSE_PR_WITH_COMMENT'")
    assert sorted(r["pr_number"] for r in closes) == list(range(1, 121))


async def test_gate_comment_states_the_deadline_as_an_absolute_time(installed: SignedClient, db: asyncpg.Pool) -> None:
    await send_pr(installed, pull_request_payload("opened"))
    [challenge] = await rows(db, "SELECT deadline_at FROM challenges")
    [comment] = await rows(db, "SELECT payload FROM bot_actions WHERE action_type = 'UPSERT_PR_COMMENT'")
    assert messages.format_deadline(challenge["deadline_at"]) in comment["payload"]["body"]
    assert "UTC" in comment["payload"]["body"]


async def test_pr_reopened_by_a_maintainer_after_timeout_is_not_closed_again(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    await send_pr(installed, pull_request_payload("opened"))
    await expire_deadlines(db)
    await sweep(db)
    await send_pr(installed, pull_request_payload("closed"))  # prgate's own close arrives as a webhook
    reopen = pull_request_payload("reopened")
    reopen["sender"].update({"login": "maintainer", "id": 1})
    # The receiver asks GitHub for the reopener's permission (test_reopen_permission.py does it for real).
    event = pull_request_event("reopen-by-maintainer", reopen).model_copy(update={"sender_permission": "write"})
    resp = await installed.post_json(PR_PATH, event.model_dump(mode="json"))
    assert (resp["decision"], resp["reason"]) == ("EXEMPT", "reopened by maintainer after the deadline")
    statuses = [r["status"] for r in await rows(db, "SELECT status FROM challenges ORDER BY challenge_id")]
    assert statuses == ["TIMED_OUT", "EXEMPTED"]
    [comment, status] = await actions_after(db, resp["enqueued_action_ids"][0] - 1)
    assert comment["payload"]["body"] == messages.reopened_after_timeout_comment("newcomer", "maintainer")
    assert status["payload"]["state"] == "success"
    # Nothing is pending, so no deadline can close it again; new commits keep the status green.
    await expire_deadlines(db)
    assert await sweep(db) == 0
    sync = await send_pr(installed, pull_request_payload("synchronize", head_sha=SHA2))
    assert sync["decision"] == "EXEMPT"
    [new_status] = await actions_after(db, sync["enqueued_action_ids"][0] - 1)
    assert (new_status["payload"]["sha"], new_status["payload"]["state"]) == (SHA2, "success")


async def test_pr_reopened_by_its_author_after_timeout_is_gated_again(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    await send_pr(installed, pull_request_payload("opened"))
    await expire_deadlines(db)
    await sweep(db)
    resp = await send_pr(installed, pull_request_payload("reopened"))  # sender is the author
    assert resp["decision"] == "GATE"
    statuses = [r["status"] for r in await rows(db, "SELECT status FROM challenges ORDER BY challenge_id")]
    assert statuses == ["TIMED_OUT", "PENDING"]


async def test_synchronize_moves_the_pending_status_to_the_new_head(installed: SignedClient, db: asyncpg.Pool) -> None:
    await send_pr(installed, pull_request_payload("opened"))
    resp = await send_pr(installed, pull_request_payload("synchronize", head_sha=SHA2))
    assert resp["decision"] == "GATE"
    [status] = await actions_after(db, resp["enqueued_action_ids"][0] - 1)
    assert status["action_type"] == "SET_COMMIT_STATUS"
    assert (status["payload"]["sha"], status["payload"]["state"]) == (SHA2, "pending")
    [challenge] = await rows(db, "SELECT head_sha FROM challenges")
    assert challenge["head_sha"] == SHA2  # the timeout's failure status will land on the new head
    assert len(await rows(db, "SELECT 1 FROM bot_actions WHERE action_type = 'UPSERT_PR_COMMENT'")) == 1


async def test_re_evaluation_resolves_a_pending_challenge_when_the_author_was_verified_meanwhile(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    await send_pr(installed, pull_request_payload("opened"))
    async with db.acquire() as conn:
        await challenges.record_verified(conn, 1001, 9001, "newcomer", None)
    resp = await send_pr(installed, pull_request_payload("synchronize", head_sha=SHA2))
    assert resp["decision"] == "VERIFIED_NOOP"
    [challenge] = await rows(db, "SELECT status FROM challenges")
    assert challenge["status"] == "VERIFIED"  # so the sweeper can never close it
    comment, status = await actions_after(db, resp["enqueued_action_ids"][0] - 1)
    assert comment["payload"]["body"] == messages.verified_comment("newcomer")
    assert (status["payload"]["sha"], status["payload"]["state"]) == (SHA2, "success")


async def test_re_evaluation_resolves_a_pending_challenge_when_the_author_became_exempt(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    await send_pr(installed, pull_request_payload("opened"))
    async with db.acquire() as conn:
        await repo_settings.put(conn, 5001, RepoSettings(whitelist_logins=["newcomer"], whitelist_user_ids=[9001]))
    resp = await send_pr(installed, pull_request_payload("synchronize", head_sha=SHA2))
    assert resp["decision"] == "EXEMPT"
    [challenge] = await rows(db, "SELECT status FROM challenges")
    assert challenge["status"] == "EXEMPTED"


async def test_draft_conversion_keeps_a_pending_challenge(installed: SignedClient, db: asyncpg.Pool) -> None:
    await send_pr(installed, pull_request_payload("opened"))
    resp = await send_pr(installed, pull_request_payload("converted_to_draft", draft=True))
    assert resp["status"] == "IGNORED"
    [challenge] = await rows(db, "SELECT status FROM challenges")
    assert challenge["status"] == "PENDING"


async def test_sweeper_never_closes_a_pr_whose_author_verified_meanwhile(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    """The author verified (another PR) while this one was being gated: let it through at the deadline."""
    await send_pr(installed, pull_request_payload("opened"))
    async with db.acquire() as conn:
        await challenges.record_verified(conn, 1001, 9001, "newcomer", None)
    mark = await last_action_id(db)
    await expire_deadlines(db)
    assert await sweep(db) == 1
    [challenge] = await rows(db, "SELECT status FROM challenges")
    assert challenge["status"] == "VERIFIED"
    comment, status = await actions_after(db, mark)
    assert comment["payload"]["body"] == messages.verified_comment("newcomer")
    assert status["payload"]["state"] == "success"
    assert await rows(db, "SELECT 1 FROM bot_actions WHERE action_type = 'CLOSE_PR_WITH_COMMENT'") == []
