"""A Bitbucket repository's `.prgate.yml` through the real backend app and the Bitbucket simulator
server: a push to the main branch reads it with the workspace's token, the next PR is governed by it,
an invalid file keeps the last valid configuration and fails the pushed commit (`prgate-config`),
repositories connected or discovered later are read by the refresh route, workspaces never cross."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from prgate.simulator.core.faults import FaultRule
from provider_clients.bitbucket.hook_secret import bare_uuid
from shared_contracts.bitbucket import (
    BitbucketAccount,
    BitbucketPullRequest,
    BitbucketPullRequestEvent,
    BitbucketPushEvent,
    BitbucketRepository,
)
from tests.conftest import RECEIVER_SECRET
from tests.integration.test_bitbucket_tenancy import Operator, Sim, _workspace, bb_sim, operator
from tests.support.webhooks import metric

__all__ = ["bb_sim", "operator"]  # fixtures this module uses

PUSH = "/internal/v2/bitbucket/events/push"
PULL_REQUEST = "/internal/v2/bitbucket/events/pull-request"
REFRESH = "/internal/v2/github/config/refresh"
AUTHOR = BitbucketAccount(uuid="11111111-2222-4333-8444-555555555555", account_id="557058:author",
                          nickname="newcomer", display_name="New Comer")


def _repo(sim: Sim, workspace: str, slug: str) -> BitbucketRepository:
    repo = sim.state.repository(workspace, slug)
    repo_uuid = bare_uuid(repo.uuid)
    assert repo_uuid is not None
    return BitbucketRepository(uuid=repo_uuid, full_name=f"{workspace}/{slug}")


def _ws_uuid(sim: Sim, workspace: str) -> str:
    found = bare_uuid(sim.state.workspace(workspace).uuid)
    assert found is not None
    return found


async def _push(op: Operator, sim: Sim, workspace: str, slug: str, content: str | None, *,
                branch: str | None = None, expect: int = 200) -> tuple[str, Any]:
    """Commit ``content`` as `.prgate.yml` on the simulator, then hand the backend the push the
    receiver would forward (signed with the receiver's key). The pushed hash and the answer."""
    _, moved, _, new = sim.state.commit_file(workspace, slug, ".prgate.yml", content, author=None, branch=branch)
    event = BitbucketPushEvent(
        delivery_id=str(uuid.uuid4()), workspace_uuid=_ws_uuid(sim, workspace), workspace_slug=workspace,
        repository=_repo(sim, workspace, slug), branch=moved, head_commit=new.hash[:12],
    )
    resp = await op.signed.post(PUSH, json.loads(event.model_dump_json()), sign_with=RECEIVER_SECRET)
    body = await resp.json()
    assert resp.status == expect, body
    return new.hash[:12], body


async def _open_pr(op: Operator, sim: Sim, workspace: str, slug: str, pr_id: int = 1) -> Any:
    event = BitbucketPullRequestEvent(
        delivery_id=str(uuid.uuid4()), event_key="pullrequest:created", workspace_uuid=_ws_uuid(sim, workspace),
        workspace_slug=workspace, repository=_repo(sim, workspace, slug),
        pull_request=BitbucketPullRequest(id=pr_id, title="Fix", state="OPEN", source_commit="abcdef012345",
                                          author=AUTHOR),
        actor=AUTHOR,
    )
    resp = await op.signed.post(PULL_REQUEST, json.loads(event.model_dump_json()), sign_with=RECEIVER_SECRET)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["decision"] == "GATE", body
    return body


async def _challenge(db: asyncpg.Pool, challenge_id: int) -> tuple[int, str]:
    """The challenge's deadline in seconds from its creation, and its gate comment."""
    async with db.acquire() as conn:
        seconds = await conn.fetchval(
            "SELECT extract(epoch FROM deadline_at - created_at) FROM challenges WHERE challenge_id = $1",
            challenge_id)
        comment = await conn.fetchval(
            """SELECT payload->>'body' FROM bot_actions
               WHERE challenge_id = $1 AND action_type = 'UPSERT_PR_COMMENT'""", challenge_id)
    return round(float(seconds)), str(comment)  # created_at is the database clock, the deadline the gate's


async def _config_statuses(db: asyncpg.Pool) -> list[tuple[str, int, str, str, str, str]]:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            """SELECT provider, pr_number, repo_full_name, payload->>'sha' AS sha, payload->>'state' AS state,
                      payload->>'description' AS description
               FROM bot_actions WHERE action_type = 'SET_COMMIT_STATUS' AND payload->>'context' = 'prgate/config'
               ORDER BY action_id""")
    return [(r["provider"], r["pr_number"], r["repo_full_name"], r["sha"], r["state"], r["description"])
            for r in rows]


async def _refresh(op: Operator) -> dict[str, Any]:
    resp = await op.signed.post(REFRESH, {"max_repositories": 100})
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return body


async def _connected(op: Operator, sim: Sim, workspace: str, repos: int = 1) -> int:
    answer = await op.connect(workspace, _workspace(sim, workspace, repos=repos))
    if AUTHOR.account_id not in sim.state.users:
        sim.state.add_user(AUTHOR.account_id or "", uuid=AUTHOR.uuid, nickname=AUTHOR.nickname)
    return int(answer["tenant_id"])


async def test_a_pushed_valid_file_governs_the_next_pull_request(operator: Operator, bb_sim: Sim,
                                                                 db: asyncpg.Pool) -> None:
    await _connected(operator, bb_sim, "acme")
    await _refresh(operator)  # the connect's marks: no file yet
    before, _ = await _challenge(db, (await _open_pr(operator, bb_sim, "acme", "repo-000", 1))["challenge_id"])
    assert before == 259200  # the default

    sha, answer = await _push(operator, bb_sim, "acme", "repo-000", "warn_only: true\ndeadline_seconds: 3600\n")
    assert (answer["status"], answer["reason"]) == ("ACCEPTED", "config file in force")
    seconds, comment = await _challenge(db, (await _open_pr(operator, bb_sim, "acme", "repo-000", 2))["challenge_id"])
    assert seconds == 3600
    assert "warn-only mode" in comment
    assert await _config_statuses(db) == [
        ("bitbucket", 0, "acme/repo-000", sha, "success", "configuration is valid and in force")]
    assert await metric(operator.signed.client, "backend_config_file_reads_total", trigger="push",
                        result="valid") == 1

    # Every main-branch push reads the file again (Bitbucket names no files): removing it is "absent".
    _, answer = await _push(operator, bb_sim, "acme", "repo-000", None)
    assert answer["reason"] == "no config file applies"
    seconds, _ = await _challenge(db, (await _open_pr(operator, bb_sim, "acme", "repo-000", 3))["challenge_id"])
    assert seconds == 259200
    assert await metric(operator.signed.client, "backend_config_file_reads_total", trigger="push",
                        result="absent") == 1


async def test_an_invalid_file_keeps_the_last_valid_config_and_fails_the_pushed_commit(
    operator: Operator, bb_sim: Sim, db: asyncpg.Pool
) -> None:
    await _connected(operator, bb_sim, "acme")
    await _push(operator, bb_sim, "acme", "repo-000", "deadline_seconds: 7200\n")
    sha, answer = await _push(operator, bb_sim, "acme", "repo-000", "deadline_secnds: 60\n")
    assert answer["status"] == "ACCEPTED"
    assert answer["reason"].startswith("config file invalid: acme/repo-000:.prgate.yml: deadline_secnds")
    statuses = await _config_statuses(db)
    assert [s[4] for s in statuses] == ["success", "failure"]
    provider, pr_number, _, failed_sha, _, description = statuses[1]
    assert (provider, pr_number, failed_sha) == ("bitbucket", 0, sha)
    assert "unknown key" in description
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT config, last_error, last_error_sha FROM repo_config_files")
    assert row["config"] == {"deadline_seconds": 7200}
    assert row["last_error_sha"] == sha
    seconds, _ = await _challenge(db, (await _open_pr(operator, bb_sim, "acme", "repo-000"))["challenge_id"])
    assert seconds == 7200  # the last valid file stays in force
    assert await metric(operator.signed.client, "backend_config_file_reads_total", trigger="push",
                        result="invalid") == 1


async def test_a_repository_connected_or_discovered_with_the_file_is_governed_after_the_refresh(
    operator: Operator, bb_sim: Sim, db: asyncpg.Pool
) -> None:
    bb_sim.state.add_workspace("acme")
    bb_sim.state.add_repository("acme", "app", files={".prgate.yml": "deadline_seconds: 5400\n"})
    await operator.connect("acme", bb_sim.state.create_token("acme").value)
    bb_sim.state.add_user(AUTHOR.account_id or "", uuid=AUTHOR.uuid, nickname=AUTHOR.nickname)
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT reason FROM repo_config_stale") == "bitbucket workspace connected"
    answer = await _refresh(operator)
    assert [item["result"] for item in answer["refreshed"]] == ["valid"]
    assert answer["remaining"] == 0
    seconds, _ = await _challenge(db, (await _open_pr(operator, bb_sim, "acme", "app"))["challenge_id"])
    assert seconds == 5400
    assert await _config_statuses(db) == []  # no pushed commit to put it on

    # Created later, with a file: the periodic re-discovery marks it, the refresh reads it.
    bb_sim.state.add_repository("acme", "later", files={".prgate.yml": "warn_only: true\n"})
    resp = await operator.signed.post("/internal/v2/bitbucket/rediscover", {})
    assert resp.status == 200
    answer = await _refresh(operator)
    assert [item["result"] for item in answer["refreshed"]] == ["valid"]
    _, comment = await _challenge(db, (await _open_pr(operator, bb_sim, "acme", "later"))["challenge_id"])
    assert "warn-only mode" in comment
    assert await metric(operator.signed.client, "backend_config_file_reads_total", trigger="refresh",
                        result="valid") == 2


async def test_two_workspaces_files_never_cross(operator: Operator, bb_sim: Sim, db: asyncpg.Pool) -> None:
    acme = await _connected(operator, bb_sim, "acme", repos=2)
    other = await _connected(operator, bb_sim, "other")
    await _push(operator, bb_sim, "acme", "repo-000", "deadline_seconds: 1000\n")
    await _push(operator, bb_sim, "other", "repo-000", "deadline_seconds: 2000\n")
    acme_pr = await _open_pr(operator, bb_sim, "acme", "repo-000")
    other_pr = await _open_pr(operator, bb_sim, "other", "repo-000")
    assert (await _challenge(db, acme_pr["challenge_id"]))[0] == 1000
    assert (await _challenge(db, other_pr["challenge_id"]))[0] == 2000
    async with db.acquire() as conn:
        rows = {r["repo_full_name"]: r["installation_id"] for r in await conn.fetch(
            "SELECT repo_full_name, installation_id FROM repo_config_files")}
    assert rows == {"acme/repo-000": acme, "other/repo-000": other}

    # Extending another workspace's file is refused, not read with this workspace's token.
    _, answer = await _push(operator, bb_sim, "acme", "repo-000", "_extends: other/repo-000\n")
    assert "only a repository of the same workspace (acme) can be extended" in answer["reason"]
    # Extending one of its own repositories works, and a push to that file marks this one stale.
    await _push(operator, bb_sim, "acme", "repo-001", "warn_only: true\ndeadline_seconds: 4000\n")
    _, answer = await _push(operator, bb_sim, "acme", "repo-000", "_extends: repo-001\ndeadline_seconds: 900\n")
    assert answer["reason"] == "config file in force"
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT config, key_sources, inherits FROM repo_config_files "
                                  "WHERE repo_full_name = 'acme/repo-000'")
    assert row["config"] == {"warn_only": True, "deadline_seconds": 900}
    assert row["inherits"] == ["acme/repo-000", "acme/repo-001"]
    await _refresh(operator)  # drain the marks the connects left
    await _push(operator, bb_sim, "acme", "repo-001", "deadline_seconds: 4000\n")
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT repo_full_name FROM repo_config_stale") == "acme/repo-000"


async def test_bitbucket_down_is_a_503_with_nothing_written_and_a_refresh_backs_off(
    operator: Operator, bb_sim: Sim, db: asyncpg.Pool
) -> None:
    await _connected(operator, bb_sim, "acme")
    bb_sim.state.faults.add_rule(FaultRule(method="GET", path_regex="/src/", status=503, count=2))
    answer = await _refresh(operator)
    assert [item["result"] for item in answer["refreshed"]] == ["unavailable"]
    async with db.acquire() as conn:
        mark = await conn.fetchrow("SELECT attempts, last_error FROM repo_config_stale")
    assert mark["attempts"] == 1
    assert "503" in mark["last_error"]

    _, body = await _push(operator, bb_sim, "acme", "repo-000", "warn_only: true\n", expect=503)
    assert body["error"] == "unavailable"
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 0
        assert await conn.fetchval("SELECT count(*) FROM repo_config_files") == 0
    assert await metric(operator.signed.client, "backend_config_file_reads_total", trigger="push",
                        result="unavailable") == 1
    # Bitbucket back (the faults are spent): the receiver's replay of the push is read and stored.
    _, body = await _push(operator, bb_sim, "acme", "repo-000", "warn_only: true\n")
    assert body["reason"] == "config file in force"


@pytest.mark.parametrize("branch", ["feature"])
async def test_a_push_to_another_branch_is_ignored(operator: Operator, bb_sim: Sim, db: asyncpg.Pool,
                                                   branch: str) -> None:
    await _connected(operator, bb_sim, "acme")
    repo = bb_sim.state.repository("acme", "repo-000")
    repo.branches[branch] = repo.branches[repo.mainbranch]
    _, answer = await _push(operator, bb_sim, "acme", "repo-000", "warn_only: true\n", branch=branch)
    assert answer["status"] == "IGNORED"
    assert answer["reason"] == "push to feature, not the main branch (main)"
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM repo_config_files") == 0


async def test_a_repository_first_seen_in_a_pull_request_is_read_by_the_refresh(
    operator: Operator, bb_sim: Sim, db: asyncpg.Pool
) -> None:
    await _connected(operator, bb_sim, "acme")
    await _refresh(operator)
    # Created after the connect and not re-discovered yet: its first PR names it.
    bb_sim.state.add_repository("acme", "fresh", files={".prgate.yml": "deadline_seconds: 600\n"})
    first, _ = await _challenge(db, (await _open_pr(operator, bb_sim, "acme", "fresh", 1))["challenge_id"])
    assert first == 259200  # decided before the file could be read
    async with db.acquire() as conn:
        reason = await conn.fetchval("SELECT reason FROM repo_config_stale")
    assert reason == "bitbucket repository first seen in an event"
    assert [item["result"] for item in (await _refresh(operator))["refreshed"]] == ["valid"]
    second, _ = await _challenge(db, (await _open_pr(operator, bb_sim, "acme", "fresh", 2))["challenge_id"])
    assert second == 600
    # A later re-discovery lists it as known: not marked again.
    resp = await operator.signed.post("/internal/v2/bitbucket/rediscover", {})
    assert resp.status == 200
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM repo_config_stale") == 0


async def test_whitelisted_nicknames_are_known_accounts(operator: Operator, bb_sim: Sim, db: asyncpg.Pool) -> None:
    await _connected(operator, bb_sim, "acme")
    _, answer = await _push(operator, bb_sim, "acme", "repo-000", "whitelist_logins: [newcomer]\n")
    assert "no Bitbucket account newcomer is known to prgate" in answer["reason"]
    await _open_pr(operator, bb_sim, "acme", "repo-000", 1)  # prgate knows the author from now on
    _, answer = await _push(operator, bb_sim, "acme", "repo-000", "whitelist_logins: [NewComer]\n")
    assert answer["reason"] == "config file in force"
    event = BitbucketPullRequestEvent(
        delivery_id=str(uuid.uuid4()), event_key="pullrequest:created", workspace_uuid=_ws_uuid(bb_sim, "acme"),
        workspace_slug="acme", repository=_repo(bb_sim, "acme", "repo-000"),
        pull_request=BitbucketPullRequest(id=2, title="More", state="OPEN", source_commit="abcdef012345",
                                          author=AUTHOR),
        actor=AUTHOR,
    )
    resp = await operator.signed.post(PULL_REQUEST, json.loads(event.model_dump_json()), sign_with=RECEIVER_SECRET)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["decision"] != "GATE", body
    assert "whitelisted" in body["reason"], body
