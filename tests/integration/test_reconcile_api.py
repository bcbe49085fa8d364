"""The backend's reconciliation endpoints against a real PostgreSQL: each repair is made through the
webhook code paths, recorded, and a second run over the same GitHub state repairs nothing."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from backend_api.http.routes import openapi_document
from tests.support.ingest import send_installation, send_pr
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.rows import snapshot
from tests.support.signed import SignedClient

BASE = "/internal/v2/github/reconcile"
RUNS, INSTALLATION, PULLS = f"{BASE}/runs", f"{BASE}/installation", f"{BASE}/pull-requests"
OCTO = {"id": 1001, "account": {"id": 777, "login": "octo-org", "type": "Organization"},
        "repository_selection": "selected", "suspended_at": None}
WIDGETS = {"id": 5001, "full_name": "octo-org/widgets", "private": False}
GEARS = {"id": 5002, "full_name": "octo-org/gears", "private": False}
SHA = "0123456789abcdef0123456789abcdef01234567"


def finish_path(run_id: int) -> str:
    return f"{BASE}/runs/{run_id}/finish"


async def start(backend: SignedClient, installation_id: int | None = None) -> int:
    body = {"trigger": "cli", "worker_id": "test", "installation_id": installation_id}
    return int((await backend.post_json(RUNS, body))["run_id"])


async def installation_snapshot(
    backend: SignedClient, run_id: int, repos: list[dict[str, Any]] | None, **installation: Any
) -> list[dict[str, Any]]:
    body = {"run_id": run_id, "installation": {**OCTO, **installation}, "repositories": repos}
    repairs: list[dict[str, Any]] = (await backend.post_json(INSTALLATION, body))["repairs"]
    return repairs


def open_pr(number: int, *, login: str = "newcomer", user_id: int = 9001, association: str = "NONE",
            draft: bool = False) -> dict[str, Any]:
    return {"id": 500_100_000 + number, "number": number, "state": "open", "draft": draft, "head_sha": SHA,
            "author": {"id": user_id, "login": login, "type": "User"}, "author_association": association}


async def pulls_snapshot(
    backend: SignedClient, run_id: int, prs: list[dict[str, Any]], *, complete: bool = True,
    repo: dict[str, Any] = WIDGETS,
) -> list[dict[str, Any]]:
    body = {"run_id": run_id, "installation_id": 1001, "repository": repo, "pull_requests": prs, "complete": complete}
    repairs: list[dict[str, Any]] = (await backend.post_json(PULLS, body))["repairs"]
    return repairs


async def finish(backend: SignedClient, run_id: int, listed: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    report: dict[str, Any] = await backend.post_json(finish_path(run_id), {"listed_installation_ids": listed, **extra})
    return report


async def members(db: asyncpg.Pool, installation_id: int = 1001) -> set[int]:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            """SELECT repo_id FROM github_installation_repositories
               WHERE installation_id = $1 AND removed_at IS NULL""", installation_id,
        )
    return {r["repo_id"] for r in rows}


async def fetch(db: asyncpg.Pool, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with db.acquire() as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


@pytest.fixture
async def installed(backend: SignedClient) -> SignedClient:
    await send_installation(backend, "installation", installation_payload("created"))  # octo-org/widgets only
    return backend


# ---- installations ------------------------------------------------------------------------------------


async def test_a_missed_repository_added_is_repaired_once_and_recorded(installed: SignedClient,
                                                                       db: asyncpg.Pool) -> None:
    run = await start(installed)
    repairs = await installation_snapshot(installed, run, [WIDGETS, GEARS])
    assert [(r["kind"], r["repo_id"], r["repo_full_name"]) for r in repairs] == [
        ("repository_added", 5002, "octo-org/gears")
    ]
    assert await members(db) == {5001, 5002}
    status = await (await installed.client.get("/api/v1/repos/5002/github-app-status")).json()
    assert status["installed"] is True
    report = await finish(installed, run, [1001])
    assert [r["kind"] for r in report["repairs"]] == ["repository_added"]
    assert report["finished_at"] is not None
    assert (await fetch(db, "SELECT repairs FROM reconcile_runs WHERE run_id = $1", run))[0]["repairs"] == 1

    again = await start(installed)
    assert await installation_snapshot(installed, again, [WIDGETS, GEARS]) == []
    assert (await finish(installed, again, [1001]))["repairs"] == []


async def test_a_missed_removal_cancels_the_repositorys_pending_challenge(installed: SignedClient,
                                                                          db: asyncpg.Pool) -> None:
    await send_pr(installed, pull_request_payload("opened"))
    run = await start(installed)
    repairs = await installation_snapshot(installed, run, [])
    assert [(r["kind"], r["repo_id"]) for r in repairs] == [("repository_removed", 5001)]
    assert await members(db) == set()
    [challenge] = await fetch(db, "SELECT status, resolution FROM challenges")
    assert challenge == {"status": "CANCELLED", "resolution": "repository removed"}
    assert {r["status"] for r in await fetch(db, "SELECT status FROM bot_actions")} == {"CANCELLED"}


async def test_an_incomplete_repository_list_removes_nothing(installed: SignedClient, db: asyncpg.Pool) -> None:
    run = await start(installed)
    body = {"run_id": run, "installation": OCTO, "repositories": [GEARS], "repositories_complete": False}
    repairs = (await installed.post_json(INSTALLATION, body))["repairs"]
    assert [r["kind"] for r in repairs] == ["repository_added"]
    assert await members(db) == {5001, 5002}


async def test_an_unknown_installation_is_created_then_suspension_follows_github(backend: SignedClient,
                                                                                 db: asyncpg.Pool) -> None:
    run = await start(backend)
    repairs = await installation_snapshot(backend, run, [WIDGETS])
    assert [r["kind"] for r in repairs] == ["installation_created"]
    assert await members(db) == {5001}
    suspended = await installation_snapshot(backend, await start(backend), None, suspended_at="2026-01-01T00:00:00Z")
    assert [r["kind"] for r in suspended] == ["installation_suspended"]
    [row] = await fetch(db, "SELECT status FROM github_installations")
    assert row["status"] == "SUSPENDED"
    assert await members(db) == {5001}  # a suspended installation's repositories are unknown: left alone
    back = await installation_snapshot(backend, await start(backend), [WIDGETS])
    assert [r["kind"] for r in back] == ["installation_unsuspended"]
    renamed = await installation_snapshot(backend, await start(backend), [WIDGETS],
                                          account={"id": 777, "login": "octo-renamed", "type": "Organization"})
    assert [(r["kind"], r["detail"]) for r in renamed] == [("installation_updated", "account octo-org → octo-renamed")]


async def test_finish_deletes_installations_github_no_longer_lists(installed: SignedClient, db: asyncpg.Pool) -> None:
    await send_installation(installed, "installation", installation_payload(
        "created", installation_id=2002, account_login="acme", account_id=778, repos=[(7001, "acme/x")],
    ))
    await send_pr(installed, pull_request_payload("opened", installation_id=2002, repo_id=7001, full_name="acme/x"))
    run = await start(installed)
    report = await finish(installed, run, [1001])
    assert [(r["kind"], r["installation_id"]) for r in report["repairs"]] == [("installation_deleted", 2002)]
    statuses = {r["installation_id"]: r["status"] for r in await fetch(
        db, "SELECT installation_id, status FROM github_installations")}
    assert statuses == {1001: "ACTIVE", 2002: "DELETED"}
    assert [r["status"] for r in await fetch(db, "SELECT status FROM challenges")] == ["CANCELLED"]
    assert (await finish(installed, await start(installed), [1001]))["repairs"] == []


async def test_finish_without_a_complete_list_or_with_an_empty_one_deletes_nothing(installed: SignedClient,
                                                                                    db: asyncpg.Pool) -> None:
    assert (await finish(installed, await start(installed), None))["repairs"] == []
    report = await finish(installed, await start(installed), [])
    assert report["repairs"] == []
    [error] = report["errors"]
    assert "GitHub lists no installation" in error["message"]
    assert [r["status"] for r in await fetch(db, "SELECT status FROM github_installations")] == ["ACTIVE"]
    # Limited to one installation, GitHub's 404 (empty list) is an answer about that installation.
    scoped = await finish(installed, await start(installed, 1001), [])
    assert [r["kind"] for r in scoped["repairs"]] == ["installation_deleted"]


async def test_finish_records_the_workers_errors_and_stats(installed: SignedClient, db: asyncpg.Pool) -> None:
    run = await start(installed)
    report = await finish(installed, run, [1001], errors=[
        {"installation_id": 1001, "repo_full_name": "octo-org/widgets", "message": "deferred: rate limit"},
    ], stats={"installations": 1, "repositories": 1, "pull_requests": 0})
    assert report["errors"] == [
        {"installation_id": 1001, "repo_full_name": "octo-org/widgets", "message": "deferred: rate limit"}
    ]
    assert report["stats"] == {"installations": 1, "repositories": 1, "pull_requests": 0}
    [row] = await fetch(db, "SELECT errors, stats, finished_at FROM reconcile_runs")
    assert row["errors"][0]["message"] == "deferred: rate limit"
    assert row["finished_at"] is not None


# ---- pull requests ------------------------------------------------------------------------------------


async def test_an_open_pull_request_never_seen_is_gated_exactly_like_opened(installed: SignedClient,
                                                                            db: asyncpg.Pool) -> None:
    run = await start(installed)
    repairs = await pulls_snapshot(installed, run, [open_pr(7)])
    assert [(r["kind"], r["pr_number"]) for r in repairs] == [("pull_request_evaluated", 7)]
    assert repairs[0]["detail"].startswith("opened while prgate was away: GATE")
    [challenge] = await fetch(db, "SELECT status, pr_number, author_login, delivery_id FROM challenges")
    assert challenge["status"] == "PENDING"
    assert challenge["delivery_id"] == f"reconcile:{run}:5001:7"
    actions = await fetch(db, "SELECT action_type, payload FROM bot_actions ORDER BY action_id")
    assert [a["action_type"] for a in actions] == ["UPSERT_PR_COMMENT", "SET_COMMIT_STATUS"]
    assert "newcomer" in actions[0]["payload"]["body"]
    # A second run, and the late webhook for the same PR, add no second comment.
    assert await pulls_snapshot(installed, await start(installed), [open_pr(7)]) == []
    late = await send_pr(installed, pull_request_payload("opened"))
    assert late["reason"] == "challenge already pending"
    comments = await fetch(db, "SELECT 1 FROM bot_actions WHERE action_type = 'UPSERT_PR_COMMENT'")
    assert len(comments) == 1


async def test_pull_requests_open_before_the_app_was_installed_are_not_gated(installed: SignedClient,
                                                                             db: asyncpg.Pool) -> None:
    body = {"run_id": await start(installed), "installation_id": 1001, "repository": WIDGETS, "complete": True,
            "installation_created_at": "2026-02-01T00:00:00Z",
            "pull_requests": [{**open_pr(1), "created_at": "2026-01-15T00:00:00Z"},
                              {**open_pr(2), "created_at": "2026-02-01T00:00:01Z"}]}
    repairs = (await installed.post_json(PULLS, body))["repairs"]
    assert [r["pr_number"] for r in repairs] == [2]
    assert [r["pr_number"] for r in await fetch(db, "SELECT pr_number FROM challenges")] == [2]


async def test_pull_requests_decided_by_webhook_are_left_alone(installed: SignedClient, db: asyncpg.Pool) -> None:
    await send_pr(installed, pull_request_payload("opened", number=8, author_login="maintainer", author_id=9201,
                                                  association="MEMBER"))
    before = await snapshot(db)
    assert await pulls_snapshot(installed, await start(installed), [open_pr(8, login="maintainer", user_id=9201,
                                                                            association="MEMBER")]) == []
    after = await snapshot(db)
    assert {k: v for k, v in after.items() if not k.startswith("reconcile")} == {
        k: v for k, v in before.items() if not k.startswith("reconcile")
    }


@pytest.mark.parametrize(("pr", "outcome"), [
    (open_pr(9, login="maintainer", user_id=9201, association="MEMBER"), "EXEMPT"),
    (open_pr(10, draft=True), "DRAFT_DEFERRED"),
    ({**open_pr(11), "author": {"id": 3, "login": "dependabot[bot]", "type": "Bot"}}, "IGNORED"),
])
async def test_every_decision_counts_as_seen(installed: SignedClient, pr: dict[str, Any], outcome: str) -> None:
    [repair] = await pulls_snapshot(installed, await start(installed), [pr])
    assert outcome in repair["detail"]
    assert await pulls_snapshot(installed, await start(installed), [pr]) == []


async def test_a_pending_challenge_whose_pr_is_no_longer_open_is_cancelled(installed: SignedClient,
                                                                           db: asyncpg.Pool) -> None:
    await send_pr(installed, pull_request_payload("opened", number=7))
    await send_pr(installed, pull_request_payload("opened", number=12, author_login="other", author_id=9300))
    actions_before = await fetch(db, "SELECT action_id, status FROM bot_actions ORDER BY action_id")
    run = await start(installed)
    # Incomplete list: nothing is cancelled.
    assert await pulls_snapshot(installed, run, [open_pr(7)], complete=False) == []
    repairs = await pulls_snapshot(installed, run, [open_pr(7)])
    assert [(r["kind"], r["pr_number"]) for r in repairs] == [("challenge_cancelled", 12)]
    rows = {r["pr_number"]: (r["status"], r["resolution"]) for r in await fetch(
        db, "SELECT pr_number, status, resolution FROM challenges")}
    assert rows == {7: ("PENDING", None), 12: ("CANCELLED", "pull request closed")}
    # As the `closed` webhook does: the challenge is cancelled with the actions no worker took (its gate
    # comment and status would land on a closed PR); nothing is enqueued; PR 7's actions are untouched.
    after = await fetch(db, "SELECT action_id, pr_number, status FROM bot_actions ORDER BY action_id")
    assert [r["action_id"] for r in after] == [r["action_id"] for r in actions_before]
    assert {(r["pr_number"], r["status"]) for r in after} == {(7, "PENDING"), (12, "CANCELLED")}
    assert await pulls_snapshot(installed, await start(installed), [open_pr(7)]) == []


async def test_a_challenge_created_after_the_run_started_is_kept(installed: SignedClient, db: asyncpg.Pool) -> None:
    run = await start(installed)
    await send_pr(installed, pull_request_payload("opened", number=13))  # opened after GitHub was listed
    assert await pulls_snapshot(installed, run, []) == []
    assert [r["status"] for r in await fetch(db, "SELECT status FROM challenges")] == ["PENDING"]


async def test_a_repository_outside_the_installation_is_not_touched(installed: SignedClient,
                                                                     db: asyncpg.Pool) -> None:
    run = await start(installed)
    before = await snapshot(db)
    assert await pulls_snapshot(installed, run, [open_pr(1)], repo=GEARS) == []
    assert {k: v for k, v in (await snapshot(db)).items() if k != "reconcile_runs"} == {
        k: v for k, v in before.items() if k != "reconcile_runs"
    }


# ---- runs and bad input ---------------------------------------------------------------------------------


async def test_unknown_and_finished_runs_are_refused(installed: SignedClient, db: asyncpg.Pool) -> None:
    resp = await installed.post(INSTALLATION, {"run_id": 999, "installation": OCTO, "repositories": [GEARS]})
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    run = await start(installed)
    await finish(installed, run, [1001])
    before = await snapshot(db)
    for path, body in (
        (INSTALLATION, {"run_id": run, "installation": OCTO, "repositories": [GEARS]}),
        (PULLS, {"run_id": run, "installation_id": 1001, "repository": WIDGETS, "pull_requests": [open_pr(1)],
                 "complete": True}),
        (finish_path(run), {"listed_installation_ids": []}),
    ):
        resp = await installed.post(path, body)
        assert resp.status == 409, path
        assert (await resp.json())["error"] == "run_finished"
    assert await snapshot(db) == before
    resp = await installed.post(finish_path(12345), {})
    assert resp.status == 404


BAD_BODIES: list[tuple[str, Any]] = [
    (RUNS, {"trigger": "sometimes", "worker_id": "w"}),
    (RUNS, {"trigger": "cli", "worker_id": ""}),
    (INSTALLATION, {"run_id": 1, "installation": {"id": 1001}}),
    (INSTALLATION, {"run_id": 1, "installation": OCTO, "repositories": [WIDGETS, {"id": 2, "full_name": "no-slash"}]}),
    (PULLS, {"run_id": 1, "installation_id": 1001, "repository": WIDGETS, "pull_requests": [{"number": 1}],
             "complete": True}),
    (PULLS, {"run_id": 1, "installation_id": 1001, "repository": WIDGETS, "pull_requests": []}),
    (finish_path(1), {"errors": [{"message": ""}]}),
    (finish_path(1), {"stats": {"installations": -1}}),
]


@pytest.mark.parametrize(("path", "body"), BAD_BODIES)
async def test_invalid_bodies_are_422_and_write_nothing(installed: SignedClient, db: asyncpg.Pool, path: str,
                                                        body: Any) -> None:
    await start(installed)  # run 1 exists and is open: only the body is wrong
    before = await snapshot(db)
    resp = await installed.post(path, body)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"] == "validation_error"
    assert await snapshot(db) == before


@pytest.mark.parametrize("path", [RUNS, INSTALLATION, PULLS, finish_path(1)])
async def test_unsigned_or_malformed_requests_are_refused_and_write_nothing(installed: SignedClient,
                                                                            db: asyncpg.Pool, path: str) -> None:
    await start(installed)
    before = await snapshot(db)
    body = json.dumps({"trigger": "cli", "worker_id": "w"}).encode()
    resp = await installed.client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 401
    resp = await installed.post(path, raw=body, sign_with="not-the-secret")
    assert resp.status == 401
    resp = await installed.post(path, raw=b"{not json")
    assert resp.status == 400
    assert await snapshot(db) == before


async def test_the_endpoints_are_in_the_internal_openapi_document(backend: SignedClient) -> None:
    doc = openapi_document("internal")  # signed routes between our services: not in the public /openapi.json
    public = await (await backend.client.get("/openapi.json")).json()
    assert not [p for p in public["paths"] if p.startswith(BASE)]
    for path in (RUNS, INSTALLATION, PULLS, f"{BASE}/runs/{{run_id}}/finish"):
        op = doc["paths"][path]["post"]
        assert op["security"] == [{"prgateSignature": []}]
        assert "422" in op["responses"]
    assert "pull_request_evaluated" in doc["components"]["schemas"]["RepairKind"]["enum"]
