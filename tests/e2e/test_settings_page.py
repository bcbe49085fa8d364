"""The settings page in a real browser: backend as a real process, GitHub (OAuth + API) simulated.

An admin (GitHub says so, asked with the installation token) edits and the change is stored and
shown, by id and by owner/repo; a non-admin is refused; a form post without or with a wrong CSRF
token is refused (403) and writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.conftest import INTERNAL_SECRET
from tests.e2e.conftest import page_backend
from tests.support.browser import InternalApi, chromium, shot
from tests.support.github_sim import Simulator
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.rows import snapshot

REPO_ID = 5001
FULL_NAME = "octo-org/widgets"
OPERATOR = "octo-operator"  # an operator of this prgate and an admin of the repository
ADMIN_ID = 9501


@dataclass
class Stack:
    backend_url: str
    simulator: Simulator
    shots: Path


@pytest.fixture
async def stack(db: asyncpg.Pool, database_url: str, simulator: Simulator, tmp_path: Path) -> AsyncIterator[Stack]:
    async with page_backend(database_url, simulator, tmp_path, operators=f"{OPERATOR}:{ADMIN_ID}") as backend_url:
        async with aiohttp.ClientSession() as session:
            api = InternalApi(session, backend_url, INTERNAL_SECRET)
            await api.installation("delivery-install", "installation", installation_payload("created"))
            gate = await api.pull_request("delivery-pr-7", pull_request_payload("opened", number=7))
            assert gate["decision"] == "GATE"
        simulator.state.set_permission(FULL_NAME, OPERATOR, "admin", ADMIN_ID)
        simulator.state.set_permission(FULL_NAME, "dev", "write", 9502)
        simulator.state.ensure_user("friend", 9503)
        yield Stack(backend_url, simulator, tmp_path)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


async def sign_in_at(page: Page, stack: Stack, path: str, login: str) -> None:
    """Open ``path`` signed out (the sign-in page, 401), sign in on the simulator, come back to it."""
    response = await page.goto(f"{stack.backend_url}{path}")
    assert response is not None
    assert response.status == 401
    await page.get_by_role("link", name="Sign in with GitHub").click()
    await page.wait_for_url(re.compile(re.escape(stack.simulator.url) + r"/login/oauth/authorize"))
    await page.get_by_label("Username").fill(login)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{stack.backend_url}{path}")


async def stored(db: asyncpg.Pool) -> dict[str, object] | None:
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM repo_settings WHERE repo_id = $1", REPO_ID)
    return None if row is None else dict(row)


async def test_an_admin_edits_the_settings_and_sees_them_stored(
    stack: Stack, browser: Browser, db: asyncpg.Pool
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in_at(page, stack, "/dashboard", OPERATOR)
    # The operator dashboard links each repository to its settings page.
    await page.locator("tr", has_text=FULL_NAME).get_by_role("link", name="settings").click()
    await page.wait_for_url(f"{stack.backend_url}/settings/{REPO_ID}")
    await expect(page.get_by_role("heading", name="Repository settings")).to_be_visible()
    main = page.locator("main")
    await expect(main).to_contain_text(f"Gate settings of {FULL_NAME}")
    # Every field with its help text and its default.
    for field, default in (("deadline_seconds", "Default: 259200 s (72 h)."), ("warn_only", "Default: off."),
                           ("gate_drafts", "Default: off."), ("exempt_bots", "Default: on."),
                           ("exempt_associations", "Default: OWNER, MEMBER, COLLABORATOR."),
                           ("whitelist_logins", "Default: none."), ("challenge_text", "Default: empty."),
                           ("challenge_question", "Default: empty."), ("reopen_on_verify", "Default: on."),
                           ("exempt_comment", "Default: on."), ("challenge_answer", "Default: none.")):
        fieldset = page.locator("fieldset", has=page.locator("legend", has_text=re.compile(f"^{field}$")))
        await expect(fieldset.locator(".help")).to_contain_text(default)
    await expect(page.get_by_label("Deadline (seconds)")).to_have_value("259200")
    await shot(page, stack.shots, "settings-before")

    await page.get_by_label("Deadline (seconds)").fill("3600")
    await page.get_by_label("Warn only").check()
    await page.get_by_label("Exempt bots").uncheck()
    await page.get_by_label("CONTRIBUTOR", exact=True).check()
    await page.get_by_label("Whitelisted logins").fill("friend")
    await page.get_by_label("Statement to accept").fill("I agree to the <b>CLA</b>.\nSigned.")
    await page.get_by_label("Question").fill("Which license?")
    await page.get_by_label("Expected answer").fill("MIT")
    await page.get_by_role("button", name="Save settings").click()
    await page.wait_for_url(f"{stack.backend_url}/settings/{REPO_ID}?saved=1")
    await expect(page.get_by_role("status")).to_have_text("Settings saved.")
    await shot(page, stack.shots, "settings-saved")

    row = await stored(db)
    assert row is not None
    assert (row["deadline_seconds"], row["warn_only"], row["exempt_bots"]) == (3600, True, False)
    assert row["exempt_associations"] == ["OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR"]
    assert (row["whitelist_logins"], row["whitelist_user_ids"]) == (["friend"], [9503])
    assert row["challenge_text"] == "I agree to the <b>CLA</b>.\nSigned."
    assert row["challenge_question"] == "Which license?"
    assert row["challenge_answer_hash"] is not None
    assert row["challenge_answer_hash"] != "MIT"

    # Shown by id and by owner/repo alike; the statement as text, not markup.
    for path in (f"/settings/{REPO_ID}", f"/settings/{FULL_NAME}"):
        await page.goto(f"{stack.backend_url}{path}")
        await expect(page.get_by_label("Deadline (seconds)")).to_have_value("3600")
        await expect(page.get_by_label("Warn only")).to_be_checked()
        await expect(page.get_by_label("Exempt bots")).not_to_be_checked()
        await expect(page.get_by_label("CONTRIBUTOR", exact=True)).to_be_checked()
        await expect(page.get_by_label("Whitelisted logins")).to_have_value("friend")
        await expect(page.get_by_label("Statement to accept")).to_have_value("I agree to the <b>CLA</b>.\nSigned.")
        await expect(page.get_by_label("Expected answer")).to_have_value("")
        await expect(page.locator("main")).to_contain_text("An answer is stored.")
        assert await page.locator("main b").count() == 0

    # Saving again with the answer box empty keeps the answer; a change by name is stored too.
    await page.get_by_label("Gate draft pull requests").check()
    await page.get_by_role("button", name="Save settings").click()
    await page.wait_for_url(f"{stack.backend_url}/settings/{FULL_NAME}?saved=1")
    again = await stored(db)
    assert again is not None
    assert (again["gate_drafts"], again["challenge_answer_hash"]) == (True, row["challenge_answer_hash"])
    await context.close()


async def test_a_non_admin_is_refused(stack: Stack, browser: Browser, db: asyncpg.Pool) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in_at(page, stack, f"/settings/{FULL_NAME}", "dev")  # GitHub says: write
    await expect(page.get_by_role("alert")).to_contain_text("@dev is not an admin")
    assert await page.locator("form[method=post] button", has_text="Save").count() == 0
    await shot(page, stack.shots, "settings-not-admin")
    response = await page.goto(f"{stack.backend_url}/settings/{REPO_ID}")
    assert response is not None
    assert response.status == 403
    # An unknown repository, by name or id, is a 404 page.
    for path in ("/settings/octo-org/nothing", "/settings/999999", "/settings/abc"):
        response = await page.goto(f"{stack.backend_url}{path}")
        assert response is not None
        assert response.status == 404, path
    # A post is refused too and writes nothing (first for its missing token, then for who it is).
    before = await snapshot(db)
    answer = await context.request.post(f"{stack.backend_url}/settings/{REPO_ID}", form={"warn_only": "yes"})
    assert answer.status == 403
    assert await snapshot(db) == before
    await context.close()


async def _csrf_of(page: Page) -> str:
    token = await page.locator("form[method=post] input[name=csrf]").first.get_attribute("value")
    assert token
    return token


async def _post(context: BrowserContext, url: str, form: dict[str, str]) -> tuple[int, str]:
    answer = await context.request.post(url, form=form, max_redirects=0)
    return answer.status, await answer.text()


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused_and_writes_nothing(
    stack: Stack, browser: Browser, db: asyncpg.Pool
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in_at(page, stack, f"/settings/{FULL_NAME}", OPERATOR)
    token = await _csrf_of(page)
    logout_token = await page.locator("form[action='/auth/logout'] input[name=csrf]").get_attribute("value")
    assert logout_token
    url = f"{stack.backend_url}/settings/{FULL_NAME}"
    wanted = {"deadline_seconds": "600", "warn_only": "yes"}
    before = await snapshot(db)
    wrong = ("y" if token[0] == "x" else "x") + token[1:]  # one character off (a token may start with x)
    for form in (wanted, {**wanted, "csrf": ""}, {**wanted, "csrf": wrong}, {**wanted, "csrf": logout_token}):
        status, text = await _post(context, url, form)
        assert status == 403, form
        assert "nothing was saved" in text
    # Another browser's session with this session's token: still refused (the token is the session's).
    other = await browser.new_context()
    status, _ = await _post(other, url, {**wanted, "csrf": token})
    assert status == 401
    await other.close()
    # A valid token with a value out of range: the form again (422), nothing saved.
    status, text = await _post(context, url, {**wanted, "deadline_seconds": "5", "csrf": token})
    assert status == 422
    assert "Nothing was saved" in text
    assert await snapshot(db) == before
    # The same post with the right token is stored.
    status, _ = await _post(context, url, {**wanted, "csrf": token})
    assert status == 303
    row = await stored(db)
    assert row is not None
    assert (row["deadline_seconds"], row["warn_only"]) == (600, True)
    await context.close()


async def _push_config(stack: Stack, content: str, delivery_id: str) -> dict[str, object]:
    """A commit of `.github/prgate.yml` on the simulator, and its push as the receiver forwards it."""
    sha = stack.simulator.state.commit_file(FULL_NAME, ".github/prgate.yml", content.encode(), "config",
                                            OPERATOR).sha
    async with aiohttp.ClientSession() as session:
        api = InternalApi(session, stack.backend_url, INTERNAL_SECRET)
        answer: dict[str, object] = await api.post("/internal/v2/github/events/config-push", {
            "delivery_id": delivery_id, "installation_id": 1001, "head_sha": sha,
            "repository": {"id": REPO_ID, "full_name": FULL_NAME}})
    return answer


async def test_fields_the_config_file_sets_are_read_only_and_a_save_keeps_their_stored_value(
    stack: Stack, browser: Browser, db: asyncpg.Pool
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in_at(page, stack, f"/settings/{FULL_NAME}", OPERATOR)
    await page.get_by_label("Deadline (seconds)").fill("7200")  # the page's own value, before any file
    await page.get_by_role("button", name="Save settings").click()
    await page.wait_for_url(f"{stack.backend_url}/settings/{FULL_NAME}?saved=1")

    assert (await _push_config(stack, "warn_only: true\ndeadline_seconds: 600\n", "push-1"))["status"] == "ACCEPTED"
    await page.goto(f"{stack.backend_url}/settings/{FULL_NAME}")
    main = page.locator("main")
    await expect(main).to_contain_text("The config file .github/prgate.yml sets deadline_seconds, warn_only")
    warn = page.get_by_label("Warn only")
    await expect(warn).to_be_checked()  # the file's value, in force
    await expect(warn).to_be_disabled()
    deadline = page.get_by_label("Deadline (seconds)")
    await expect(deadline).to_have_value("600")
    await expect(deadline).to_be_disabled()
    note = page.locator("fieldset", has=page.locator("legend", has_text="deadline_seconds")).get_by_role("note")
    await expect(note).to_contain_text(f"Set by {FULL_NAME}:.github/prgate.yml, which wins over this page")
    await expect(note).to_contain_text("The value saved here (7200 s (2 h)) applies again")
    await expect(page.get_by_label("Exempt bots")).to_be_enabled()  # not in the file: editable
    await shot(page, stack.shots, "settings-file")

    # A save changes what the page owns and keeps the stored value of what the file sets.
    await page.get_by_label("Exempt bots").uncheck()
    await page.get_by_role("button", name="Save settings").click()
    await page.wait_for_url(f"{stack.backend_url}/settings/{FULL_NAME}?saved=1")
    row = await stored(db)
    assert row is not None
    assert (row["deadline_seconds"], row["warn_only"], row["exempt_bots"]) == (7200, False, False)

    # An invalid file: its error above the form; the last valid one stays in force (still read-only).
    pushed = await _push_config(stack, "warn_only: true\ndeadline_seconds: 600\nwarn_onyl: 1\n", "push-2")
    assert "config file invalid" in str(pushed["reason"])
    await page.goto(f"{stack.backend_url}/settings/{FULL_NAME}")
    await expect(page.get_by_role("alert")).to_contain_text("is invalid")
    await expect(page.get_by_role("alert")).to_contain_text("warn_onyl: unknown key")
    await expect(page.get_by_label("Deadline (seconds)")).to_have_value("600")
    await expect(page.get_by_label("Deadline (seconds)")).to_be_disabled()

    # The file drops the keys: the page's saved values apply and are editable again.
    await _push_config(stack, "exempt_comment: false\n", "push-3")
    await page.goto(f"{stack.backend_url}/settings/{FULL_NAME}")
    await expect(page.get_by_label("Deadline (seconds)")).to_have_value("7200")
    await expect(page.get_by_label("Deadline (seconds)")).to_be_enabled()
    await expect(page.get_by_label("Warn only")).not_to_be_checked()
    await expect(page.get_by_label("Comment on exempt pull requests")).to_be_disabled()
    await context.close()
