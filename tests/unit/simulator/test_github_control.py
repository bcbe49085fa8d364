"""The GitHub simulator's /_sim/ control routes, its webhooks, and serving it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from cryptography.hazmat.primitives.asymmetric import rsa

from prgate.simulator import (
    run_simulator,
    send_webhook,
)
from prgate.simulator.core.types import iso
from tests.unit.simulator.support import (
    APP_ID,
    T0,
    ServerFactory,
    Sim,
    _config,
    _links,
)

# ---- /_sim/ control routes and webhooks ------------------------------------------------------------


async def test_control_routes_build_a_scenario(sim: Sim) -> None:
    assert (await sim.client.post("/_sim/reset")).status == 200
    assert sim.state.installations == {}
    created = await sim.client.post(
        "/_sim/installations",
        json={
            "id": 9,
            "account": {"login": "acme", "id": 90, "type": "Organization"},
            "repositories": [{"id": 91, "full_name": "acme/app", "private": True}],
        },
    )
    assert created.status == 201
    assert (await created.json())["account"]["login"] == "acme"
    added = await sim.client.post("/_sim/installations/9/repositories", json={"id": 92, "full_name": "acme/lib"})
    assert added.status == 201
    pr = await sim.client.post(
        "/_sim/pulls",
        json={
            "repo": "acme/app",
            "author": {"login": "eve", "id": 5, "type": "User"},
            "author_association": "FIRST_TIME_CONTRIBUTOR",
            "draft": True,
            "head_sha": "b" * 40,
        },
    )
    assert pr.status == 201
    pr_body = await pr.json()
    assert (pr_body["number"], pr_body["draft"], pr_body["head"]["sha"]) == (1, True, "b" * 40)
    updated = await sim.client.post("/_sim/pulls", json={"repo": "acme/app", "number": 1, "draft": False})
    assert updated.status == 200
    assert sim.state.get_pull_request("acme/app", 1).draft is False
    listing = await (await sim.client.get("/_sim/installations")).json()
    assert listing[0]["repositories"] == ["acme/app", "acme/lib"]
    token = await sim.token(9)
    repos = await (await sim.client.get("/installation/repositories", headers=sim.auth(token))).json()
    assert repos["total_count"] == 2
    removed = await sim.client.delete("/_sim/installations/9/repositories/92")
    assert removed.status == 200
    suspended = await sim.client.patch("/_sim/installations/9", json={"suspended": True})
    assert (await suspended.json())["suspended_at"] == iso(T0)
    assert (await sim.client.delete("/_sim/installations/9")).status == 200
    assert (await sim.client.post("/_sim/pulls", json={"repo": "acme/app"})).status == 404
    assert (await sim.client.post("/_sim/installations", json={"id": "x"})).status == 422


async def test_unknown_route_is_json_404(sim: Sim) -> None:
    token = await sim.token()
    response = await sim.client.get("/repos/octo/repo/nothing-here", headers=sim.auth(token))
    assert response.status == 404
    assert (await response.json())["message"] == "Not Found"


class Receiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Hub-Signature-256", ""), expected):
            return web.Response(status=401)
        self.received.append((dict(request.headers), json.loads(body)))
        self.arrived.set()
        return web.Response(status=202)


@pytest.fixture
async def receiver(aiohttp_server: ServerFactory) -> tuple[Receiver, str]:
    target = Receiver("hook-secret")
    app = web.Application()
    app.router.add_post("/webhooks/github", target.handle)
    server = await aiohttp_server(app)
    return target, str(server.make_url("/webhooks/github"))


async def test_send_webhook_signs_the_body(receiver: tuple[Receiver, str]) -> None:
    target, url = receiver
    async with aiohttp.ClientSession() as session:
        status = await send_webhook(session, url, "hook-secret", "ping", {"zen": "Keep it simple."}, "d-1")
        wrong = await send_webhook(session, url, "other-secret", "ping", {"zen": "x"})
    assert (status, wrong) == (202, 401)
    headers, payload = target.received[0]
    assert payload == {"zen": "Keep it simple."}
    assert headers["X-GitHub-Event"] == "ping"
    assert headers["X-GitHub-Delivery"] == "d-1"
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert headers["Content-Type"] == "application/json"


async def test_simulator_delivers_and_records_webhooks(
    make_sim: Callable[..., Awaitable[Sim]], receiver: tuple[Receiver, str]
) -> None:
    target, url = receiver
    sim = await make_sim(webhook_url=url, webhook_secret="hook-secret")
    response = await sim.client.post(
        "/_sim/pulls",
        json={"repo": "octo/repo", "author": {"login": "mallory", "id": 66}, "webhook": True},
    )
    body = await response.json()
    assert body["deliveries"][0]["status_code"] == 202
    headers, payload = target.received[-1]
    assert headers["X-GitHub-Event"] == "pull_request"
    assert payload["action"] == "opened"
    assert payload["installation"]["id"] == 123
    assert payload["pull_request"]["number"] == body["number"]
    assert payload["pull_request"]["user"]["login"] == "mallory"
    assert payload["repository"]["full_name"] == "octo/repo"

    # An API change (the bot closing the PR) is delivered in the background, like GitHub does.
    target.arrived.clear()
    token = await sim.token()
    await sim.client.patch(
        f"/repos/octo/repo/pulls/{body['number']}", headers=sim.auth(token), json={"state": "closed"}
    )
    await asyncio.wait_for(target.arrived.wait(), timeout=5)
    assert target.received[-1][1]["action"] == "closed"
    assert target.received[-1][1]["sender"]["login"] == "prgate[bot]"

    unreachable = await sim.client.post(
        "/_sim/webhooks", json={"event": "ping", "payload": {"zen": "z"}, "url": "http://127.0.0.1:9/nowhere"}
    )
    assert (await unreachable.json())["status_code"] == 0
    assert sim.state.deliveries[-1].status_code is None
    listed = await sim.client.get("/app/hook/deliveries?per_page=2", headers=sim.app_headers())
    items = await listed.json()
    assert [d["event"] for d in items] == ["ping", "pull_request"]
    assert _links(listed.headers["Link"])["next"]


async def test_run_simulator_serves_until_cancelled(app_key: rsa.RSAPrivateKey) -> None:
    port = unused_port()
    server = asyncio.create_task(run_simulator("127.0.0.1", port, _config(app_key)))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/_sim/health") as response:
                        assert await response.json() == {"ok": True, "app_id": APP_ID}
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)
            else:
                pytest.fail("simulator did not start")
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


async def test_a_comment_on_a_pull_request_delivers_issue_comment(
    make_sim: Callable[..., Awaitable[Sim]], receiver: tuple[Receiver, str]
) -> None:
    """As on GitHub: the PR arrives as an `issue` with a `pull_request` object, the comment and its author."""
    target, url = receiver
    sim = await make_sim(webhook_url=url, webhook_secret="hook-secret")
    pr = await (await sim.client.post("/_sim/pulls", json={"repo": "octo/repo", "author": {"login": "mallory"}})).json()
    quiet = await sim.client.post(f"/_sim/repos/octo/repo/pulls/{pr['number']}/comments",
                                  json={"body": "no webhook", "user": {"login": "mallory"}})
    assert (await quiet.json())["deliveries"] == []
    assert target.received == []
    response = await sim.client.post(
        f"/_sim/repos/octo/repo/pulls/{pr['number']}/comments",
        json={"body": "/prgate recheck", "user": {"login": "mallory", "id": 66}, "webhook": True},
    )
    assert response.status == 201
    body = await response.json()
    assert body["deliveries"][0]["status_code"] == 202
    headers, payload = target.received[-1]
    assert headers["X-GitHub-Event"] == "issue_comment"
    assert payload["action"] == "created"
    assert payload["issue"]["number"] == pr["number"]
    assert isinstance(payload["issue"]["pull_request"], dict)
    assert payload["comment"]["id"] == body["id"]
    assert payload["comment"]["body"] == "/prgate recheck"
    assert payload["comment"]["user"]["login"] == payload["sender"]["login"] == "mallory"
    assert payload["installation"]["id"] == 123
    assert payload["repository"]["full_name"] == "octo/repo"
