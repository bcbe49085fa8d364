from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from tests.support.ingest import send_installation, send_pr
from tests.support.payloads import installation_payload, installation_repositories_payload, pull_request_payload
from tests.support.rows import snapshot
from tests.support.signed import SignedClient


async def _installation(db: asyncpg.Pool, installation_id: int = 1001) -> asyncpg.Record:
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM github_installations WHERE installation_id = $1", installation_id)
    assert row is not None
    return row


async def _members(db: asyncpg.Pool, installation_id: int = 1001) -> dict[int, str]:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            """SELECT repo_id, full_name FROM github_installation_repositories
               WHERE installation_id = $1 AND removed_at IS NULL""",
            installation_id,
        )
    return {r["repo_id"]: r["full_name"] for r in rows}


async def test_created_records_account_and_repositories(backend: SignedClient, db: asyncpg.Pool) -> None:
    payload = installation_payload("created", repos=[(5001, "octo-org/widgets"), (5002, "octo-org/gears")])
    resp = await send_installation(backend, "installation", payload, "d-1")
    assert resp["status"] == "ACCEPTED"
    assert resp["decision"] is None
    row = await _installation(db)
    assert (row["account_login"], row["account_type"], row["status"]) == ("octo-org", "Organization", "ACTIVE")
    assert row["repository_selection"] == "selected"
    assert await _members(db) == {5001: "octo-org/widgets", 5002: "octo-org/gears"}


async def test_duplicate_delivery_changes_nothing(backend: SignedClient, db: asyncpg.Pool) -> None:
    await send_installation(backend, "installation", installation_payload("created"), "d-1")
    again = await send_installation(
        backend, "installation", installation_payload("created", repos=[(5009, "octo-org/other")]), "d-1"
    )
    assert again["status"] == "DUPLICATE"
    assert await _members(db) == {5001: "octo-org/widgets"}


async def test_same_delivery_id_for_another_event_is_not_a_duplicate(backend: SignedClient) -> None:
    await send_installation(backend, "installation", installation_payload("created"), "shared-id")
    resp = await send_installation(
        backend, "installation_repositories",
        installation_repositories_payload("added", repos=[(5002, "octo-org/gears")]), "shared-id",
    )
    assert resp["status"] == "ACCEPTED"


async def test_suspend_and_unsuspend(backend: SignedClient, db: asyncpg.Pool) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    assert (await send_installation(backend, "installation", installation_payload("suspend")))["status"] == "ACCEPTED"
    row = await _installation(db)
    assert row["status"] == "SUSPENDED"
    assert row["suspended_at"] is not None
    # A PR while suspended is recorded but not acted on.
    pr = await send_pr(backend, pull_request_payload("opened"))
    assert (pr["status"], pr["reason"]) == ("IGNORED", "installation is suspended")
    await send_installation(backend, "installation", installation_payload("unsuspend"))
    row = await _installation(db)
    assert row["status"] == "ACTIVE"
    assert row["unsuspended_at"] is not None


async def test_deleted_removes_repositories_and_cancels_pending_work(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    gated = await send_pr(backend, pull_request_payload("opened"))
    assert gated["decision"] == "GATE"
    await send_installation(backend, "installation", installation_payload("deleted"))
    row = await _installation(db)
    assert row["status"] == "DELETED"
    assert row["deleted_at"] is not None
    assert await _members(db) == {}
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM bot_actions") == "CANCELLED"
        assert await conn.fetchval("SELECT status FROM challenges") == "CANCELLED"
    # Reinstalling makes it active again.
    await send_installation(backend, "installation", installation_payload("created"))
    assert (await _installation(db))["status"] == "ACTIVE"
    assert await _members(db) == {5001: "octo-org/widgets"}


async def test_repositories_added_and_removed(backend: SignedClient, db: asyncpg.Pool) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    await send_installation(
        backend, "installation_repositories",
        installation_repositories_payload("added", repos=[(5002, "octo-org/gears"), (5003, "octo-org/cogs")]),
    )
    assert set(await _members(db)) == {5001, 5002, 5003}
    gated = await send_pr(backend, pull_request_payload("opened", repo_id=5002, full_name="octo-org/gears"))
    assert gated["decision"] == "GATE"
    removed = await send_installation(
        backend, "installation_repositories",
        installation_repositories_payload("removed", repos=[(5002, "octo-org/gears")]),
    )
    assert (removed["status"], removed["reason"]) == ("ACCEPTED", "1 repository removed")
    assert set(await _members(db)) == {5001, 5003}
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM bot_actions WHERE repo_id = 5002") == "CANCELLED"
    # A PR on the removed repository is no longer acted on.
    pr = await send_pr(backend, pull_request_payload("opened", repo_id=5002, full_name="octo-org/gears", number=8))
    assert pr["status"] == "IGNORED"


async def test_repositories_added_for_unseen_installation_creates_it(backend: SignedClient, db: asyncpg.Pool) -> None:
    resp = await send_installation(
        backend, "installation_repositories",
        installation_repositories_payload("added", installation_id=4242, repos=[(6001, "octo-org/late")]),
    )
    assert resp["status"] == "ACCEPTED"
    assert (await _installation(db, 4242))["status"] == "ACTIVE"
    assert await _members(db, 4242) == {6001: "octo-org/late"}


async def test_uninteresting_installation_action_is_ignored(backend: SignedClient) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    resp = await send_installation(backend, "installation", installation_payload("new_permissions_accepted"))
    assert resp["status"] == "IGNORED"
    assert "does not change" in resp["reason"]


@pytest.mark.parametrize(
    ("event", "build"),
    [
        ("installation", lambda: installation_payload("created", repos=[(5001, "octo-org/widgets")])),
        ("installation", lambda: installation_payload("suspend")),
        ("installation", lambda: installation_payload("unsuspend")),
        ("installation", lambda: installation_payload("deleted")),
        ("installation_repositories",
         lambda: installation_repositories_payload("added", repos=[(5002, "octo-org/gears")])),
        ("installation_repositories",
         lambda: installation_repositories_payload("removed", repos=[(5001, "octo-org/widgets")])),
    ],
)
async def test_duplicate_of_each_installation_action_changes_nothing(
    backend: SignedClient, db: asyncpg.Pool, event: str, build: Callable[[], dict[str, Any]]
) -> None:
    await send_installation(backend, "installation", installation_payload("created"), "setup")
    first = await send_installation(backend, event, build(), "dup-1")
    assert first["status"] == "ACCEPTED"
    after_first = await snapshot(db)
    again = await send_installation(backend, event, build(), "dup-1")
    assert again["status"] == "DUPLICATE"
    assert await snapshot(db) == after_first
