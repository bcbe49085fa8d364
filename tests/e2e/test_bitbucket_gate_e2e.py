"""The Bitbucket gate through real processes: `prgate simulator` (Bitbucket under /bitbucket), `prgate
backend`, `prgate bot` and two `prgate worker`s. A workspace is connected through the real CLI, so the
simulator holds prgate's hook (its URL under BOT_PUBLIC_URL, the derived secret) and delivers every
change there, signed, as Bitbucket does. The witnesses are the simulator's own records (comments,
statuses, PR state, hooks, the request log naming each request's token) and the database."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from backend_api.challenges import messages
from backend_api.challenges.tokens import hash_token
from provider_clients.bitbucket.hook_secret import derive
from tests.conftest import ADMIN_SECRET
from tests.e2e.conftest import BITBUCKET_MASTER, FullStack, running_full_stack, sim, sim_get
from tests.support.bitbucket_sim import MARKER, Bitbucket, as_shown, cli
from tests.support.bitbucket_sim import connect as connect_with_cli
from tests.support.processes import eventually

# A short lease so a SIGKILLed worker's actions are taken over quickly (half of it still holds one
# write's worst case plus the report margin, as the worker requires at start-up).
SHORT_LEASE = {"WORKER_LEASE_SECONDS": "6", "PROVIDER_TIMEOUT_SECONDS": "2", "WORKER_REPORT_MARGIN_SECONDS": "1",
               "GITHUB_WRITES_PER_MINUTE": "100000"}


@pytest.fixture
async def stack(db: asyncpg.Pool, database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[FullStack]:
    async with running_full_stack(database_url, redis_url, tmp_path, worker_env=SHORT_LEASE) as full:
        yield full


async def connect(bb: Bitbucket, stack: FullStack, cwd: Path, slug: str, ws_uuid: str, token: str) -> None:
    await connect_with_cli(bb, cwd, backend_url=stack.backend_url, bot_url=stack.bot_url, master=BITBUCKET_MASTER,
                           slug=slug, ws_uuid=ws_uuid, token=token, admin_secret=ADMIN_SECRET)


async def settled(db: asyncpg.Pool) -> bool:
    async with db.acquire() as conn:
        return bool(await conn.fetchval("SELECT count(*) = 0 FROM bot_actions WHERE status IN ('PENDING','CLAIMED')"))


async def signed_post(session: aiohttp.ClientSession, stack: FullStack, ws_uuid: str, secret: str, event_key: str,
                      body: bytes) -> int:
    headers = {"Content-Type": "application/json", "X-Event-Key": event_key, "X-Request-UUID": str(uuid.uuid4()),
               "X-Attempt-Number": "1", "User-Agent": "Bitbucket-Webhooks/2.0",
               "X-Hub-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    async with session.post(f"{stack.bot_url}/webhooks/bitbucket/{ws_uuid}", data=body, headers=headers) as resp:
        return resp.status


def source_commit(pr: dict[str, Any]) -> str:
    return str(pr["source"]["commit"]["hash"])


def creates(requests: list[dict[str, Any]], repo: str, pr_id: int) -> int:
    path = f"/bitbucket/2.0/repositories/{repo}/pullrequests/{pr_id}/comments"
    return sum(1 for r in requests if r["method"] == "POST" and r["path"] == path and r["status"] == 201)


async def test_a_newcomer_is_gated_once_across_resends_and_a_killed_worker(
    stack: FullStack, db: asyncpg.Pool, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        bb = Bitbucket(session, stack.bitbucket_url)
        ws_uuid, token = await bb.workspace("acme", ["widgets"])
        await connect(bb, stack, tmp_path, "acme", ws_uuid, token)
        newcomers = [f"557058:new-{i}" for i in range(6)]
        for i, account in enumerate(newcomers):
            await bb.user(account, f"newcomer{i}")
        await bb.user("557058:lead", "lead")
        await bb.put("/repositories/acme/widgets/permissions/557058:lead", {"permission": "write"})
        # Slow Bitbucket down so the first worker is holding leases when it is killed.
        await bb.put("/faults", {"default": {"latency_ms": 600}})

        prs = [await bb.open_pr("acme/widgets", account, f"feature-{i}") for i, account in enumerate(newcomers)]
        exempt_pr = await bb.open_pr("acme/widgets", "557058:lead", "lead-change")
        # Bitbucket's "Resend request", twice per PR: a new X-Request-UUID, the same body.
        for pr in prs:
            [delivery] = pr["deliveries"]
            for _ in range(2):
                async with session.post(
                        f"{stack.bitbucket_url}/_sim/deliveries/{delivery['request_uuid']}/resend") as resp:
                    assert resp.status == 201
                    assert (await resp.json())["status"] in (200, 202)

        async def victim_holds_a_lease() -> bool:
            async with db.acquire() as conn:
                return bool(await conn.fetchval(
                    "SELECT count(*) > 0 FROM bot_actions WHERE status = 'CLAIMED' AND lease_owner = 'worker-0'"))

        await eventually(victim_holds_a_lease, timeout=30, interval=0.05)
        victim = next(p for p in stack.fleet.procs if p.name == "worker-0")
        victim.kill()
        await eventually(lambda: settled(db), timeout=60)

        async with db.acquire() as conn:
            challenges = await conn.fetch(
                "SELECT pr_number, status, provider FROM challenges ORDER BY pr_number")
            actions = await conn.fetch("SELECT status, count(*) AS n FROM bot_actions GROUP BY 1")
        assert [(r["pr_number"], r["status"], r["provider"]) for r in challenges] == [
            (pr["id"], "PENDING", "bitbucket") for pr in prs]
        assert [(r["status"], r["n"]) for r in actions] == [("DONE", 2 * len(prs) + 2)], actions  # + lead's two
        requests = await bb.requests()
        for pr in prs:
            [comment] = await bb.ours("acme/widgets", pr["id"])
            assert f"{stack.backend_url}/verify/" in comment
            assert await bb.statuses("acme/widgets", source_commit(pr)) == [("prgate", "INPROGRESS")]
            assert creates(requests, "acme/widgets", pr["id"]) == 1
        # Write permission on the repository: exempt, never gated.
        assert await bb.ours("acme/widgets", exempt_pr["id"]) == [as_shown(messages.exempt_comment("lead"))]
        assert await bb.statuses("acme/widgets", source_commit(exempt_pr)) == [("prgate", "SUCCESSFUL")]

        # `/prgate recheck` after the owner whitelisted the author (the settings row the settings page
        # writes): our comment is edited to the exemption, never a second one written.
        await bb.put("/faults", {})
        first = prs[0]
        [before] = await bb.comments("acme/widgets", first["id"])
        async with db.acquire() as conn:
            author_id = await conn.fetchval("SELECT user_id FROM bitbucket_accounts WHERE account_id = $1",
                                            newcomers[0])
            await conn.execute("INSERT INTO repo_settings (repo_id, whitelist_logins, whitelist_user_ids) "
                               "SELECT repo_id, '{newcomer0}', ARRAY[$1::bigint] FROM bitbucket_repositories "
                               "WHERE full_name = 'acme/widgets'", author_id)
        await bb.comment("acme/widgets", first["id"], newcomers[0], "/prgate recheck")

        async def edited() -> bool:
            return await bb.ours("acme/widgets", first["id"]) == [as_shown(messages.exempt_comment("newcomer0"))]

        await eventually(edited, timeout=30)
        assert any(r["method"] == "PUT" and r["path"].endswith(f"/comments/{before['id']}")
                   for r in await bb.requests())
        assert creates(await bb.requests(), "acme/widgets", first["id"]) == 1
        await eventually(lambda: _equal(bb.statuses("acme/widgets", source_commit(first)),
                                        [("prgate", "SUCCESSFUL")]), timeout=30)

        # A delivery signed with another workspace's secret, or none that matches, is refused.
        body = json.dumps({"repository": {"full_name": "acme/widgets"}}).encode()
        other = str(uuid.uuid4())
        for secret in (derive(BITBUCKET_MASTER.encode(), other), "not-the-secret"):
            assert await signed_post(session, stack, ws_uuid, secret, "pullrequest:created", body) == 401

        # The workers' token never reached a log line.
        for proc in stack.fleet.procs:
            assert token not in proc.log(), proc.name


async def test_deadline_declines_and_commands_need_write(stack: FullStack, db: asyncpg.Pool, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        bb = Bitbucket(session, stack.bitbucket_url)
        ws_uuid, token = await bb.workspace("acme", ["widgets", "tools"])
        await connect(bb, stack, tmp_path, "acme", ws_uuid, token)
        for account, nick in (("557058:slow", "slowpoke"), ("557058:new", "newcomer"), ("557058:reader", "reader"),
                              ("557058:lead", "lead")):
            await bb.user(account, nick)
        await bb.put("/repositories/acme/tools/permissions/557058:reader", {"permission": "read"})
        await bb.put("/repositories/acme/tools/permissions/557058:lead", {"permission": "admin"})
        async with db.acquire() as conn:
            repo_id = await conn.fetchval("SELECT repo_id FROM bitbucket_repositories WHERE full_name = 'acme/widgets'")
            # The owner's setting (the minimum the schema allows): the sweeper declines after 10 s.
            await conn.execute("INSERT INTO repo_settings (repo_id, deadline_seconds) VALUES ($1, 10)", repo_id)

        slow = await bb.open_pr("acme/widgets", "557058:slow", "late")
        gated = await bb.open_pr("acme/tools", "557058:new", "fix")
        await eventually(lambda: _any(bb.ours("acme/tools", gated["id"])), timeout=30)

        # A reader's `/prgate exempt` is refused with a reply; the PR stays gated.
        refused = await bb.comment("acme/tools", gated["id"], "557058:reader", "/prgate exempt")

        async def replied() -> bool:
            return any("@reader" in c["content"]["raw"] and c["user"]["type"] == "app_user"
                       and "exempt" in c["content"]["raw"] and MARKER not in c["content"]["raw"]
                       for c in await bb.comments("acme/tools", gated["id"]))

        await eventually(replied, timeout=30)
        assert refused["id"]
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT status FROM challenges WHERE pr_number = $1 AND repo_id <> $2",
                                       gated["id"], repo_id) == "PENDING"
        # An admin's is obeyed: our comment is edited to say so, the status turns SUCCESSFUL.
        await bb.comment("acme/tools", gated["id"], "557058:lead", "/prgate exempt")

        async def exempted() -> bool:
            return await bb.ours("acme/tools", gated["id"]) == [as_shown(messages.exempted_comment("newcomer", "lead"))]

        await eventually(exempted, timeout=30)
        await eventually(lambda: _equal(bb.statuses("acme/tools", source_commit(gated)), [("prgate", "SUCCESSFUL")]),
                         timeout=30)

        # The deadline: the sweeper declines the PR in Bitbucket, after our comment saying why.
        async def declined() -> bool:
            return await _pr_state(session, stack, token, "acme/widgets", slow["id"]) == "DECLINED"

        await eventually(declined, timeout=45)
        [comment] = await bb.ours("acme/widgets", slow["id"])
        assert "was closed because contributor verification was not completed" in comment
        await eventually(lambda: _equal(bb.statuses("acme/widgets", source_commit(slow)), [("prgate", "FAILED")]),
                         timeout=30)
        async with db.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT status, deadline_at - created_at AS lifetime FROM challenges WHERE repo_id = $1", repo_id)
        assert row is not None
        status, lifetime = row["status"], row["lifetime"]
        assert status == "TIMED_OUT"
        assert lifetime.total_seconds() == pytest.approx(10, abs=1)


async def test_disconnect_cancels_pending_work_and_later_deliveries_do_nothing(
    stack: FullStack, db: asyncpg.Pool, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        bb = Bitbucket(session, stack.bitbucket_url)
        ws_uuid, token = await bb.workspace("acme", ["widgets"])
        await connect(bb, stack, tmp_path, "acme", ws_uuid, token)
        await bb.user("557058:new", "newcomer")
        # Bitbucket refuses every comment for now: the gate's actions stay pending, retried.
        await bb.post("/faults/rules", {"method": "POST", "path_regex": "/comments$", "status": 503, "count": 10_000})
        pr = await bb.open_pr("acme/widgets", "557058:new", "fix")

        async def pending() -> bool:
            async with db.acquire() as conn:
                return bool(await conn.fetchval(
                    "SELECT count(*) > 0 FROM bot_actions WHERE action_type = 'UPSERT_PR_COMMENT'"
                    " AND status = 'PENDING' AND attempt >= 1"))

        await eventually(pending, timeout=30)
        done = await asyncio.to_thread(cli, stack.backend_url, ADMIN_SECRET, tmp_path, "disconnect", "acme")
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert "webhook deleted" in done.stdout
        assert (await bb.get("/workspaces/acme/hooks"))["hooks"] == []
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT status FROM challenges") == "CANCELLED"
            assert set(await conn.fetch("SELECT DISTINCT status FROM bot_actions")) <= {("CANCELLED",), ("DONE",)}
            before = await conn.fetchval("SELECT count(*) FROM bot_actions")
        await bb.put("/faults", {})

        # Bitbucket has no hook to deliver to any more: a new PR sends nothing.
        await bb.user("557058:later", "later")
        later = await bb.open_pr("acme/widgets", "557058:later", "later")
        assert later["deliveries"] == []
        # A delivery still signed right (a retry in flight) is accepted by the stateless receiver and
        # does nothing in the backend: the workspace is disconnected.
        body = json.dumps({"repository": {"full_name": "acme/widgets"}}).encode()
        await signed_post(session, stack, ws_uuid, derive(BITBUCKET_MASTER.encode(), ws_uuid), "pullrequest:created",
                          body)
        await bb.comment("acme/widgets", pr["id"], "557058:new", "/prgate recheck")
        await asyncio.sleep(2)
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM bot_actions") == before
            assert await conn.fetchval("SELECT count(*) FROM challenges") == 1
        assert await bb.ours("acme/widgets", pr["id"]) == []


async def test_two_workspaces_and_a_github_installation_never_cross(
    stack: FullStack, db: asyncpg.Pool, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        bb = Bitbucket(session, stack.bitbucket_url)
        tokens = {}
        for slug in ("acme", "globex"):
            ws_uuid, tokens[slug] = await bb.workspace(slug, ["app"])
            await connect(bb, stack, tmp_path, slug, ws_uuid, tokens[slug])
        await bb.user("557058:new", "newcomer")
        await sim(session, stack, "/_sim/installations", {
            "id": 77, "account": {"login": "initech", "id": 770, "type": "Organization"},
            "repositories": [{"id": 7701, "full_name": "initech/app"}], "webhook": True,
        })

        async def installed() -> bool:
            async with session.get(f"{stack.backend_url}/api/v1/repos/7701/github-app-status") as resp:
                return bool((await resp.json())["installed"])

        await eventually(installed, timeout=30)
        await bb.requests()
        prs = {slug: await bb.open_pr(f"{slug}/app", "557058:new", "fix") for slug in ("acme", "globex")}
        await sim(session, stack, "/_sim/pulls", {
            "repo": "initech/app", "number": 1, "author": {"login": "newcomer", "id": 901, "type": "User"},
            "author_association": "NONE", "head_sha": "0123456789abcdef0123456789abcdef01234567", "webhook": "opened",
        })
        for slug, pr in prs.items():
            await eventually(lambda s=slug, p=pr: _any(bb.ours(f"{s}/app", p["id"])), timeout=30)
        await eventually(lambda: settled(db), timeout=30)

        for slug, pr in prs.items():
            [comment] = await bb.ours(f"{slug}/app", pr["id"])
            assert await bb.statuses(f"{slug}/app", source_commit(pr)) == [("prgate", "INPROGRESS")]
            link_token = comment.split(f"{stack.backend_url}/verify/")[1].split()[0].rstrip(").")
            async with db.acquire() as conn:  # each PR's comment links its own workspace's challenge
                owner = await conn.fetchrow(
                    "SELECT c.provider, w.slug FROM challenges c JOIN bitbucket_workspaces w"
                    " ON w.tenant_id = c.installation_id WHERE c.token_hash = $1", hash_token(link_token))
            assert owner is not None, slug
            assert (owner["provider"], owner["slug"]) == ("bitbucket", slug)
        github = await sim_get(session, stack, "/_sim/repos/initech/app/pulls/1/comments")
        assert [c for c in github if messages.PR_COMMENT_MARKER in c["body"]]
        # Every Bitbucket request for a workspace's resources was made with that workspace's token.
        for record in await bb.requests():
            parts = record["path"].split("/")  # ['', 'bitbucket', '2.0', kind, workspace, …]
            if len(parts) > 4 and parts[3] in ("repositories", "workspaces"):
                assert record["credential"] == f"workspace:{parts[4]}", record
        assert {r["credential"] for r in await bb.requests()} >= {"workspace:acme", "workspace:globex"}
        # …and GitHub's requests for the installation's repository used the installation's token.
        gh = await sim_get(session, stack, "/_sim/requests?path_regex=/repositories/7701/|/repos/initech/")
        assert gh["requests"]
        assert {r["installation_id"] for r in gh["requests"]} == {77}


async def _pr_state(session: aiohttp.ClientSession, stack: FullStack, token: str, repo: str, pr_id: int) -> str:
    """The PR's state as Bitbucket's REST API answers it (read with the workspace's token)."""
    async with session.get(f"{stack.bitbucket_url}/2.0/repositories/{repo}/pullrequests/{pr_id}",
                           headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["state"])


async def _any(coro: Any) -> bool:
    return bool(await coro)


async def _equal(coro: Any, value: Any) -> bool:
    return bool(await coro == value)
