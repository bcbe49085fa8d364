"""Helpers of the Bitbucket simulator tests: a seeded simulator over real HTTP, and a receiver."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from prgate.simulator.bitbucket.http import BB_STATE
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.server import BITBUCKET_APP
from provider_clients.bitbucket.api import BitbucketClient, RequestCounter
from tests.unit.simulator.support import FakeClock

ALICE = "557058:aaaaaaaa-0000-4000-8000-000000000001"  # a first-time contributor on acme
MAINTAINER = "557058:aaaaaaaa-0000-4000-8000-000000000002"  # write on acme/widgets
ACME_UUID = "{11111111-1111-4111-8111-111111111111}"
GLOBEX_UUID = "{22222222-2222-4222-8222-222222222222}"


class BB:
    """The simulator on a real port, seeded with workspaces `acme` (repos widgets, gadgets; one PR)
    and `globex` (repo secret-sauce; one PR), a token each, and two users."""

    def __init__(self, server: TestServer, session: aiohttp.ClientSession, clock: FakeClock) -> None:
        self.server = server
        self.session = session
        self.clock = clock
        self.base = str(server.make_url("/bitbucket"))
        self.state: BitbucketState = server.app[BITBUCKET_APP][BB_STATE]
        self.tokens: dict[str, str] = {}

    async def sim(self, method: str, path: str, json: Any = None, expect: int | None = None) -> Any:
        async with self.session.request(method, f"{self.base}/_sim{path}", json=json) as response:
            body = await response.json()
            if expect is not None:
                assert response.status == expect, body
            return body

    async def api(self, method: str, path: str, token: str | None, **kwargs: Any) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, f"{self.base}{path}", headers=headers, **kwargs) as response:
            text = await response.text()
            try:
                body: Any = await response.json(content_type=None)
            except ValueError:
                body = text
            return response.status, body, response.headers

    def client(self, workspace: str = "acme", counter: RequestCounter | None = None, **kwargs: Any) -> BitbucketClient:
        return BitbucketClient(self.session, self.base, self.tokens[workspace], counter=counter, **kwargs)

    async def seed(self) -> None:
        await self.sim("POST", "/workspaces", {"slug": "acme", "uuid": ACME_UUID}, 201)
        await self.sim("POST", "/workspaces", {"slug": "globex", "uuid": GLOBEX_UUID}, 201)
        for ws in ("acme", "globex"):
            self.tokens[ws] = (await self.sim("POST", f"/workspaces/{ws}/tokens", {}, 201))["token"]
        await self.sim("POST", "/users", {"account_id": ALICE, "nickname": "alice", "display_name": "Alice"}, 201)
        await self.sim("POST", "/users", {"account_id": MAINTAINER, "nickname": "maya", "display_name": "Maya"}, 201)
        await self.sim("POST", "/workspaces/acme/repositories",
                       {"slug": "widgets", "files": {".prgate.yml": "deadline_seconds: 600\n"}}, 201)
        await self.sim("POST", "/workspaces/acme/repositories", {"slug": "gadgets", "mainbranch": "master"}, 201)
        await self.sim("POST", "/workspaces/globex/repositories", {"slug": "secret-sauce"}, 201)
        await self.sim("PUT", f"/repositories/acme/widgets/permissions/{MAINTAINER}", {"permission": "write"})
        await self.sim("POST", "/repositories/acme/widgets/pullrequests",
                       {"author": ALICE, "title": "Fix the frobnicator", "source_branch": "fix/frob"}, 201)
        await self.sim("POST", "/repositories/globex/secret-sauce/pullrequests",
                       {"author": MAINTAINER, "title": "Globex change", "source_branch": "feature/x"}, 201)


@dataclass
class Delivery:
    name: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real webhook receiver: records every POST; answers `statuses` in turn (then 200)."""

    server: TestServer | None = None
    received: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    event: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delays:
            await asyncio.sleep(self.delays.pop(0))
        self.received.append(Delivery(request.match_info["name"], dict(request.headers), body))
        self.event.set()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"ok": status < 400}, status=status)

    def url(self, name: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(f"/hook/{name}"))

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async def enough() -> None:
            while len(self.received) < count:
                self.event.clear()
                await self.event.wait()

        await asyncio.wait_for(enough(), timeout)
