"""The scripted scenario `prgate up` plays against the simulator when no GitHub App is configured.

Everything goes through the real path: the simulator sends signed webhooks to the receiver,
the backend decides, workers write to the simulator's GitHub API.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urljoin

import aiohttp

PR_MARKER = "<!-- prgate:pr-comment -->"


class Demo:
    def __init__(self, session: aiohttp.ClientSession, simulator_url: str, backend_url: str,
                 say: Callable[[str], None]) -> None:
        self._s = session
        self._sim = simulator_url.rstrip("/")
        self._backend = backend_url.rstrip("/")
        self._say = say

    async def _sim_post(self, path: str, body: dict[str, Any]) -> Any:
        async with self._s.post(f"{self._sim}{path}", json=body) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def _get(self, url: str) -> Any:
        async with self._s.get(url) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def _until(self, what: str, probe: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await probe()
            if value:
                return value
            await asyncio.sleep(0.2)
        raise TimeoutError(f"demo step did not complete: {what}")

    async def _our_comment(self, repo: str, number: int) -> str | None:
        comments = await self._get(f"{self._sim}/_sim/repos/{repo}/pulls/{number}/comments")
        ours = [c["body"] for c in comments if PR_MARKER in c["body"]]
        return ours[-1] if ours else None

    async def _app_status(self, repo_id: int) -> Any:
        return await self._get(f"{self._backend}/api/v1/repos/{repo_id}/github-app-status")

    async def run(self) -> None:
        say = self._say
        say("1. GitHub: the App is installed on demo-org (repository demo-org/widgets)")
        await self._sim_post("/_sim/installations", {
            "id": 1, "account": {"login": "demo-org", "id": 100, "type": "Organization"},
            "repositories": [{"id": 1001, "full_name": "demo-org/widgets"}], "webhook": True,
        })
        status = await self._until("installation recorded", self._installed(1001, True))
        # The public status says only whether prgate is installed (the details are for the repo's admins).
        say(f"   backend: demo-org/widgets installed={status['installed']}")

        say("2. GitHub: first-timer (no association) opens pull request #1")
        await self._sim_post("/_sim/pulls", {
            "repo": "demo-org/widgets", "number": 1, "title": "Fix typo",
            "author": {"login": "first-timer", "id": 5001, "type": "User"}, "author_association": "NONE",
            "webhook": "opened",
        })
        body = await self._until("gate comment", lambda: self._our_comment("demo-org/widgets", 1))
        link = next((w for w in body.split() if "/verify/" in w), "?")
        say(f"   prgate commented on #1 asking to verify: {link}")

        say("3. first-timer opens the link, signs in with GitHub and accepts the statement")
        await self.verify_as(link, "first-timer")
        body = await self._until("verified comment", self._comment_says("demo-org/widgets", 1, "has verified"))
        say("   prgate: " + body.replace(PR_MARKER, "").strip().splitlines()[0])

        say("4. GitHub: maintainer (MEMBER) opens pull request #2")
        await self._sim_post("/_sim/pulls", {
            "repo": "demo-org/widgets", "number": 2, "title": "Release prep",
            "author": {"login": "maintainer", "id": 5002, "type": "User"}, "author_association": "MEMBER",
            "webhook": "opened",
        })
        body = await self._until("exempt comment", lambda: self._our_comment("demo-org/widgets", 2))
        say("   prgate: " + body.replace(PR_MARKER, "").strip().splitlines()[0])

        say("5. GitHub: demo-org adds repository demo-org/gears to the installation, then removes it")
        await self._sim_post("/_sim/installations/1/repositories",
                             {"id": 1002, "full_name": "demo-org/gears", "webhook": True})
        await self._until("repository added", self._installed(1002, True))
        say("   backend: demo-org/gears installed=True")
        async with self._s.delete(f"{self._sim}/_sim/installations/1/repositories/1002",
                                  json={"webhook": True}) as resp:
            resp.raise_for_status()
        status = await self._until("repository removed", self._installed(1002, False))
        say(f"   backend: demo-org/gears installed={status['installed']}")

        say("6. demo-org (admin) signs in and shortens demo-org/widgets' deadline to 10 s with the owner API;")
        say("   slow-poke opens pull request #3 and never verifies")
        await self.set_deadline_as_admin("demo-org", 1001, 10)
        await self._sim_post("/_sim/pulls", {
            "repo": "demo-org/widgets", "number": 3, "title": "Drive-by change",
            "author": {"login": "slow-poke", "id": 5003, "type": "User"}, "author_association": "NONE",
            "webhook": "opened",
        })
        await self._until("gate comment on #3", lambda: self._our_comment("demo-org/widgets", 3))
        say("   prgate gated #3; waiting for its deadline ...")

        async def closed() -> bool:
            return await self._pr_state("demo-org/widgets", 3) == "closed"

        await self._until("timeout close", closed, timeout=60)
        say("   the deadline passed: prgate closed #3 with a comment (slow-poke can still verify to reopen it)")

    @staticmethod
    async def _sign_in(browser: aiohttp.ClientSession, login_url: str, login: str) -> str:
        """GitHub's OAuth web flow; returns the page the backend sends the signed-in person to."""
        async with browser.get(login_url, allow_redirects=False) as resp:
            authorize = resp.headers["Location"]
        # On GitHub the person clicks "Authorize"; the simulator takes the login as a parameter.
        async with browser.get(f"{authorize}&login={login}") as resp:
            return await resp.text()

    async def verify_as(self, link: str, login: str) -> None:
        """The real browser flow over HTTP: verification page → GitHub sign-in → form submit."""
        # A cookie jar of its own; unsafe=True because the demo's hosts are IP addresses.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(link) as resp:
                page = await resp.text()
            sign_in = re.search(r'href="([^"]*/auth/github/login[^"]*)"', page)
            if sign_in is None:
                raise RuntimeError("verification page offers no sign-in")
            page = await self._sign_in(browser, urljoin(link, html.unescape(sign_in.group(1))), login)
            csrf = re.search(r'name=csrf value="([^"]+)"', page)
            if csrf is None:
                raise RuntimeError(f"no verification form for {login} (status {resp.status})")
            async with browser.post(link, data={"csrf": html.unescape(csrf.group(1)), "accept": "yes"}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"verification refused with {resp.status}")

    async def set_deadline_as_admin(self, login: str, repo_id: int, seconds: int) -> None:
        """The owner API, signed in with GitHub as a repository admin."""
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            page = await self._sign_in(browser, f"{self._backend}/auth/github/login?next=/api/v1/session", login)
            csrf = json.loads(page)["csrf_token"]
            url = f"{self._backend}/api/v1/repos/{repo_id}/settings"
            async with browser.put(url, json={"deadline_seconds": seconds}, headers={"X-CSRF-Token": csrf}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"settings refused with {resp.status}: {await resp.text()}")

    async def _pr_state(self, repo: str, number: int) -> str:
        return str((await self._get(f"{self._sim}/_sim/repos/{repo}/pulls/{number}"))["state"])

    def _comment_says(self, repo: str, number: int, text: str) -> Callable[[], Awaitable[str | None]]:
        async def probe() -> str | None:
            body = await self._our_comment(repo, number)
            return body if body and text in body else None
        return probe

    def _installed(self, repo_id: int, expected: bool) -> Callable[[], Awaitable[Any]]:
        async def probe() -> Any:
            status = await self._app_status(repo_id)
            return status if status["installed"] is expected else None
        return probe
