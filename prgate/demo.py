"""The scripted scenario `prgate up` plays against the simulator when no GitHub App is configured.

Everything goes through the real path: the simulator sends signed webhooks to the receiver,
the backend decides, workers write to the simulator's GitHub API. Then the same for Bitbucket: a
workspace connected as `prgate bitbucket connect` does (the hook registered on the simulator's
Bitbucket), a newcomer's pull request gated and verified through "Sign in with Bitbucket".
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

from backend_api.challenges.messages import PR_COMMENT_MARKER
from bot_worker.providers.bitbucket.runner import markdown_payload
from prgate.bitbucket_cli import connect, connected_line
from shared_contracts.actions import CommentPayload

PR_MARKER = PR_COMMENT_MARKER
# How our comment's marker reads on Bitbucket (the worker writes it in Markdown, not HTML).
BITBUCKET_MARKER = markdown_payload(CommentPayload(marker=PR_COMMENT_MARKER, body=PR_COMMENT_MARKER)).marker

# The demo's Bitbucket workspace. Its UUIDs are fixed: the simulator starts empty on every run while
# the backend keeps the workspace, so the same UUIDs make a second run's connect the same workspace
# again (the token replaced, the hook created anew) rather than a slug taken over.
BB_WORKSPACE = "demo-team"
BB_WORKSPACE_UUID = "{d3e0a000-0000-4000-8000-00000000b0b0}"
BB_REPO = "gadgets"
BB_REPO_UUID = "{d3e0a000-0000-4000-8000-00000000b0b1}"


PRS_PER_PLAY = 3


class Demo:
    """`play` counts the earlier plays on the same data (0 the first time): the backend remembers
    those pull requests and contributors, so a replay opens the next numbers, with contributors
    who are new to it, and puts back the deadline the last play shortened."""

    def __init__(self, session: aiohttp.ClientSession, simulator_url: str, backend_url: str,
                 say: Callable[[str], None], *, play: int = 0, admin_key: str | None = None) -> None:
        self._s = session
        self._sim = simulator_url.rstrip("/")
        self._bb = f"{self._sim}/bitbucket"  # BITBUCKET_API_URL and BITBUCKET_WEB_URL of the demo
        self._backend = backend_url.rstrip("/")
        self._say = say
        self._play = play
        # Connecting a workspace is the operator's, signed with the admin key; without one, GitHub only.
        self._admin_key = admin_key

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
        if self._admin_key is not None:
            await self.run_bitbucket(self._admin_key)

    async def run_bitbucket(self, admin_key: str) -> None:
        say = self._say
        repo = f"{BB_WORKSPACE}/{BB_REPO}"
        say(f"7. Bitbucket: workspace {BB_WORKSPACE} (repository {repo}) is connected, "
            f"as `prgate bitbucket connect {BB_WORKSPACE}` does")
        await self._bb_post("/workspaces", {"slug": BB_WORKSPACE, "uuid": BB_WORKSPACE_UUID})
        await self._bb_post(f"/workspaces/{BB_WORKSPACE}/repositories", {"slug": BB_REPO, "uuid": BB_REPO_UUID})
        token = (await self._bb_post(f"/workspaces/{BB_WORKSPACE}/tokens", {}))["token"]
        answer = await connect(self._backend, admin_key, BB_WORKSPACE, str(token))
        say(f"   {connected_line(answer)}")
        hooks = (await self._get(f"{self._bb}/_sim/workspaces/{BB_WORKSPACE}/hooks"))["hooks"]
        say("   the hook on Bitbucket: " + ", ".join(h["url"] for h in hooks))

        # Each play a contributor new to the backend, on a pull request id the kept data has not seen.
        suffix = f"-{self._play + 1}" if self._play else ""
        nickname, account_id = f"newcomer{suffix}", f"557058:demo-newcomer{suffix}"
        number = self._play + 1
        await self._bb_post("/users", {"account_id": account_id, "nickname": nickname,
                                       "display_name": nickname.title()})
        say(f"8. Bitbucket: {nickname} (no permission on {repo}) opens pull request #{number}")
        pr = await self._bb_post(f"/repositories/{repo}/pullrequests", {
            "id": number, "author": account_id, "title": "Fix the frobnicator",
            "source_branch": f"{nickname}/frobnicator",
        })
        head = str(pr["source"]["commit"]["hash"])
        body = await self._until("Bitbucket gate comment", lambda: self._bb_comment(repo, number))
        link = next((w for w in body.split() if "/verify/" in w), "?")
        say(f"   prgate commented on #{number} asking to verify: {link}")

        say(f"9. {nickname} opens the link, signs in with Bitbucket and accepts the statement")
        await self.verify_as(link, nickname, provider="bitbucket")
        body = await self._until("Bitbucket verified comment", self._bb_comment_says(repo, number, "has verified"))
        say("   prgate: " + body.replace(BITBUCKET_MARKER, "").strip().splitlines()[0])
        state = await self._until("SUCCESSFUL status", self._bb_status(repo, head, "SUCCESSFUL"))
        say(f"   build status prgate on {head[:12]}: {state}")
        say(f"   see it as Bitbucket shows it: {self._bb}/{repo}/pull-requests/{number}")

    async def _bb_post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._sim_post(f"/bitbucket/_sim{path}", body)

    async def _bb_comment(self, repo: str, number: int) -> str | None:
        """Our comment: the marker, written by the workspace token's bot (an app_user)."""
        answer = await self._get(f"{self._bb}/_sim/repositories/{repo}/pullrequests/{number}/comments")
        ours = [c["content"]["raw"] for c in answer["comments"]
                if BITBUCKET_MARKER in c["content"]["raw"] and c["user"]["type"] == "app_user"]
        return ours[-1] if ours else None

    def _bb_comment_says(self, repo: str, number: int, text: str) -> Callable[[], Awaitable[str | None]]:
        async def probe() -> str | None:
            body = await self._bb_comment(repo, number)
            return body if body and text in body else None
        return probe

    def _bb_status(self, repo: str, commit: str, expected: str) -> Callable[[], Awaitable[str | None]]:
        async def probe() -> str | None:
            answer = await self._get(f"{self._bb}/_sim/repositories/{repo}/commit/{commit}/statuses")
            states = [s["state"] for s in answer["statuses"] if s["key"] == "prgate"]
            return expected if expected in states else None
        return probe

    @staticmethod
    async def _sign_in(browser: aiohttp.ClientSession, login_url: str, login: str, provider: str = "github") -> str:
        """The provider's OAuth web flow; returns the page the backend sends the signed-in person to."""
        async with browser.get(login_url, allow_redirects=False) as resp:
            authorize = resp.headers["Location"]
        # There the person clicks "Authorize" ("Grant access" on Bitbucket); the simulator takes who
        # as a parameter instead: GitHub's `login`, Bitbucket's `user` (a nickname or an account id).
        who = {"github": "login", "bitbucket": "user"}[provider]
        async with browser.get(f"{authorize}&{who}={login}") as resp:
            return await resp.text()

    async def verify_as(self, link: str, login: str, provider: str = "github") -> None:
        """The real browser flow over HTTP: verification page → sign-in with the challenge's provider
        (GitHub, or Bitbucket for a Bitbucket pull request) → form submit."""
        # A cookie jar of its own; unsafe=True because the demo's hosts are IP addresses.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(link) as resp:
                page = await resp.text()
            sign_in = re.search(rf'href="([^"]*/auth/{provider}/login[^"]*)"', page)
            if sign_in is None:
                raise RuntimeError(f"verification page offers no sign-in with {provider}")
            page = await self._sign_in(browser, urljoin(link, html.unescape(sign_in.group(1))), login, provider)
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
