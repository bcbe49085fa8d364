"""The settings page of a Bitbucket repository in a real browser: the backend as a real process, the
simulator (Bitbucket under /bitbucket: its OAuth consumer, `GET /2.0/user`, the workspace's token and
the repository permissions) in-process on a real port.

An admin (Bitbucket says so, asked with the workspace's token) signs in with Bitbucket from the
page, edits, and the change is stored and shown, by name and by id; a user with write only is
refused and nothing is written; a GitHub session is refused and offered the Bitbucket sign-in.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from cryptography.fernet import Fernet
from playwright.async_api import Browser, Page, expect

from backend_api.store import bitbucket as bitbucket_store
from tests.e2e.conftest import page_backend
from tests.support.bitbucket import connect_stored
from tests.support.bitbucket_gate import bb_settings, bitbucket
from tests.support.browser import chromium, shot
from tests.support.github_sim import Simulator
from tests.support.rows import snapshot

KEY = Fernet.generate_key().decode()
WORKSPACE_UUID = "3c3c3c3c-1d1d-4e2e-8f3f-404040404040"
FULL_NAME = "acme/widgets"
NAME_PATH = f"/settings/{FULL_NAME}?provider=bitbucket"


@dataclass
class Stack:
    backend_url: str
    simulator: Simulator
    shots: Path
    repo_id: int
    friend_id: int  # a Bitbucket account prgate knows (nickname "friend"): whitelistable


@pytest.fixture
async def stack(db: asyncpg.Pool, database_url: str, simulator: Simulator, tmp_path: Path) -> AsyncIterator[Stack]:
    sim = bitbucket(simulator)
    sim.add_workspace("acme", uuid=WORKSPACE_UUID)
    repo = sim.add_repository("acme", "widgets")
    for account_id, nickname, level in (("557058:alice", "alice", "admin"), ("557058:walt", "walt", "write")):
        sim.add_user(account_id, nickname=nickname, display_name=nickname.title())
        sim.set_permission("acme", "widgets", account_id, level)  # type: ignore[arg-type]
    tenant = await connect_stored(db, KEY, workspace_uuid=WORKSPACE_UUID, slug="acme",
                                  token=sim.create_token("acme").value)
    async with db.acquire() as conn:
        repo_id, _ = await bitbucket_store.recorded_repository(conn, tenant, bitbucket_store.DiscoveredRepository(
            repo_uuid=repo.uuid.strip("{}"), full_name=FULL_NAME, main_branch="main", private=True))
        # Someone who opened a pull request in the workspace: prgate knows the account by its nickname.
        friend = await bitbucket_store.user_ids(conn, [bitbucket_store.AccountInfo(
            account_uuid="bbbbbbbb-0000-4000-8000-000000000009", account_id="557058:friend", nickname="friend")])
    simulator.state.set_permission("octo-org/widgets", "alice", "admin", 9601)  # a GitHub "alice" too
    extra = {"PRGATE_ENCRYPTION_KEY": KEY, **bb_settings(simulator)}
    async with page_backend(database_url, simulator, tmp_path, operators="octo-operator:9500",
                            extra_env=extra) as backend_url:
        yield Stack(backend_url, simulator, tmp_path, repo_id, next(iter(friend.values())))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


async def bitbucket_sign_in_at(page: Page, stack: Stack, path: str, nickname: str) -> None:
    """Open ``path`` signed out (the sign-in page, 401, offering Bitbucket's sign-in only), sign in on
    the simulator's Bitbucket, come back to it."""
    response = await page.goto(f"{stack.backend_url}{path}")
    assert response is not None
    assert response.status == 401
    await expect(page.get_by_role("link", name="Sign in with GitHub")).to_have_count(0)
    await page.get_by_role("link", name="Sign in with Bitbucket").click()
    await page.wait_for_url(re.compile(re.escape(stack.simulator.url) + r"/bitbucket/site/oauth2/authorize"))
    await page.get_by_label("Account id or nickname").fill(nickname)
    await page.get_by_role("button", name="Grant access").click()
    await page.wait_for_url(f"{stack.backend_url}{path}")


async def stored(db: asyncpg.Pool, repo_id: int) -> dict[str, object] | None:
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM repo_settings WHERE repo_id = $1", repo_id)
    return None if row is None else dict(row)


async def test_a_bitbucket_admin_signs_in_with_bitbucket_and_edits(
    stack: Stack, browser: Browser, db: asyncpg.Pool
) -> None:
    page = await (await browser.new_context()).new_page()
    await bitbucket_sign_in_at(page, stack, NAME_PATH, "alice")
    main = page.locator("main")
    await expect(main).to_contain_text(f"Gate settings of {FULL_NAME}")
    await expect(main).to_contain_text(f"Bitbucket repository {stack.repo_id}")
    await expect(page.get_by_role("link", name=FULL_NAME)).to_have_attribute(
        "href", f"{stack.simulator.url}/bitbucket/{FULL_NAME}")
    whitelist = page.locator("fieldset", has=page.locator("legend", has_text=re.compile("^whitelist_logins$")))
    await expect(whitelist.locator(".help")).to_contain_text("Bitbucket nicknames")
    await expect(whitelist.locator(".help")).not_to_contain_text("GitHub logins")
    # Author associations are GitHub's: not offered here.
    await expect(page.locator("legend", has_text="exempt_associations")).to_have_count(0)
    await expect(page.get_by_label("CONTRIBUTOR", exact=True)).to_have_count(0)
    await shot(page, stack.shots, "bitbucket-settings-before")

    await page.get_by_label("Deadline (seconds)").fill("7200")
    await page.get_by_label("Warn only").check()
    await page.get_by_label("Whitelisted logins").fill("Friend")
    await page.get_by_role("button", name="Save settings").click()
    await page.wait_for_url(f"{stack.backend_url}{NAME_PATH}&saved=1")
    await expect(page.get_by_role("status")).to_have_text("Settings saved.")

    row = await stored(db, stack.repo_id)
    assert row is not None
    assert (row["deadline_seconds"], row["warn_only"]) == (7200, True)
    assert (row["whitelist_logins"], row["whitelist_user_ids"]) == (["Friend"], [stack.friend_id])
    assert row["exempt_associations"] == ["OWNER", "MEMBER", "COLLABORATOR"]  # not shown, kept as it was

    # By id too; a name prgate knows no account of is refused and nothing changes.
    await page.goto(f"{stack.backend_url}/settings/{stack.repo_id}")
    await expect(page.get_by_label("Deadline (seconds)")).to_have_value("7200")
    await expect(page.get_by_label("Whitelisted logins")).to_have_value("Friend")
    before = await snapshot(db)
    await page.get_by_label("Whitelisted logins").fill("nobody-known")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    await expect(page.get_by_role("alert")).to_contain_text("nobody-known")
    assert await snapshot(db) == before


async def test_a_bitbucket_user_without_admin_is_refused(stack: Stack, browser: Browser, db: asyncpg.Pool) -> None:
    page = await (await browser.new_context()).new_page()
    await bitbucket_sign_in_at(page, stack, NAME_PATH, "walt")  # signing in records walt's account
    before = await snapshot(db)
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("Bitbucket says write")
    await expect(page.get_by_role("button", name="Save settings")).to_have_count(0)
    assert await stored(db, stack.repo_id) is None
    # A form posted anyway (the CSRF token of another page is not this one's) writes nothing either.
    response = await page.request.post(f"{stack.backend_url}{NAME_PATH}", form={"deadline_seconds": "600"})
    assert response.status == 403
    assert await snapshot(db) == before


async def test_a_github_session_is_refused_and_offered_bitbucket(stack: Stack, browser: Browser) -> None:
    page = await (await browser.new_context()).new_page()
    # Sign in with GitHub as "alice" (a GitHub admin elsewhere; a Bitbucket admin here shares the name).
    response = await page.goto(f"{stack.backend_url}/settings/octo-org/widgets")
    assert response is not None
    assert response.status == 401
    await page.get_by_role("link", name="Sign in with GitHub").click()
    await page.get_by_label("Username").fill("alice")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{stack.backend_url}/settings/octo-org/widgets")
    refused = await page.goto(f"{stack.backend_url}{NAME_PATH}")
    assert refused is not None
    assert refused.status == 403
    await expect(page.get_by_role("alert")).to_contain_text("signed in with GitHub")
    await expect(page.get_by_role("link", name="Sign in with Bitbucket")).to_be_visible()
