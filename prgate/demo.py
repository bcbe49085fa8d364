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


PRS_PER_PLAY = 3


class Demo:
    """`play` counts the earlier plays on the same data (0 the first time): the backend remembers
    those pull requests and contributors, so a replay opens the next numbers, with contributors
    who are new to it, and puts back the deadline the last play shortened."""

    def __init__(self, session: aiohttp.ClientSession, simulator_url: str, backend_url: str,
                 say: Callable[[str], None], *, play: int = 0) -> None:
        self._s = session
        self._sim = simulator_url.rstrip("/")
        self._backend = backend_url.rstrip("/")
        self._say = say
        self._play = play

    def _pr(self, step: int) -> int:
        return self._play * PRS_PER_PLAY + step

    def _contributor(self, login: str, user_id: int) -> dict[str, Any]:
        # The first play's logins and ids; a replay's are new to the backend (never verified, never gated).
        if self._play == 0:
            return {"login": login, "id": user_id, "type": "User"}
        return {"login": f"{login}-{self._play + 1}", "id": user_id + 100 * self._play, "type": "User"}

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

        if self._play:
            say(f"   (played {self._play} time(s) on this data before: this play opens #{self._pr(1)}-#{self._pr(3)} "
                "with new contributors; `prgate up --reset` starts from scratch)")
            await self.patch_settings_as_admin("demo-org", 1001, {"deadline_seconds": None})
            say("   demo-org/widgets' deadline is back to its default (the last play shortened it)")

        first_timer = self._contributor("first-timer", 5001)
        one, two, three = self._pr(1), self._pr(2), self._pr(3)
        say(f"2. GitHub: {first_timer['login']} (no association) opens pull request #{one}")
        await self._sim_post("/_sim/pulls", {
            "repo": "demo-org/widgets", "number": one, "title": "Fix typo",
            "author": first_timer, "author_association": "NONE",
            "webhook": "opened",
        })
        body = await self._until("gate comment", lambda: self._our_comment("demo-org/widgets", one))
        link = next((w for w in body.split() if "/verify/" in w), "?")
        say(f"   prgate commented on #{one} asking to verify: {link}")

        say(f"3. {first_timer['login']} opens the link, signs in with GitHub and accepts the statement")
        await self.verify_as(link, first_timer["login"])
        body = await self._until("verified comment", self._comment_says("demo-org/widgets", one, "has verified"))
        say("   prgate: " + body.replace(PR_MARKER, "").strip().splitlines()[0])

        say(f"4. GitHub: maintainer (MEMBER) opens pull request #{two}")
        await self._sim_post("/_sim/pulls", {
            "repo": "demo-org/widgets", "number": two, "title": "Release prep",
            "author": {"login": "maintainer", "id": 5002, "type": "User"}, "author_association": "MEMBER",
            "webhook": "opened",
        })
        body = await self._until("exempt comment", lambda: self._our_comment("demo-org/widgets", two))
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

        slow_poke = self._contributor("slow-poke", 5003)
        say("6. demo-org (admin) signs in and shortens demo-org/widgets' deadline to 10 s with the owner API;")
        say(f"   {slow_poke['login']} opens pull request #{three} and never verifies")
        await self.patch_settings_as_admin("demo-org", 1001, {"deadline_seconds": 10})
        await self._sim_post("/_sim/pulls", {
            "repo": "demo-org/widgets", "number": three, "title": "Drive-by change",
            "author": slow_poke, "author_association": "NONE",
            "webhook": "opened",
        })
        await self._until(f"gate comment on #{three}", lambda: self._our_comment("demo-org/widgets", three))
        say(f"   prgate gated #{three}; waiting for its deadline ...")

        async def closed() -> bool:
            return await self._pr_state("demo-org/widgets", three) == "closed"

        await self._until("timeout close", closed, timeout=60)
        say(f"   the deadline passed: prgate closed #{three} with a comment "
            f"({slow_poke['login']} can still verify to reopen it)")
        say(f"   see it as GitHub shows it: {self._sim}/demo-org/widgets/pull/{three} "
            f"(and {self._sim}/demo-org/widgets, {self._sim}/demo-org)")

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

    async def patch_settings_as_admin(self, login: str, repo_id: int, changes: dict[str, Any]) -> None:
        """The owner API, signed in with GitHub as a repository admin (a JSON merge patch: null is
        the default)."""
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            page = await self._sign_in(browser, f"{self._backend}/auth/github/login?next=/api/v1/session", login)
            csrf = json.loads(page)["csrf_token"]
            url = f"{self._backend}/api/v1/repos/{repo_id}/settings"
            async with browser.patch(url, json=changes, headers={"X-CSRF-Token": csrf}) as resp:
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
