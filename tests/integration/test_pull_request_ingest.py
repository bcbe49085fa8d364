from __future__ import annotations

import asyncpg
import pytest

from backend_api.challenges import messages
from backend_api.gate import parking
from backend_api.store import challenges, repo_settings
from shared_contracts.owner import RepoSettings
from tests.support.ingest import send_installation, send_pr
from tests.support.outbox import CLAIM
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.signed import SignedClient


@pytest.fixture
async def installed(backend: SignedClient) -> SignedClient:
    await send_installation(backend, "installation", installation_payload("created"))
    return backend


async def _actions(db: asyncpg.Pool) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return list(await conn.fetch("SELECT * FROM bot_actions ORDER BY action_id"))


async def _comments(db: asyncpg.Pool) -> list[asyncpg.Record]:
    return [a for a in await _actions(db) if a["action_type"] == "UPSERT_PR_COMMENT"]


async def _statuses(db: asyncpg.Pool) -> list[tuple[str, str]]:
    """(state, description) of every commit status enqueued, in order."""
    return [(a["payload"]["state"], a["payload"]["description"])
            for a in await _actions(db) if a["action_type"] == "SET_COMMIT_STATUS"]


async def _challenges(db: asyncpg.Pool) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return list(await conn.fetch("SELECT * FROM challenges ORDER BY challenge_id"))


async def test_unverified_author_is_gated_with_comment_and_challenge(installed: SignedClient, db: asyncpg.Pool) -> None:
    resp = await send_pr(installed, pull_request_payload("opened"), "pr-1")
    assert resp["status"] == "ACCEPTED"
    assert resp["decision"] == "GATE"
    [challenge] = await _challenges(db)
    assert resp["challenge_id"] == challenge["challenge_id"]
    assert challenge["status"] == "PENDING"
    assert (challenge["author_login"], challenge["pr_number"]) == ("newcomer", 7)
    # Deadline defaults to 72 h after the decision.
    hours = (challenge["deadline_at"] - challenge["created_at"]).total_seconds() / 3600
    assert 71.9 < hours < 72.1
    action, status = await _actions(db)
    assert resp["enqueued_action_ids"] == [action["action_id"], status["action_id"]]
    assert action["action_type"] == "UPSERT_PR_COMMENT"
    # The comment first, then a pending commit status on the head, linking to the challenge page.
    assert status["action_type"] == "SET_COMMIT_STATUS"
    assert status["payload"]["sha"] == "0123456789abcdef0123456789abcdef01234567"
    assert (status["payload"]["state"], status["payload"]["context"]) == ("pending", "prgate")
    assert status["payload"]["target_url"].startswith("http://prgate.test/verify/")
    assert (action["installation_id"], action["repo_full_name"], action["pr_number"]) == (1001, "octo-org/widgets", 7)
    assert action["payload"]["marker"] == messages.PR_COMMENT_MARKER
    body = action["payload"]["body"]
    assert body.startswith(messages.PR_COMMENT_MARKER)
    assert "@newcomer" in body
    assert "http://prgate.test/verify/" in body
    assert messages.format_deadline(challenge["deadline_at"]) in body
    # Only a hash of the link token is stored.
    token = body.split("http://prgate.test/verify/")[1].split()[0]
    assert challenge["token_hash"] != token
    assert len(challenge["token_hash"]) == 64


async def test_duplicate_delivery_returns_original_decision_and_enqueues_nothing(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    first = await send_pr(installed, pull_request_payload("opened"), "pr-1")
    again = await send_pr(installed, pull_request_payload("opened"), "pr-1")
    assert again["status"] == "DUPLICATE"
    assert again["decision"] == "GATE"
    assert again["challenge_id"] == first["challenge_id"]
    assert again["enqueued_action_ids"] == []
    assert len(await _actions(db)) == 2
    assert len(await _challenges(db)) == 1


async def test_second_opened_delivery_for_same_pr_keeps_one_pending_challenge(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    await send_pr(installed, pull_request_payload("opened"))
    resp = await send_pr(installed, pull_request_payload("reopened"))
    assert resp["decision"] == "GATE"
    assert len(resp["enqueued_action_ids"]) == 1  # only the status again, no second comment
    assert len(await _challenges(db)) == 1
    assert len(await _comments(db)) == 1


async def test_unknown_installation_is_parked_not_ignored(backend: SignedClient, db: asyncpg.Pool) -> None:
    # docs/security.md, "A pull request that arrives before its installation is never gated": not a final answer;
    # tests/integration/test_parked_events.py follows it up.
    resp = await send_pr(backend, pull_request_payload("opened", installation_id=999))
    assert (resp["status"], resp["reason"]) == ("PARKED", parking.PARKED_REASON)
    assert await _actions(db) == []
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM webhook_deliveries") == "PARKED"


@pytest.mark.parametrize("association", ["OWNER", "MEMBER", "COLLABORATOR"])
async def test_trusted_associations_are_exempt_with_comment(
    installed: SignedClient, db: asyncpg.Pool, association: str
) -> None:
    resp = await send_pr(installed, pull_request_payload("opened", association=association))
    assert resp["decision"] == "EXEMPT"
    assert await _challenges(db) == []
    [action] = await _comments(db)
    assert action["payload"]["body"] == messages.exempt_comment("newcomer")
    assert await _statuses(db) == [("success", messages.STATUS_EXEMPT)]


async def test_whitelisted_login_is_exempt_and_silent_when_configured(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    async with db.acquire() as conn:
        await repo_settings.put(conn, 5001, RepoSettings(
            whitelist_logins=["NewComer"], whitelist_user_ids=[9001], exempt_comment=False
        ))
    resp = await send_pr(installed, pull_request_payload("opened"))
    assert (resp["decision"], resp["reason"]) == ("EXEMPT", "whitelisted login")
    assert await _comments(db) == []
    assert await _statuses(db) == [("success", messages.STATUS_EXEMPT)]


async def test_first_time_contributor_association_is_gated(installed: SignedClient) -> None:
    resp = await send_pr(installed, pull_request_payload("opened", association="FIRST_TIME_CONTRIBUTOR"))
    assert resp["decision"] == "GATE"


@pytest.mark.parametrize(("login", "kind"), [("dependabot[bot]", "Bot"), ("renovate[bot]", "User")])
async def test_bot_authors_are_ignored(installed: SignedClient, db: asyncpg.Pool, login: str, kind: str) -> None:
    resp = await send_pr(installed, pull_request_payload("opened", author_login=login, author_type=kind))
    assert (resp["status"], resp["reason"]) == ("IGNORED", "bot author")
    assert await _actions(db) == []


async def test_bots_are_gated_when_bot_exemption_is_off(installed: SignedClient, db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await repo_settings.put(conn, 5001, RepoSettings(exempt_bots=False))
    resp = await send_pr(installed, pull_request_payload("opened", author_login="x[bot]", author_type="Bot"))
    assert resp["decision"] == "GATE"


async def test_verified_author_is_a_noop(installed: SignedClient, db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await challenges.record_verified(conn, 1001, 9001, "newcomer", None)
    resp = await send_pr(installed, pull_request_payload("opened"))
    assert resp["decision"] == "VERIFIED_NOOP"
    assert await _comments(db) == []
    assert await _statuses(db) == [("success", messages.STATUS_VERIFIED)]
    # Verification is per installation: the same author elsewhere is still gated.
    await send_installation(
        installed, "installation", installation_payload("created", installation_id=2002, repos=[(7001, "acme/x")])
    )
    other = await send_pr(
        installed, pull_request_payload("opened", installation_id=2002, repo_id=7001, full_name="acme/x")
    )
    assert other["decision"] == "GATE"


async def test_draft_is_deferred_until_ready_for_review(installed: SignedClient, db: asyncpg.Pool) -> None:
    resp = await send_pr(installed, pull_request_payload("opened", draft=True))
    assert resp["decision"] == "DRAFT_DEFERRED"
    assert await _actions(db) == []
    ready = await send_pr(installed, pull_request_payload("ready_for_review"))
    assert ready["decision"] == "GATE"
    assert len(await _comments(db)) == 1


async def test_drafts_are_gated_when_configured(installed: SignedClient, db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await repo_settings.put(conn, 5001, RepoSettings(gate_drafts=True, deadline_seconds=3600))
    resp = await send_pr(installed, pull_request_payload("opened", draft=True))
    assert resp["decision"] == "GATE"
    [challenge] = await _challenges(db)
    assert (challenge["deadline_at"] - challenge["created_at"]).total_seconds() == pytest.approx(3600, abs=5)


async def test_closed_cancels_pending_challenge(installed: SignedClient, db: asyncpg.Pool) -> None:
    opened = await send_pr(installed, pull_request_payload("opened"))
    closed = await send_pr(installed, pull_request_payload("closed"))
    assert (closed["status"], closed["decision"]) == ("ACCEPTED", "CANCELLED")
    assert closed["challenge_id"] == opened["challenge_id"]
    [challenge] = await _challenges(db)
    assert challenge["status"] == "CANCELLED"
    # Closing again has nothing to cancel.
    again = await send_pr(installed, pull_request_payload("closed"))
    assert again["status"] == "IGNORED"


async def test_closed_cancels_the_challenges_actions_no_worker_has_taken(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    """A comment and a status queued for a PR closed before a worker ran them would land on a closed PR."""
    await send_pr(installed, pull_request_payload("opened"))
    other = await send_pr(installed, pull_request_payload("opened", number=8, author_id=9002))
    claim = {"worker_id": "w1", "max_actions": 1, "lease_seconds": 60, "wait_seconds": 0}
    [taken] = (await installed.post_json(CLAIM, claim))["actions"]  # PR 7's comment, first in line
    await send_pr(installed, pull_request_payload("closed"))
    by_id = {a["action_id"]: a for a in await _actions(db)}
    assert by_id[taken["action_id"]]["status"] == "CLAIMED"  # in a worker's hands: its lease is honoured
    pr7 = [a for a in by_id.values() if a["pr_number"] == 7 and a["action_id"] != taken["action_id"]]
    assert [(a["action_type"], a["status"], a["last_error"]) for a in pr7] == [
        ("SET_COMMIT_STATUS", "CANCELLED", "pull request closed")
    ]
    # Another PR's actions are untouched.
    assert {by_id[i]["status"] for i in other["enqueued_action_ids"]} == {"PENDING"}
    # Reopened: a new challenge with actions of its own, which run.
    reopened = await send_pr(installed, pull_request_payload("reopened"))
    assert reopened["decision"] == "GATE"
    assert {a["status"] for a in await _actions(db) if a["action_id"] in reopened["enqueued_action_ids"]} == {
        "PENDING"
    }


async def test_reopened_re_evaluates(installed: SignedClient, db: asyncpg.Pool) -> None:
    await send_pr(installed, pull_request_payload("opened"))
    await send_pr(installed, pull_request_payload("closed"))
    reopened = await send_pr(installed, pull_request_payload("reopened"))
    assert reopened["decision"] == "GATE"
    statuses = [c["status"] for c in await _challenges(db)]
    assert statuses == ["CANCELLED", "PENDING"]


async def test_uninteresting_actions_are_ignored(installed: SignedClient, db: asyncpg.Pool) -> None:
    resp = await send_pr(installed, pull_request_payload("labeled"))
    assert resp["status"] == "IGNORED"
    assert await _actions(db) == []


async def test_all_repositories_installation_learns_repos_from_pull_requests(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    await send_installation(backend, "installation", installation_payload("created", selection="all", repos=[]))
    resp = await send_pr(backend, pull_request_payload("opened", repo_id=8001, full_name="octo-org/new-repo"))
    assert resp["decision"] == "GATE"
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT full_name FROM github_installation_repositories") == "octo-org/new-repo"


async def test_concurrent_deliveries_for_one_pr_create_one_challenge(installed: SignedClient, db: asyncpg.Pool) -> None:
    import asyncio

    results = await asyncio.gather(*(send_pr(installed, pull_request_payload("opened")) for _ in range(20)))
    assert {r["decision"] for r in results} == {"GATE"}
    assert len(await _challenges(db)) == 1
    assert len(await _comments(db)) == 1


async def test_same_delivery_posted_concurrently_is_processed_once(installed: SignedClient, db: asyncpg.Pool) -> None:
    import asyncio

    results = await asyncio.gather(*(send_pr(installed, pull_request_payload("opened"), "same") for _ in range(50)))
    statuses = sorted(r["status"] for r in results)
    assert statuses.count("ACCEPTED") == 1
    assert statuses.count("DUPLICATE") == 49
    assert len(await _actions(db)) == 2


async def test_same_body_digest_under_a_fresh_delivery_id_is_a_duplicate(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    # docs/security.md, "A captured `closed` body replayed under a fresh delivery id": X-GitHub-Delivery is not
    # signed; the body (and its digest) is.
    from bot_worker.providers.github.normalize import pull_request_event
    from tests.support.ingest import PR_PATH

    digest = "ab" * 32
    await send_pr(installed, pull_request_payload("opened"))
    closed = pull_request_event("close-1", pull_request_payload("closed")).model_copy(update={"body_sha256": digest})
    first = await installed.post_json(PR_PATH, closed.model_dump(mode="json"))
    assert first["decision"] == "CANCELLED"
    await send_pr(installed, pull_request_payload("reopened"))
    replay = closed.model_copy(update={"delivery_id": "close-2"})
    again = await installed.post_json(PR_PATH, replay.model_dump(mode="json"))
    assert again["status"] == "DUPLICATE"
    assert [c["status"] for c in await _challenges(db)] == ["CANCELLED", "PENDING"]
    # GitHub's own redelivery: same id, same body: a duplicate as before.
    assert (await installed.post_json(PR_PATH, closed.model_dump(mode="json")))["status"] == "DUPLICATE"
