"""Headless Chromium (Debian's, driven by Playwright) against a backend running as a real process.

Playwright's own browser download is never used: ``make test`` installs Debian's ``chromium`` when
``/usr/bin/chromium`` is missing, and the tests launch that binary.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright

from bot_worker.providers.github.normalize import installation_sync_event, pull_request_event
from shared_contracts import signing

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def shot(page: Page, directory: Path, name: str) -> Path:
    """A full-page screenshot kept in the test's tmp dir (to look at when a page test fails)."""
    path = directory / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


class InternalApi:
    """Signed calls to a backend process's internal API, as the webhook receiver makes them."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, secret: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.secret = secret

    async def post(self, path: str, body: Any) -> Any:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **signing.sign(self.secret, "POST", path, data)}
        async with self.session.post(f"{self.base_url}{path}", data=data, headers=headers) as resp:
            answer = await resp.json()
            assert resp.status == 200, (resp.status, answer)
            return answer

    async def installation(self, delivery_id: str, event_name: str, payload: dict[str, Any]) -> Any:
        event = installation_sync_event(delivery_id, event_name, payload)
        return await self.post("/internal/v2/github/events/installation-sync", event.model_dump(mode="json"))

    async def pull_request(self, delivery_id: str, payload: dict[str, Any]) -> Any:
        event = pull_request_event(delivery_id, payload)
        return await self.post("/internal/v2/github/events/pull-request", event.model_dump(mode="json"))
