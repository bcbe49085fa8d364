"""The gate's lifecycle through real processes: timeout close, maintainer reopen, warn-only,
commands, and one fleet serving unrelated installations without crossing them."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg

from backend_api.challenges import messages
from tests.e2e.conftest import FullStack, sim, sim_get
from tests.support.payloads import fixture
from tests.support.processes import eventually

HEAD = "0123456789abcdef0123456789abcdef01234567"


async def install(session: aiohttp.ClientSession, stack: FullStack, inst: int, login: str, repo_id: int,
                  repo: str) -> None:
    await sim(session, stack, "/_sim/installations", {
        "id": inst, "account": {"login": login, "id": inst * 10, "type": "Organization"},
        "repositories": [{"id": repo_id, "full_name": repo}], "webhook": True,
    })

    async def installed() -> bool:
        async with session.get(f"{stack.backend_url}/api/v1/repos/{repo_id}/github-app-status") as resp:
            return bool((await resp.json())["installed"])

    await eventually(installed, timeout=30)


async def open_pr(session: aiohttp.ClientSession, stack: FullStack, repo: str, number: int, login: str,
                  user_id: int, head: str = HEAD) -> None:
    await sim(session, stack, "/_sim/pulls", {
        "repo": repo, "number": number, "author": {"login": login, "id": user_id, "type": "User"},
        "author_association": "NONE", "head_sha": head, "webhook": "opened",
    })


async def our_comments(session: aiohttp.ClientSession, stack: FullStack, repo: str, number: int) -> list[str]:
    comments = await sim_get(session, stack, f"/_sim/repos/{repo}/pulls/{number}/comments")
    return [c["body"] for c in comments if messages.PR_COMMENT_MARKER in c["body"]]


async def statuses(session: aiohttp.ClientSession, stack: FullStack, repo: str, sha: str = HEAD) -> list[str]:
    return [s["state"] for s in await sim_get(session, stack, f"/_sim/repos/{repo}/statuses/{sha}")]


async def pr_state(session: aiohttp.ClientSession, stack: FullStack, repo: str, number: int) -> str:
    return str((await sim_get(session, stack, f"/_sim/repos/{repo}/pulls/{number}"))["state"])


async def expire(db: asyncpg.Pool) -> None:
    """Move the deadline into the past: the database clock is the process edge tests may control."""
    async with db.acquire() as conn:
        await conn.execute("UPDATE challenges SET deadline_at = now() - interval '1 second' WHERE status = 'PENDING'")


async def as_sender(session: aiohttp.ClientSession, stack: FullStack, installation: int, repo: str, number: int,
                    action: str, login: str, user_id: int) -> None:
    """Send a pull_request webhook for the PR as GitHub would when `login` did `action` on it."""
    pr = await sim_get(session, stack, f"/_sim/repos/{repo}/pulls/{number}")
    payload: dict[str, Any] = {
        "action": action, "number": number, "pull_request": pr, "repository": pr["base"]["repo"],
        "installation": {"id": installation}, "sender": {"login": login, "id": user_id, "type": "User"},
    }
    await sim(session, stack, "/_sim/webhooks", {"event": "pull_request", "payload": payload})


async def gated_then_closed_on_timeout(session: aiohttp.ClientSession, stack: FullStack, db: asyncpg.Pool,
                                       repo: str, number: int) -> str:
    """Wait for the gate comment, pass the deadline, wait for prgate's close; the timeout comment."""
    await eventually(lambda: _has(our_comments(session, stack, repo, number)), timeout=30)
    await expire(db)

    async def closed() -> bool:
        return await pr_state(session, stack, repo, number) == "closed"

    await eventually(closed, timeout=30)
    [comment] = await our_comments(session, stack, repo, number)
    return comment


async def test_timeout_closes_and_a_maintainer_reopen_sticks(full_stack: FullStack, db: asyncpg.Pool) -> None:
    async with aiohttp.ClientSession() as session:
        await install(session, full_stack, 10, "acme", 1010, "acme/app")
        await open_pr(session, full_stack, "acme/app", 1, "newcomer", 501)
        comment = await gated_then_closed_on_timeout(session, full_stack, db, "acme/app", 1)
        assert "was closed because contributor verification was not completed" in comment
        await eventually(lambda: _first_is(statuses(session, full_stack, "acme/app"), "failure"), timeout=30)

        # A maintainer (write access, as the receiver asks GitHub) reopens it; prgate respects that and
        # never closes it again.
        async with session.put(f"{full_stack.simulator_url}/_sim/repos/acme/app/collaborators/maintainer",
                               json={"permission": "maintain", "id": 7}) as resp:
            assert resp.status == 200, await resp.text()
        await sim(session, full_stack, "/_sim/pulls", {"repo": "acme/app", "number": 1, "state": "open"})
        await as_sender(session, full_stack, 10, "acme/app", 1, "reopened", "maintainer", 7)

        async def acknowledged() -> bool:
            return (await our_comments(session, full_stack, "acme/app", 1)) == [
                messages.reopened_after_timeout_comment("newcomer", "maintainer")
            ]

        await eventually(acknowledged, timeout=30)
        await eventually(lambda: _first_is(statuses(session, full_stack, "acme/app"), "success"), timeout=30)
        await expire(db)
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM challenges WHERE status = 'PENDING'") == 0
        assert await pr_state(session, full_stack, "acme/app", 1) == "open"


async def test_warn_only_never_closes(full_stack: FullStack, db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await conn.execute("INSERT INTO repo_settings (repo_id, warn_only) VALUES (1020, true)")
    async with aiohttp.ClientSession() as session:
        await install(session, full_stack, 20, "warnco", 1020, "warnco/lib")
        await open_pr(session, full_stack, "warnco/lib", 3, "newcomer", 502)
        await eventually(lambda: _has(our_comments(session, full_stack, "warnco/lib", 3)), timeout=30)
        await expire(db)

        async def warned() -> bool:
            bodies = await our_comments(session, full_stack, "warnco/lib", 3)
            return bool(bodies) and "deadline has passed" in bodies[0]

        await eventually(warned, timeout=30)
        await eventually(lambda: _first_is(statuses(session, full_stack, "warnco/lib"), "failure"), timeout=30)
        assert await pr_state(session, full_stack, "warnco/lib", 3) == "open"


def comment_webhook(installation: int, repo_id: int, repo: str, number: int, body: str, login: str,
                    user_id: int, comment_id: int) -> dict[str, Any]:
    """An issue_comment.created delivery (real payload shape) for a comment on a pull request."""
    payload = fixture("issue_comment.created.0.json")
    payload.update({"installation": {"id": installation}})
    payload["repository"].update({"id": repo_id, "full_name": repo})
    payload["issue"].update({"number": number, "pull_request": {"url": "x"}})
    payload["comment"].update({"id": comment_id, "body": body})
    payload["comment"]["user"].update({"login": login, "id": user_id, "type": "User"})
    return {"event": "issue_comment", "payload": payload}


async def test_recheck_command_lets_a_newly_whitelisted_author_through(
    full_stack: FullStack, db: asyncpg.Pool
) -> None:
    async with aiohttp.ClientSession() as session:
        await install(session, full_stack, 35, "rechk", 1035, "rechk/lib")
        await open_pr(session, full_stack, "rechk/lib", 6, "friend", 506)
        await eventually(lambda: _has(our_comments(session, full_stack, "rechk/lib", 6)), timeout=30)
        async with db.acquire() as conn:  # a maintainer whitelists the author (owner API in real life)
            await conn.execute("INSERT INTO repo_settings (repo_id, whitelist_logins, whitelist_user_ids) "
                               "VALUES (1035, '{friend}', '{506}')")
        await sim(session, full_stack, "/_sim/webhooks",
                  comment_webhook(35, 1035, "rechk/lib", 6, "/prgate recheck", "friend", 506, 777))

        async def exempt() -> bool:
            return (await our_comments(session, full_stack, "rechk/lib", 6)) == [messages.exempt_comment("friend")]

        await eventually(exempt, timeout=30)
        await eventually(lambda: _first_is(statuses(session, full_stack, "rechk/lib"), "success"), timeout=30)
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM challenges") == "EXEMPTED"


async def test_exempt_command_through_github(full_stack: FullStack, db: asyncpg.Pool) -> None:
    async with aiohttp.ClientSession() as session:
        await install(session, full_stack, 30, "cmdco", 1030, "cmdco/tool")
        await open_pr(session, full_stack, "cmdco/tool", 4, "newcomer", 503)
        await eventually(lambda: _has(our_comments(session, full_stack, "cmdco/tool", 4)), timeout=30)
        await sim(session, full_stack, "/_sim/installations/30/repositories", {"id": 1030, "full_name": "cmdco/tool"})
        async with session.put(f"{full_stack.simulator_url}/_sim/repos/cmdco/tool/collaborators/lead",
                               json={"permission": "write", "id": 8}) as resp:
            assert resp.status in (200, 201), await resp.text()
        await sim(session, full_stack, "/_sim/webhooks",
                  comment_webhook(30, 1030, "cmdco/tool", 4, "/prgate exempt", "lead", 8, 4242))

        async def exempted() -> bool:
            return (await our_comments(session, full_stack, "cmdco/tool", 4)) == [
                messages.exempted_comment("newcomer", "lead")
            ]

        await eventually(exempted, timeout=30)
        await eventually(lambda: _first_is(statuses(session, full_stack, "cmdco/tool"), "success"), timeout=30)
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM challenges") == "EXEMPTED"


async def test_one_fleet_serves_unrelated_installations_without_crossing_them(
    full_stack: FullStack, db: asyncpg.Pool
) -> None:
    tenants = [(41, "north", 1041, "north/api"), (42, "south", 1042, "south/web"), (43, "east", 1043, "east/cli")]
    async with aiohttp.ClientSession() as session:
        for inst, login, repo_id, repo in tenants:
            await install(session, full_stack, inst, login, repo_id, repo)
        for inst, _, _, repo in tenants:
            for n in range(1, 6):
                await open_pr(session, full_stack, repo, n, f"dev{inst}{n}", inst * 100 + n)

        async def all_commented() -> bool:
            for _, _, _, repo in tenants:
                for n in range(1, 6):
                    if len(await our_comments(session, full_stack, repo, n)) != 1:
                        return False
            return True

        await eventually(all_commented, timeout=60)
        log = (await sim_get(session, full_stack, "/_sim/requests"))["requests"]
    owner_of = {str(repo_id): inst for inst, _, repo_id, _ in tenants}  # the worker acts by repository id
    touched = [(r["installation_id"], r["path"]) for r in log
               if r.get("installation_id") and r["path"].startswith("/repositories/")]
    assert touched
    for installation_id, path in touched:
        assert owner_of[path.split("/")[2]] == installation_id, (installation_id, path)
    async with db.acquire() as conn:
        per_inst = dict(await conn.fetch("SELECT installation_id, count(*) FROM challenges GROUP BY 1"))
    assert per_inst == {41: 5, 42: 5, 43: 5}


async def _has(coro: Any) -> bool:
    return bool(await coro)


async def _first_is(coro: Any, value: str) -> bool:
    items = await coro
    return bool(items) and items[0] == value


async def test_author_verifying_after_timeout_gets_the_pr_reopened(full_stack: FullStack, db: asyncpg.Pool) -> None:
    from prgate.demo import Demo

    async with aiohttp.ClientSession() as session:
        await install(session, full_stack, 50, "late", 1050, "late/repo")
        await open_pr(session, full_stack, "late/repo", 9, "sleepy", 509)
        timeout_comment = await gated_then_closed_on_timeout(session, full_stack, db, "late/repo", 9)
        link = next(w for w in timeout_comment.split() if "/verify/" in w)
        demo = Demo(session, full_stack.simulator_url, full_stack.backend_url, lambda _: None)
        await demo.verify_as(link, "sleepy")

        async def reopened_and_verified() -> bool:
            comments = await our_comments(session, full_stack, "late/repo", 9)
            return (await pr_state(session, full_stack, "late/repo", 9) == "open"
                    and comments == [messages.verified_comment("sleepy")])

        await eventually(reopened_and_verified, timeout=30)
        await eventually(lambda: _first_is(statuses(session, full_stack, "late/repo"), "success"), timeout=30)
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM challenges") == "VERIFIED"
        assert await conn.fetchval(
            "SELECT count(*) FROM bot_actions WHERE action_type = 'REOPEN_PR_WITH_COMMENT' AND status = 'DONE'"
        ) == 1


async def test_rename_then_reuse_of_the_name_the_timeout_close_lands_on_the_renamed_repository(
    full_stack: FullStack, db: asyncpg.Pool
) -> None:
    async with aiohttp.ClientSession() as session:
        await install(session, full_stack, 60, "a", 1060, "a/old")
        await open_pr(session, full_stack, "a/old", 1, "newcomer", 601)
        await eventually(lambda: _has(our_comments(session, full_stack, "a/old", 1)), timeout=30)
        # On GitHub: a/old becomes a/new (an event prgate never hears of: its stored name stays a/old),
        # and a new repository is created as a/old, with a pull request #1 of its own.
        async with session.patch(f"{full_stack.simulator_url}/_sim/repositories/1060",
                                 json={"full_name": "a/new"}) as resp:
            assert resp.status == 200, await resp.text()
        await sim(session, full_stack, "/_sim/installations/60/repositories",
                  {"id": 1061, "full_name": "a/old", "webhook": True})

        async def newcomer_installed() -> bool:
            async with session.get(f"{full_stack.backend_url}/api/v1/repos/1061/github-app-status") as resp:
                return bool((await resp.json())["installed"])

        await eventually(newcomer_installed, timeout=30)
        await open_pr(session, full_stack, "a/old", 1, "someone-else", 602)
        await eventually(lambda: _has(our_comments(session, full_stack, "a/old", 1)), timeout=30)
        # Only the first repository's challenge times out.
        async with db.acquire() as conn:
            await conn.execute("UPDATE challenges SET deadline_at = now() - interval '1 second' "
                               "WHERE status = 'PENDING' AND repo_id = 1060")

        async def renamed_closed() -> bool:
            return await pr_state(session, full_stack, "a/new", 1) == "closed"

        await eventually(renamed_closed, timeout=30)
        [closing] = await our_comments(session, full_stack, "a/new", 1)
        assert "was closed because contributor verification was not completed" in closing
        await eventually(lambda: _first_is(statuses(session, full_stack, "a/new"), "failure"), timeout=30)
        # The namesake's pull request #1 is untouched: open, its own gate comment only, still pending.
        assert await pr_state(session, full_stack, "a/old", 1) == "open"
        [own] = await our_comments(session, full_stack, "a/old", 1)
        assert "was closed" not in own
        assert await statuses(session, full_stack, "a/old") == ["pending"]
        async with db.acquire() as conn:
            assert await conn.fetchval(
                "SELECT status FROM challenges WHERE repo_id = 1061 AND pr_number = 1") == "PENDING"


async def test_repository_renamed_webhook_updates_the_stored_name(full_stack: FullStack, db: asyncpg.Pool) -> None:
    async with aiohttp.ClientSession() as session:
        await install(session, full_stack, 61, "b", 1070, "b/old")
        await open_pr(session, full_stack, "b/old", 4, "newcomer", 611)
        await eventually(lambda: _has(our_comments(session, full_stack, "b/old", 4)), timeout=30)
        async with session.patch(f"{full_stack.simulator_url}/_sim/repositories/1070",
                                 json={"full_name": "b/new", "webhook": True}) as resp:
            assert resp.status == 200, await resp.text()

        async def names() -> tuple[str, str]:
            async with db.acquire() as conn:
                member = await conn.fetchval(
                    "SELECT full_name FROM github_installation_repositories WHERE repo_id = 1070")
                challenge = await conn.fetchval(
                    "SELECT repo_full_name FROM challenges WHERE repo_id = 1070 AND status = 'PENDING'")
            return str(member), str(challenge)

        await eventually(lambda: _is(names(), ("b/new", "b/new")), timeout=30)
        async with db.acquire() as conn:
            assert await conn.fetchval(
                "SELECT status FROM webhook_deliveries WHERE event_name = 'repository'") == "ACCEPTED"
        await expire(db)

        async def closed() -> bool:
            return await pr_state(session, full_stack, "b/new", 4) == "closed"

        await eventually(closed, timeout=30)
        async with db.acquire() as conn:
            names_used = {r["repo_full_name"] for r in await conn.fetch(
                "SELECT repo_full_name FROM bot_actions WHERE action_type = 'CLOSE_PR_WITH_COMMENT'")}
        assert names_used == {"b/new"}


async def _is(coro: Any, value: Any) -> bool:
    return bool(await coro == value)
