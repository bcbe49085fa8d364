"""The operator dashboard in a real browser: backend as a real process, GitHub (OAuth + API) simulated.

What a person sees: sign in with GitHub on the simulator's authorize page, land on the dashboard,
then each page. Screenshots go to the test's tmp dir.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from playwright.async_api import Browser, Page, expect

from backend_api.challenges import messages
from backend_api.challenges.verify import answer_hash
from backend_api.gate.deadlines import sweep_all
from backend_api.store import repo_settings
from shared_contracts.owner import RepoSettings
from tests.conftest import INTERNAL_SECRET
from tests.e2e.conftest import page_backend
from tests.support.bitbucket_gate import AUTHOR, add_users, bb_settings, connect_workspace, gate_bitbucket_pr
from tests.support.browser import InternalApi, chromium, shot
from tests.support.github_sim import Simulator
from tests.support.payloads import installation_payload, pull_request_payload

OPERATOR = "octo-operator"
FAILURE = "GitHub answered 422: Validation Failed <script>alert('x')</script>"
CONFIG_FILE = "warn_only: true\n<script>alert('cfg')</script>: 1\n"
RECONCILE_ERROR = "deferred to keep the rate-limit reserve: 998/5000 requests left <b>until</b> 12:00:00 UTC"


@dataclass
class PagesStack:
    backend_url: str
    simulator: Simulator
    shots: Path


@pytest.fixture
async def stack(
    db: asyncpg.Pool, database_url: str, simulator: Simulator, tmp_path: Path
) -> AsyncIterator[PagesStack]:
    async with page_backend(database_url, simulator, tmp_path,
                            operators=f"someone-else, {OPERATOR.upper()}",
                            extra_env=bb_settings(simulator)) as backend_url:
        await _seed(backend_url, db, simulator)
        yield PagesStack(backend_url, simulator, tmp_path)


def simulator_commit_prefix(stack: PagesStack, repo: str) -> str:
    return stack.simulator.state.commits[stack.simulator.state.repo_by_name(repo).id][-1].sha[:12]


async def _seed(backend_url: str, db: asyncpg.Pool, simulator: Simulator) -> None:
    """Through the real ingest path (signed internal API), plus one FAILED action and an invalid
    config file pushed to acme/x (read from the simulator by the backend)."""
    async with aiohttp.ClientSession() as session:
        api = InternalApi(session, backend_url, INTERNAL_SECRET)
        await api.installation("delivery-install-octo", "installation", installation_payload("created"))
        await api.installation("delivery-install-acme", "installation", installation_payload(
            "created", installation_id=2002, account_login="acme", account_id=778, repos=[(7001, "acme/x")],
        ))
        gate = await api.pull_request("delivery-pr-7-opened", pull_request_payload("opened", number=7))
        assert gate["decision"] == "GATE"
        member = await api.pull_request("delivery-pr-8-opened", pull_request_payload(
            "opened", number=8, author_login="maintainer", author_id=9201, association="MEMBER",
        ))
        assert member["decision"] == "EXEMPT"
        await api.pull_request("delivery-pr-9-opened", pull_request_payload(
            "opened", number=9, author_login="drive-by", author_id=9202,
        ))
        closed = await api.pull_request("delivery-pr-9-closed", pull_request_payload(
            "closed", number=9, author_login="drive-by", author_id=9202,
        ))
        assert closed["decision"] == "CANCELLED"
        await _seed_reconcile(api)
        sha = simulator.state.commit_file("acme/x", ".github/prgate.yml", CONFIG_FILE.encode(), "config", "acme").sha
        pushed = await api.post("/internal/v2/github/events/config-push", {
            "delivery_id": "delivery-push-acme", "installation_id": 2002, "head_sha": sha,
            "repository": {"id": 7001, "full_name": "acme/x"}})
        assert "config file invalid" in pushed["reason"]
    async with db.acquire() as conn:
        await conn.execute(
            """UPDATE bot_actions SET status = 'FAILED', attempt = max_attempts, last_error = $1,
                                      completed_at = now(), updated_at = now()
               WHERE action_id = (SELECT min(action_id) FROM bot_actions WHERE pr_number = 7)""",
            FAILURE,
        )


async def _seed_reconcile(api: InternalApi) -> None:
    """An earlier run that repaired nothing, then one that found a repository added without its webhook
    and a pull request opened while prgate was away, and was refused by GitHub once."""
    base = "/internal/v2/github/reconcile"
    quiet = (await api.post(f"{base}/runs", {"trigger": "schedule", "worker_id": "worker-a"}))["run_id"]
    await api.post(f"{base}/runs/{quiet}/finish", {"listed_installation_ids": [1001, 2002]})
    run = (await api.post(f"{base}/runs", {"trigger": "cli", "worker_id": "cli-host"}))["run_id"]
    octo = {"id": 1001, "account": {"id": 777, "login": "octo-org", "type": "Organization"}}
    gears = {"id": 5002, "full_name": "octo-org/gears", "private": False}
    await api.post(f"{base}/installation", {"run_id": run, "installation": octo, "repositories": [
        {"id": 5001, "full_name": "octo-org/widgets", "private": False}, gears,
    ]})
    await api.post(f"{base}/pull-requests", {"run_id": run, "installation_id": 1001, "repository": gears,
                                             "complete": True, "pull_requests": [{
        "id": 1, "number": 3, "state": "open", "author": {"id": 9301, "login": "late-comer", "type": "User"},
        "author_association": "MEMBER",  # exempt: the other pages' counts stay as they are
    }]})
    await api.post(f"{base}/runs/{run}/finish", {"listed_installation_ids": [1001, 2002], "errors": [
        {"installation_id": 2002, "repo_full_name": "acme/x", "message": RECONCILE_ERROR},
    ], "stats": {"installations": 2, "repositories": 3, "pull_requests": 1}})


async def sign_in(page: Page, stack: PagesStack, login: str) -> None:
    """Open the dashboard signed out and sign in with GitHub on the simulator's authorize page."""
    response = await page.goto(f"{stack.backend_url}/dashboard")
    assert response is not None
    assert response.status == 401
    await expect(page.get_by_text("Sign in with GitHub to continue")).to_be_visible()
    await page.get_by_role("link", name="Sign in with GitHub").click()
    await page.wait_for_url(re.compile(re.escape(stack.simulator.url) + r"/login/oauth/authorize"))
    await expect(page.get_by_role("heading", name="Sign in to GitHub")).to_be_visible()
    await page.get_by_label("Username").fill(login)
    await page.get_by_role("button", name="Sign in").click()


async def _main_text(page: Page) -> str:
    return await page.locator("main").inner_text()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


async def test_operator_signs_in_and_sees_every_page(stack: PagesStack, browser: Browser) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    alerts: list[str] = []
    page.on("dialog", lambda dialog: alerts.append(dialog.message))
    await sign_in(page, stack, OPERATOR)

    # Installations
    await page.wait_for_url(f"{stack.backend_url}/dashboard")
    await expect(page.get_by_role("heading", name="Installations", exact=True)).to_be_visible()
    await shot(page, stack.shots, "dashboard")
    octo = page.locator("h2", has_text="installation 1001")
    await expect(octo).to_contain_text("octo-org")
    await expect(octo).to_contain_text("ACTIVE")
    widgets = page.locator("tr", has_text="octo-org/widgets")
    await expect(widgets).to_contain_text("ACTIVE")
    await expect(widgets.locator("td").nth(4)).to_have_text("1")  # pending challenges
    await expect(page.locator("tr", has_text="acme/x").first).to_be_visible()
    await expect(page.locator(".who")).to_contain_text(f"Signed in as @{OPERATOR}")
    # The invalid config file, with its error (escaped: shown as text, never run) and the commit.
    await expect(page.get_by_role("heading", name="Invalid config files (1)")).to_be_visible()
    problem = page.locator("tr", has_text="unknown key")
    await expect(problem).to_contain_text("acme/x")
    await expect(problem).to_contain_text("<script>alert('cfg')</script>: unknown key")
    await expect(problem.locator("code")).to_have_text(simulator_commit_prefix(stack, "acme/x"))
    member_row = page.locator("h2 + table tr, table tr", has_text="acme/x").filter(has_text="ACTIVE")
    await expect(member_row.locator("td").nth(7)).to_have_text("invalid")  # the Config file column
    await expect(widgets.locator("td").nth(7)).to_have_text("")

    # Challenges: the pending one with its time left, the cancelled one as resolved.
    await page.get_by_role("link", name="Challenges").click()
    await page.wait_for_url(f"{stack.backend_url}/dashboard/challenges")
    pending = page.locator("tr", has_text="octo-org/widgets#7")
    await expect(pending).to_contain_text("@newcomer")
    await expect(pending.locator("td").nth(2)).to_have_text(re.compile(r"^2d \d+h left$"))  # of a 72 h deadline
    resolved = page.locator("tr", has_text="octo-org/widgets#9")
    await expect(resolved).to_contain_text("CANCELLED")
    await expect(resolved).to_contain_text("pull request closed")
    await expect(page.get_by_role("heading", name="Pending: 1")).to_be_visible()
    await shot(page, stack.shots, "challenges")

    # Outbox: counts and the failure's error, shown as text (not run as markup).
    await page.get_by_role("link", name="Outbox").click()
    await page.wait_for_url(f"{stack.backend_url}/dashboard/outbox")
    cards = page.locator(".card")
    await expect(cards.filter(has_text="failed")).to_contain_text("1")
    await expect(cards.filter(has_text="leased")).to_contain_text("0")
    await expect(cards.filter(has_text="pending (")).to_contain_text(re.compile(r"^\s*[1-9]\d*\s*pending"))
    await expect(cards.filter(has_text="oldest pending")).to_contain_text(re.compile(r"\d+[dhms]"))
    failure = page.locator("tr", has_text="octo-org/widgets#7")
    await expect(failure).to_contain_text(FAILURE)
    await expect(failure).to_contain_text("UPSERT_PR_COMMENT")
    assert await page.locator("main script").count() == 0
    await shot(page, stack.shots, "outbox")

    # Deliveries: ids, decisions and reasons.
    await page.get_by_role("link", name="Deliveries").click()
    await page.wait_for_url(f"{stack.backend_url}/dashboard/deliveries")
    text = await _main_text(page)
    for delivery in ("delivery-install-octo", "delivery-install-acme", "delivery-pr-7-opened",
                     "delivery-pr-8-opened", "delivery-pr-9-closed"):
        assert delivery in text
    await expect(page.locator("tr", has_text="delivery-pr-7-opened")).to_contain_text("GATE")
    member = page.locator("tr", has_text="delivery-pr-8-opened")
    await expect(member).to_contain_text("EXEMPT")
    await expect(member).to_contain_text("author association MEMBER")
    await shot(page, stack.shots, "deliveries")

    # Reconciliation: the last run, its repairs and its errors; the earlier run below.
    await page.get_by_role("link", name="Reconciliation").click()
    await page.wait_for_url(f"{stack.backend_url}/dashboard/reconcile")
    last_run = page.get_by_role("heading", name=re.compile(r"^Last run: \d+ \(cli, all installations"))
    await expect(last_run).to_be_visible()
    cards = page.locator(".card")
    await expect(cards.filter(has_text="repairs")).to_contain_text("2")
    await expect(cards.filter(has_text="errors")).to_contain_text("1")
    added = page.locator("tr", has_text="repository_added")
    await expect(added).to_contain_text("octo-org/gears")
    await expect(added).to_contain_text("missed installation_repositories.added")
    evaluated = page.locator("tr", has_text="pull_request_evaluated")
    await expect(evaluated.get_by_role("link", name="octo-org/gears#3")).to_be_visible()
    await expect(evaluated).to_contain_text("opened while prgate was away: EXEMPT")
    await expect(page.locator("tr", has_text="acme/x")).to_contain_text(RECONCILE_ERROR)  # as text, not markup
    await expect(page.get_by_role("heading", name="Earlier runs")).to_be_visible()
    earlier = page.locator("tr", has_text="schedule")
    await expect(earlier).to_have_count(1)
    await expect(earlier).to_contain_text("all installations")
    await shot(page, stack.shots, "reconcile")
    assert alerts == []

    # Signing out leads back to the sign-in page.
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(f"{stack.backend_url}/dashboard")
    await expect(page.get_by_role("link", name="Sign in with GitHub")).to_be_visible()
    await context.close()


async def test_a_signed_in_non_operator_sees_the_403_page(stack: PagesStack, browser: Browser) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, stack, "intruder")
    await page.wait_for_url(f"{stack.backend_url}/dashboard")
    await expect(page.get_by_role("heading", name="Not an operator")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("You are signed in as @intruder")
    await shot(page, stack.shots, "not-an-operator")
    text = await _main_text(page)
    assert "octo-org" not in text
    for path in ("/dashboard/challenges", "/dashboard/outbox", "/dashboard/deliveries", "/dashboard/reconcile"):
        response = await page.goto(f"{stack.backend_url}{path}")
        assert response is not None
        assert response.status == 403
        assert "newcomer" not in await _main_text(page)
        assert "delivery-" not in await _main_text(page)
    await context.close()


# ---- the contributor's verification page and the challenges page's outcomes (adoption papercuts) ----------


async def _link_token(db: asyncpg.Pool, pr_number: int) -> str:
    """The verification token of `pr_number`'s newest gate comment, as the contributor reads it on GitHub."""
    async with db.acquire() as conn:
        body = await conn.fetchval(
            """SELECT payload->>'body' FROM bot_actions WHERE pr_number = $1 AND payload ? 'body'
               ORDER BY action_id DESC LIMIT 1""", pr_number)
    return str(body).split("/verify/")[1].split()[0].rstrip(").")


async def _sign_in_to_verify(page: Page, stack: PagesStack, token: str, login: str) -> None:
    await page.goto(f"{stack.backend_url}/verify/{token}")
    await page.get_by_role("link", name="Sign in with GitHub").click()
    await page.get_by_label("Username").fill(login)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{stack.backend_url}/verify/{token}")


async def test_a_wrong_answer_keeps_the_form_as_sent_and_already_verified_reads_as_success(
    stack: PagesStack, browser: Browser, db: asyncpg.Pool
) -> None:
    async with db.acquire() as conn:
        await repo_settings.put(conn, 5001, RepoSettings(challenge_question="Which license does this project use?"))
        await conn.execute("UPDATE repo_settings SET challenge_answer_hash = $1 WHERE repo_id = 5001",
                           answer_hash("MIT"))
    token = await _link_token(db, 7)
    context = await browser.new_context()
    page = await context.new_page()
    await _sign_in_to_verify(page, stack, token, "newcomer")
    accept = page.get_by_label("I have read and accept the above.")
    await accept.check()
    await page.get_by_label("Which license does this project use?").fill("GPL")
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("alert")).to_contain_text("That answer is not right")
    await expect(accept).to_be_checked()  # only the answer was wrong: the statement stays accepted
    await expect(page.get_by_label("Which license does this project use?")).to_have_value("GPL")
    await page.get_by_label("Which license does this project use?").fill("MIT")
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("heading", name="Verified")).to_be_visible()

    # The link again: good news, in the green box, not an error.
    await page.goto(f"{stack.backend_url}/verify/{token}")
    await expect(page.get_by_role("heading", name="Already verified")).to_be_visible()
    notice = page.get_by_role("status")
    await expect(notice).to_contain_text("@newcomer has already verified")
    await expect(notice).to_have_class("ok")
    assert await page.get_by_role("alert").count() == 0
    await shot(page, stack.shots, "already-verified")
    await context.close()


async def test_a_warn_only_timeout_is_told_apart_from_a_close(
    stack: PagesStack, browser: Browser, db: asyncpg.Pool
) -> None:
    async with db.acquire() as conn:
        await conn.execute("UPDATE challenges SET deadline_at = now() - interval '1 second' WHERE pr_number = 7")
    assert await sweep_all(db, public_url=stack.backend_url, max_attempts=8) == 1  # PR 7: closed
    async with db.acquire() as conn:
        await repo_settings.put(conn, 5001, RepoSettings(warn_only=True))
    async with aiohttp.ClientSession() as session:
        api = InternalApi(session, stack.backend_url, INTERNAL_SECRET)
        gated = await api.pull_request("delivery-pr-11-opened", pull_request_payload(
            "opened", number=11, author_login="quiet-one", author_id=9211,
        ))
        assert gated["decision"] == "GATE"
    async with db.acquire() as conn:
        await conn.execute("UPDATE challenges SET deadline_at = now() - interval '1 second' WHERE pr_number = 11")
    assert await sweep_all(db, public_url=stack.backend_url, max_attempts=8) == 1  # PR 11: warned, left open

    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, stack, OPERATOR)
    await page.wait_for_url(f"{stack.backend_url}/dashboard")
    await page.goto(f"{stack.backend_url}/dashboard/challenges")
    closed = page.locator("tr", has_text="octo-org/widgets#7")
    warned = page.locator("tr", has_text="octo-org/widgets#11")
    await expect(closed.locator("td").nth(2)).to_have_text("TIMED_OUT")
    await expect(closed).to_contain_text(messages.RESOLUTION_TIMED_OUT_CLOSED)
    await expect(warned.locator("td").nth(2)).to_have_text("TIMED_OUT (left open)")
    await expect(warned).to_contain_text(messages.RESOLUTION_TIMED_OUT_WARNED)
    await shot(page, stack.shots, "timeouts")
    await context.close()


async def test_a_bitbucket_author_verifies_with_sign_in_with_bitbucket(
    stack: PagesStack, browser: Browser, db: asyncpg.Pool
) -> None:
    await connect_workspace(db)
    add_users(stack.simulator, AUTHOR)
    token = await gate_bitbucket_pr(db, stack.backend_url)
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{stack.backend_url}/verify/{token}")
    await expect(page.get_by_role("link", name="Sign in with GitHub")).to_have_count(0)
    await page.get_by_role("link", name="Sign in with Bitbucket").click()
    await page.wait_for_url(re.compile(re.escape(stack.simulator.url) + r"/bitbucket/site/oauth2/authorize"))
    await page.get_by_role("button", name="New Comer (newcomer)").click()  # the simulator's account picker
    await page.wait_for_url(f"{stack.backend_url}/verify/{token}")
    await expect(page.get_by_text("Signed in as @newcomer")).to_be_visible()
    await page.get_by_label("I have read and accept the above.").check()
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("heading", name="Verified")).to_be_visible()
    await expect(page.get_by_role("status")).to_contain_text("You are verified")
    await shot(page, stack.shots, "bitbucket-verified")
    await context.close()


async def test_bitbucket_workspaces_are_beside_the_installations(
    stack: PagesStack, browser: Browser, db: asyncpg.Pool
) -> None:
    tenant = await connect_workspace(db)  # acme, connected
    await gate_bitbucket_pr(db, stack.backend_url)  # records acme/widgets and a delivery for it
    async with db.acquire() as conn:
        repo_id = await conn.fetchval("SELECT repo_id FROM bitbucket_repositories WHERE full_name = 'acme/widgets'")
        gone = await conn.fetchval(
            """INSERT INTO bitbucket_workspaces (workspace_uuid, slug, status, disconnected_at)
               VALUES ('0e0e0e0e-1f1f-4a2a-8b3b-4c4c4c4c4c4c', 'globex', 'DISCONNECTED', now()) RETURNING tenant_id""")
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, stack, OPERATOR)
    await page.wait_for_url(f"{stack.backend_url}/dashboard")
    await expect(page.get_by_role("heading", name="Bitbucket workspaces")).to_be_visible()
    acme = page.locator("h3", has_text=f"workspace {tenant}")
    await expect(acme).to_contain_text("CONNECTED")
    await expect(acme.get_by_role("link", name="acme")).to_have_attribute(
        "href", f"{stack.simulator.url}/bitbucket/acme")
    await expect(page.locator("h3", has_text=f"workspace {gone}")).to_contain_text("DISCONNECTED")
    widgets = page.locator("tr", has_text="acme/widgets")
    await expect(widgets.locator("td").nth(1)).to_have_text(str(repo_id))
    await expect(widgets.locator("td").nth(4)).to_have_text("1")  # its pending challenge
    await expect(widgets.get_by_role("link", name="acme/widgets")).to_have_attribute(
        "href", f"{stack.simulator.url}/bitbucket/acme/widgets")
    await expect(page.locator(".card", has_text="Bitbucket workspaces")).to_contain_text("2")
    await shot(page, stack.shots, "dashboard-bitbucket")
    await widgets.get_by_role("link", name="settings").click()
    await page.wait_for_url(f"{stack.backend_url}/settings/{repo_id}")  # by id; a GitHub session is refused there
    await expect(page.get_by_role("alert")).to_contain_text("is a Bitbucket repository")

    # The delivery names the Bitbucket repository by its full name, not by its id.
    await page.goto(f"{stack.backend_url}/dashboard/deliveries")
    row = page.locator("tr", has_text="pullrequest")
    await expect(row.first).to_contain_text("acme/widgets")
    assert f"repo {repo_id}" not in await _main_text(page)
    await context.close()


async def test_api_reference_page_works_offline(stack: PagesStack, browser: Browser) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(stack.backend_url) else elsewhere.append(r.url))
    response = await page.goto(f"{stack.backend_url}/api/docs")
    assert response is not None
    assert response.status == 200
    await expect(page.get_by_role("heading", name="prgate API reference")).to_be_visible()
    await page.get_by_role("link", name="PUT /api/v1/repos/{repo_id}/settings").click()
    operation = page.locator("section.op", has_text="/api/v1/repos/{repo_id}/settings").filter(has_text="PUT")
    await expect(operation).to_contain_text("X-CSRF-Token")
    await operation.get_by_role("link", name="RepoSettingsUpdate").first.click()
    schema = page.locator("#schema-RepoSettingsUpdate table")
    await expect(schema.locator("tr", has_text="deadline_seconds")).to_contain_text("integer")
    await expect(schema.locator("tr", has_text="warn_only")).to_be_visible()
    assert "/internal/" not in await _main_text(page)
    await shot(page, stack.shots, "api-docs")
    assert elsewhere == []
    await context.close()
