"""The simulator's Bitbucket driven over HTTP, as the process-level tests (e2e, chaos, bench) need it:
scenarios through its control API, its records read back, and `prgate bitbucket connect` run as the
operator runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from backend_api.challenges.messages import PR_COMMENT_MARKER
from bot_worker.providers.bitbucket.runner import markdown_payload
from provider_clients.bitbucket.hook_secret import bare_uuid, derive
from shared_contracts.actions import CommentPayload

MARKER = "prgate:pr-comment"


def as_shown(body: str) -> str:
    """A gate comment as the worker writes it on Bitbucket (its Markdown marker, not the HTML one)."""
    return markdown_payload(CommentPayload(marker=PR_COMMENT_MARKER, body=body)).body
_OURS = ("PRGATE_", "BITBUCKET_", "BACKEND_", "DATABASE_URL", "GITHUB_")


class Bitbucket:
    """The simulator's Bitbucket control API: what people do on Bitbucket, and what it recorded."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url  # the simulator's Bitbucket: {simulator}/bitbucket

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with self.session.post(f"{self.url}/_sim{path}", json=body) as resp:
            assert resp.status in (200, 201), await resp.text()
            return await resp.json()

    async def put(self, path: str, body: dict[str, Any]) -> Any:
        async with self.session.put(f"{self.url}/_sim{path}", json=body) as resp:
            assert resp.status in (200, 201), await resp.text()
            return await resp.json()

    async def get(self, path: str) -> Any:
        async with self.session.get(f"{self.url}/_sim{path}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def user(self, account_id: str, nickname: str) -> None:
        await self.post("/users", {"account_id": account_id, "nickname": nickname, "display_name": nickname.title()})

    async def workspace(self, slug: str, repos: list[str]) -> tuple[str, str]:
        """A workspace with its repositories and an access token; (bare uuid, token)."""
        ws = await self.post("/workspaces", {"slug": slug})
        for repo in repos:
            await self.post(f"/workspaces/{slug}/repositories", {"slug": repo})
        token = (await self.post(f"/workspaces/{slug}/tokens", {}))["token"]
        bare = bare_uuid(ws["uuid"])
        assert bare is not None
        return bare, str(token)

    async def open_pr(self, repo: str, author: str, branch: str) -> dict[str, Any]:
        pr: dict[str, Any] = await self.post(f"/repositories/{repo}/pullrequests",
                                             {"author": author, "source_branch": branch})
        assert all(d["status"] in (200, 202) for d in pr["deliveries"]), pr["deliveries"]
        return pr

    async def comment(self, repo: str, pr_id: int, user: str, raw: str) -> dict[str, Any]:
        comment: dict[str, Any] = await self.post(f"/repositories/{repo}/pullrequests/{pr_id}/comments",
                                                  {"user": user, "raw": raw})
        return comment

    async def comments(self, repo: str, pr_id: int) -> list[dict[str, Any]]:
        return list((await self.get(f"/repositories/{repo}/pullrequests/{pr_id}/comments"))["comments"])

    async def ours(self, repo: str, pr_id: int) -> list[str]:
        """prgate's comments: the marker, written by a workspace token's bot (an app_user)."""
        return [c["content"]["raw"] for c in await self.comments(repo, pr_id)
                if MARKER in c["content"]["raw"] and c["user"]["type"] == "app_user"]

    async def statuses(self, repo: str, commit: str) -> list[tuple[str, str]]:
        body = await self.get(f"/repositories/{repo}/commit/{commit}/statuses")
        return [(s["key"], s["state"]) for s in body["statuses"]]

    async def requests(self) -> list[dict[str, Any]]:
        return list((await self.get("/requests"))["requests"])


def cli(backend_url: str, admin_secret: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`prgate bitbucket …` as its own process, signing with the admin key as an operator's shell would."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    cli_env = {"PRGATE_ADMIN_SECRETS": admin_secret, "BACKEND_URL": backend_url,
               "PRGATE_DATA_DIR": str(cwd / "data")}
    return subprocess.run([sys.executable, "-m", "prgate.cli", "bitbucket", *args], env={**base, **cli_env, **env},
                          cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


async def connect(bb: Bitbucket, cwd: Path, *, backend_url: str, bot_url: str, master: str, slug: str,
                  ws_uuid: str, token: str, admin_secret: str) -> None:
    """`prgate bitbucket connect` (the real CLI); the simulator then holds our hook, at the receiver
    (`BOT_PUBLIC_URL` = `bot_url`) with the workspace's derived secret."""
    done = await asyncio.to_thread(cli, backend_url, admin_secret, cwd, "connect", slug, BITBUCKET_ACCESS_TOKEN=token)
    assert done.returncode == 0, (done.stdout, done.stderr)
    [hook] = (await bb.get(f"/workspaces/{slug}/hooks"))["hooks"]
    assert hook["url"] == f"{bot_url}/webhooks/bitbucket/{ws_uuid}"
    assert hook["secret"] == derive(master.encode(), ws_uuid)
