"""The GitHub simulator, exercised over real HTTP (pytest-aiohttp's ``aiohttp_client``)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, unused_port
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from prgate.simulator import (
    SIM_STATE,
    FaultConfig,
    FaultInjector,
    FaultProfile,
    SimulatorConfig,
    SimulatorState,
    create_simulator_app,
    run_simulator,
    send_webhook,
)
from prgate.simulator.core.types import iso

APP_ID = 4242
T0 = 1_700_000_000.0
FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "github_openapi_routes.json"
OPENAPI_SPEC = Path(os.environ.get("GITHUB_OPENAPI_SPEC", "/tmp/package/generated/api.github.com.json"))

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
Client = TestClient[web.Request, web.Application]


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _pem_public(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Sim:
    """A running simulator seeded with two installations, their repositories and one PR."""

    def __init__(self, client: Client, clock: FakeClock, key: rsa.RSAPrivateKey) -> None:
        self.client = client
        self.clock = clock
        self.key = key
        self.state: SimulatorState = client.app[SIM_STATE]

    def seed(self) -> None:
        self.state.add_installation(123, "octo", 1, "Organization")
        self.state.add_repository(123, 1296269, "octo/repo")
        self.state.add_repository(123, 1296270, "octo/second", private=True)
        self.state.add_installation(456, "other", 2, "User")
        self.state.add_repository(456, 777, "other/repo")
        self.state.upsert_pull_request(
            "octo/repo", 17, author_login="alice", author_id=9, author_association="NONE", head_sha="a" * 40
        )
        self.state.upsert_pull_request("other/repo", 1, author_login="bob", author_id=10)

    def jwt(
        self,
        *,
        iat: float | None = None,
        exp: float | None = None,
        iss: str = str(APP_ID),
        key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        issued = self.clock.now - 30 if iat is None else iat
        return jwt.encode(
            {"iat": int(issued), "exp": int(issued + 540 if exp is None else exp), "iss": iss},
            key or self.key,
            algorithm="RS256",
        )

    def app_headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.jwt()}", "Accept": "application/vnd.github+json"}

    async def token(self, installation_id: int = 123, **body: Any) -> str:
        response = await self.client.post(
            f"/app/installations/{installation_id}/access_tokens", headers=self.app_headers(), json=body or None
        )
        assert response.status == 201, await response.text()
        data = await response.json()
        return str(data["token"])

    @staticmethod
    def auth(token: str, scheme: str = "token") -> dict[str, str]:
        return {"Authorization": f"{scheme} {token}", "Accept": "application/vnd.github+json"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _config(app_key: rsa.RSAPrivateKey, **overrides: Any) -> SimulatorConfig:
    return SimulatorConfig(app_id=APP_ID, app_public_key_pem=_pem_public(app_key), **overrides)


@pytest.fixture
def make_sim(
    aiohttp_client: ClientFactory, clock: FakeClock, app_key: rsa.RSAPrivateKey
) -> Callable[..., Awaitable[Sim]]:
    async def make(**overrides: Any) -> Sim:
        client = await aiohttp_client(create_simulator_app(_config(app_key, **overrides), clock=clock))
        sim = Sim(client, clock, app_key)
        sim.seed()
        return sim

    return make


@pytest.fixture
async def sim(make_sim: Callable[..., Awaitable[Sim]]) -> Sim:
    return await make_sim()


def _links(header: str) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', header)}


# ---- App JWT and installation tokens ----------------------------------------------------------


async def test_access_token_issued_for_valid_app_jwt(sim: Sim) -> None:
    response = await sim.client.post("/app/installations/123/access_tokens", headers=sim.app_headers())
    assert response.status == 201
    data = await response.json()
    assert data["token"].startswith("ghs_")
    assert len(data["token"]) == 520
    assert data["expires_at"] == iso(T0 + 3600)
    assert data["permissions"]["pull_requests"] == "write"
    assert data["repository_selection"] == "selected"
    assert sim.state.tokens_issued == {123: 1}
    pr = await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(data["token"]))
    assert pr.status == 200
    pr_bearer = await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(data["token"], "Bearer"))
    assert pr_bearer.status == 200
    counts = await (await sim.client.get("/_sim/tokens")).json()
    assert counts == {"issued": {"123": 1}, "active": {"123": 1}}


async def test_token_length_and_ttl_are_configurable(make_sim: Callable[..., Awaitable[Sim]]) -> None:
    sim = await make_sim(token_length=64, token_ttl_seconds=60)
    token = await sim.token()
    assert len(token) == 64
    assert (await sim.client.get("/repos/octo/repo", headers=sim.auth(token))).status == 200
    sim.clock.advance(61)
    expired = await sim.client.get("/repos/octo/repo", headers=sim.auth(token))
    assert expired.status == 401
    assert (await expired.json())["message"] == "Bad credentials"


async def test_jwt_with_integer_iss_is_accepted(sim: Sim) -> None:
    payload = json.dumps({"iat": int(T0) - 30, "exp": int(T0) + 500, "iss": APP_ID}).encode()
    token = jwt.api_jws.encode(payload, sim.key, algorithm="RS256")
    response = await sim.client.post("/app/installations/123/access_tokens", headers=sim.app_headers(token))
    assert response.status == 201


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong_key", "A JSON web token could not be decoded"),
        ("expired", "'Expiration time' claim ('exp') must be a numeric value"),
        ("too_long", "too far in the future"),
        ("wrong_iss", "'Issuer' claim ('iss')"),
        ("future_iat", "'Issued at' claim ('iat')"),
        ("hs256", "A JSON web token could not be decoded"),
        ("garbage", "A JSON web token could not be decoded"),
        ("installation_token", "A JSON web token could not be decoded"),
        ("missing", "Requires authentication"),
    ],
)
async def test_bad_app_jwt_is_rejected(sim: Sim, other_key: rsa.RSAPrivateKey, case: str, message: str) -> None:
    now = sim.clock.now
    headers: dict[str, str] = {}
    if case == "wrong_key":
        headers = sim.app_headers(sim.jwt(key=other_key))
    elif case == "expired":
        headers = sim.app_headers(sim.jwt(iat=now - 700, exp=now - 100))
    elif case == "too_long":
        headers = sim.app_headers(sim.jwt(iat=now - 10, exp=now - 10 + 700))
    elif case == "wrong_iss":
        headers = sim.app_headers(sim.jwt(iss="999"))
    elif case == "future_iat":
        headers = sim.app_headers(sim.jwt(iat=now + 300, exp=now + 500))
    elif case == "hs256":
        token = jwt.encode({"iat": int(now), "exp": int(now) + 60, "iss": str(APP_ID)}, "s" * 32, algorithm="HS256")
        headers = sim.app_headers(token)
    elif case == "garbage":
        headers = sim.app_headers("not-a-jwt")
    elif case == "installation_token":
        headers = sim.app_headers(await sim.token())
    response = await sim.client.post("/app/installations/123/access_tokens", headers=headers)
    assert response.status == 401
    body = await response.json()
    assert message in body["message"]
    assert body["documentation_url"].startswith("https://docs.github.com/")
    assert sim.state.tokens_issued.get(123, 0) == (1 if case == "installation_token" else 0)


async def test_unknown_installation_is_404(sim: Sim) -> None:
    response = await sim.client.post("/app/installations/999/access_tokens", headers=sim.app_headers())
    assert response.status == 404
    assert (await response.json())["message"] == "Not Found"
    assert sim.state.tokens_issued == {}


async def test_suspended_installation_gets_no_token(sim: Sim) -> None:
    token = await sim.token()
    sim.state.set_suspended(123, True)
    response = await sim.client.post("/app/installations/123/access_tokens", headers=sim.app_headers())
    assert response.status == 403
    assert (await sim.client.get("/repos/octo/repo", headers=sim.auth(token))).status == 401


async def test_api_requires_valid_installation_token(sim: Sim) -> None:
    missing = await sim.client.get("/repos/octo/repo/pulls/17")
    assert missing.status == 401
    assert (await missing.json())["message"] == "Requires authentication"
    bad = await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth("ghs_nope"))
    assert bad.status == 401
    assert (await bad.json())["message"] == "Bad credentials"
    app_jwt = await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.app_headers())
    assert app_jwt.status == 401


async def test_token_only_reaches_its_own_installation(sim: Sim) -> None:
    other = await sim.token(456)
    for method, path, body in [
        ("GET", "/repos/octo/repo/pulls/17", None),
        ("PATCH", "/repos/octo/repo/pulls/17", {"state": "closed"}),
        ("GET", "/repos/octo/repo/issues/17/comments", None),
        ("POST", "/repos/octo/repo/issues/17/comments", {"body": "hello"}),
        ("POST", "/repos/octo/repo/statuses/" + "a" * 40, {"state": "success"}),
        ("GET", "/repos/octo/repo/collaborators/alice/permission", None),
    ]:
        response = await sim.client.request(method, path, headers=sim.auth(other), json=body)
        assert response.status == 404, (method, path)
    assert sim.state.comments_for("octo/repo", 17) == []
    assert sim.state.get_pull_request("octo/repo", 17).state == "open"
    own = await sim.client.get("/repos/other/repo/pulls/1", headers=sim.auth(other))
    assert own.status == 200


async def test_token_downscoped_to_repositories_and_permissions(sim: Sim) -> None:
    token = await sim.token(123, repositories=["second"])
    assert (await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))).status == 404
    repos = await (await sim.client.get("/installation/repositories", headers=sim.auth(token))).json()
    assert [r["full_name"] for r in repos["repositories"]] == ["octo/second"]
    read_only = await sim.token(123, permissions={"pull_requests": "read", "issues": "read"})
    denied = await sim.client.post(
        "/repos/octo/repo/issues/17/comments", headers=sim.auth(read_only), json={"body": "x"}
    )
    assert denied.status == 403
    assert (await denied.json())["message"] == "Resource not accessible by integration"
    escalate = await sim.client.post(
        "/app/installations/123/access_tokens",
        headers=sim.app_headers(),
        json={"permissions": {"administration": "write"}},
    )
    assert escalate.status == 422


async def test_app_installations_and_installation_repositories(sim: Sim) -> None:
    for n in range(5):
        sim.state.add_repository(123, 5000 + n, f"octo/extra-{n}")
    installations = await sim.client.get("/app/installations", headers=sim.app_headers())
    assert installations.status == 200
    assert [i["id"] for i in await installations.json()] == [123, 456]
    token = await sim.token()
    first = await sim.client.get("/installation/repositories?per_page=3", headers=sim.auth(token))
    body = await first.json()
    assert body["total_count"] == 7
    assert len(body["repositories"]) == 3
    assert body["repository_selection"] == "selected"
    assert _links(first.headers["Link"])["last"].endswith("per_page=3&page=3")


# ---- comments, pagination -----------------------------------------------------------------------


async def test_comment_pagination_follows_link_header(sim: Sim) -> None:
    token = await sim.token()
    created_ids = []
    for n in range(75):
        response = await sim.client.post(
            "/repos/octo/repo/issues/17/comments", headers=sim.auth(token), json={"body": f"comment {n}"}
        )
        assert response.status == 201
        created_ids.append((await response.json())["id"])

    base = str(sim.client.make_url("/repos/octo/repo/issues/17/comments"))
    first = await sim.client.get("/repos/octo/repo/issues/17/comments?per_page=30", headers=sim.auth(token))
    assert first.headers["Link"] == (
        f'<{base}?per_page=30&page=2>; rel="next", <{base}?per_page=30&page=3>; rel="last"'
    )
    seen: list[int] = []
    pages = 0
    url: str | None = str(sim.client.make_url("/repos/octo/repo/issues/17/comments?per_page=30"))
    while url is not None:
        async with sim.client.session.get(url, headers=sim.auth(token)) as response:
            assert response.status == 200
            page = await response.json()
            seen.extend(c["id"] for c in page)
            links = _links(response.headers.get("Link", ""))
        pages += 1
        if pages == 2:
            assert links == {
                "prev": f"{base}?per_page=30&page=1",
                "next": f"{base}?per_page=30&page=3",
                "last": f"{base}?per_page=30&page=3",
                "first": f"{base}?per_page=30&page=1",
            }
        if pages == 3:
            assert set(links) == {"prev", "first"}
            assert len(page) == 15
        url = links.get("next")
    assert pages == 3
    assert seen == created_ids
    assert len(set(seen)) == 75


async def test_per_page_default_and_maximum(sim: Sim) -> None:
    token = await sim.token()
    for n in range(120):
        sim.state.add_comment("octo/repo", 17, f"c{n}")
    default = await sim.client.get("/repos/octo/repo/issues/17/comments", headers=sim.auth(token))
    assert len(await default.json()) == 30
    assert _links(default.headers["Link"])["last"].endswith("/repos/octo/repo/issues/17/comments?page=4")
    capped = await sim.client.get("/repos/octo/repo/issues/17/comments?per_page=500", headers=sim.auth(token))
    assert len(await capped.json()) == 100
    beyond = await sim.client.get("/repos/octo/repo/issues/17/comments?page=9", headers=sim.auth(token))
    assert await beyond.json() == []


async def test_comment_shape_and_author(sim: Sim) -> None:
    token = await sim.token()
    response = await sim.client.post(
        "/repos/octo/repo/issues/17/comments", headers=sim.auth(token), json={"body": "<!-- m --> hi"}
    )
    comment = await response.json()
    assert comment["body"] == "<!-- m --> hi"
    assert comment["user"] == {**comment["user"], "login": "prgate[bot]", "type": "Bot"}
    assert comment["created_at"] == iso(T0)
    assert comment["html_url"] == f"https://github.com/octo/repo/pull/17#issuecomment-{comment['id']}"
    assert comment["url"] == str(sim.client.make_url(f"/repos/octo/repo/issues/comments/{comment['id']}"))
    assert response.headers["Location"] == comment["url"]


@pytest.mark.parametrize(
    ("path", "payload", "status"),
    [
        ("/repos/octo/repo/issues/17/comments", {}, 422),
        ("/repos/octo/repo/issues/17/comments", {"body": ""}, 422),
        ("/repos/octo/repo/issues/17/comments", {"body": "x" * 65537}, 422),
        ("/repos/octo/repo/issues/99/comments", {"body": "hi"}, 404),
        ("/repos/octo/nope/issues/17/comments", {"body": "hi"}, 404),
    ],
)
async def test_create_comment_errors(sim: Sim, path: str, payload: dict[str, Any], status: int) -> None:
    token = await sim.token()
    response = await sim.client.post(path, headers=sim.auth(token), json=payload)
    assert response.status == status
    assert sim.state.comments == {}


async def test_invalid_json_is_400(sim: Sim) -> None:
    token = await sim.token()
    response = await sim.client.post("/repos/octo/repo/issues/17/comments", headers=sim.auth(token), data=b"{nope")
    assert response.status == 400
    assert (await response.json())["message"] == "Problems parsing JSON"


async def test_edit_get_and_delete_comment(sim: Sim) -> None:
    token = await sim.token()
    comment = sim.state.add_comment("octo/repo", 17, "old")
    sim.clock.advance(10)
    path = f"/repos/octo/repo/issues/comments/{comment.id}"
    patched = await sim.client.patch(path, headers=sim.auth(token), json={"body": "new"})
    assert patched.status == 200
    data = await patched.json()
    assert data["body"] == "new"
    assert data["updated_at"] == iso(T0 + 10)
    assert data["created_at"] == iso(T0)
    assert sim.state.comments[comment.id].body == "new"
    fetched = await sim.client.get(path, headers=sim.auth(token))
    assert (await fetched.json())["body"] == "new"
    assert (await sim.client.patch(path, headers=sim.auth(token), json={})).status == 422
    wrong_repo = await sim.client.get(f"/repos/octo/second/issues/comments/{comment.id}", headers=sim.auth(token))
    assert wrong_repo.status == 404
    missing = await sim.client.patch("/repos/octo/repo/issues/comments/1", headers=sim.auth(token), json={"body": "x"})
    assert missing.status == 404
    assert (await sim.client.delete(path, headers=sim.auth(token))).status == 204
    assert sim.state.comments_for("octo/repo", 17) == []


# ---- pull requests, statuses, permissions -------------------------------------------------------


async def test_repository_routes_by_id(sim: Sim) -> None:
    token = await sim.token()
    pr = await sim.client.get("/repositories/1296269/pulls/17", headers=sim.auth(token))
    assert pr.status == 200
    assert (await pr.json())["base"]["repo"]["full_name"] == "octo/repo"
    created = await sim.client.post(
        "/repositories/1296269/issues/17/comments", headers=sim.auth(token), json={"body": "by id"}
    )
    assert created.status == 201
    assert [c.body for c in sim.state.comments_for("octo/repo", 17)] == ["by id"]
    closed = await sim.client.patch("/repositories/1296269/pulls/17", headers=sim.auth(token), json={"state": "closed"})
    assert closed.status == 200
    assert sim.state.get_pull_request("octo/repo", 17).state == "closed"
    status = await sim.client.post(
        f"/repositories/1296269/statuses/{'a' * 40}", headers=sim.auth(token), json={"state": "pending"}
    )
    assert status.status == 201
    permission = await sim.client.get("/repositories/1296269/collaborators/octo/permission", headers=sim.auth(token))
    assert (await permission.json())["permission"] == "admin"
    # Unknown ids and another installation's repository are 404, as by name.
    assert (await sim.client.get("/repositories/999/pulls/17", headers=sim.auth(token))).status == 404
    assert (await sim.client.get("/repositories/777/pulls/1", headers=sim.auth(token))).status == 404
    assert (await sim.client.get("/repositories/abc/pulls/1", headers=sim.auth(token))).status == 404


async def test_rename_then_reuse_of_the_name(sim: Sim) -> None:
    token = await sim.token()
    renamed = await sim.client.patch("/_sim/repositories/1296269", json={"full_name": "octo/renamed"})
    assert renamed.status == 200
    body = await renamed.json()
    assert (body["id"], body["full_name"], body["previous_full_name"]) == (1296269, "octo/renamed", "octo/repo")
    # The old name is free: a new repository takes it, with a PR of the same number.
    created = await sim.client.post(
        "/_sim/installations/123/repositories", json={"id": 5550001, "full_name": "octo/repo"}
    )
    assert created.status == 201
    sim.state.upsert_pull_request("octo/repo", 17, author_login="mallory", author_id=66)
    by_name = await (await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))).json()
    assert by_name["user"]["login"] == "mallory"
    by_id = await (await sim.client.get("/repositories/1296269/pulls/17", headers=sim.auth(token))).json()
    assert (by_id["user"]["login"], by_id["base"]["repo"]["full_name"]) == ("alice", "octo/renamed")
    assert (await sim.client.get("/repos/octo/renamed/pulls/17", headers=sim.auth(token))).status == 200
    # A name in use is refused; an unknown id is 404.
    taken = await sim.client.patch("/_sim/repositories/1296270", json={"full_name": "octo/repo"})
    assert taken.status == 422
    assert (await sim.client.patch("/_sim/repositories/42", json={"full_name": "octo/x"})).status == 404
    assert (await sim.client.patch("/_sim/repositories/1296270", json={})).status == 422


async def test_rename_sends_repository_renamed_webhook(sim: Sim, aiohttp_server: ServerFactory) -> None:
    received: list[tuple[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers["X-GitHub-Event"], await request.json()))
        return web.Response(status=202)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    server = await aiohttp_server(receiver)
    response = await sim.client.patch(
        "/_sim/repositories/1296269",
        json={"full_name": "octo/renamed", "webhook": True, "webhook_url": str(server.make_url("/hook"))},
    )
    assert response.status == 200
    assert len((await response.json())["deliveries"]) == 1
    event, payload = received[0]
    assert event == "repository"
    assert payload["action"] == "renamed"
    assert payload["changes"] == {"repository": {"name": {"from": "repo"}}}
    assert (payload["repository"]["id"], payload["repository"]["full_name"]) == (1296269, "octo/renamed")
    assert payload["installation"]["id"] == 123


async def test_get_close_and_reopen_pull_request(sim: Sim) -> None:
    token = await sim.token()
    pr = await (await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))).json()
    assert pr["number"] == 17
    assert pr["state"] == "open"
    assert pr["draft"] is False
    assert pr["merged"] is False
    assert pr["head"]["sha"] == "a" * 40
    assert pr["user"]["login"] == "alice"
    assert pr["user"]["id"] == 9
    assert pr["author_association"] == "NONE"
    assert pr["html_url"] == "https://github.com/octo/repo/pull/17"
    sim.clock.advance(5)
    closed = await sim.client.patch("/repos/octo/repo/pulls/17", headers=sim.auth(token), json={"state": "closed"})
    assert closed.status == 200
    assert (await closed.json())["closed_at"] == iso(T0 + 5)
    assert sim.state.get_pull_request("octo/repo", 17).state == "closed"
    again = await sim.client.patch("/repos/octo/repo/pulls/17", headers=sim.auth(token), json={"state": "closed"})
    assert again.status == 200
    listed_open = await sim.client.get("/repos/octo/repo/pulls", headers=sim.auth(token))
    assert await listed_open.json() == []
    listed_closed = await sim.client.get("/repos/octo/repo/pulls?state=closed", headers=sim.auth(token))
    assert [p["number"] for p in await listed_closed.json()] == [17]
    reopened = await sim.client.patch(
        "/repos/octo/repo/pulls/17", headers=sim.auth(token), json={"state": "open", "title": "T"}
    )
    data = await reopened.json()
    assert (data["state"], data["closed_at"], data["title"]) == ("open", None, "T")
    bad = await sim.client.patch("/repos/octo/repo/pulls/17", headers=sim.auth(token), json={"state": "merged"})
    assert bad.status == 422
    assert (await sim.client.get("/repos/octo/repo/pulls/99", headers=sim.auth(token))).status == 404


async def test_list_pulls_paginates(sim: Sim) -> None:
    token = await sim.token()
    for n in range(18, 30):
        sim.clock.advance(1)
        sim.state.upsert_pull_request("octo/repo", n, author_login="alice")
    response = await sim.client.get("/repos/octo/repo/pulls?state=all&per_page=5", headers=sim.auth(token))
    numbers = [p["number"] for p in await response.json()]
    assert numbers == [29, 28, 27, 26, 25]
    assert _links(response.headers["Link"])["last"].endswith("state=all&per_page=5&page=3")


async def test_commit_statuses(sim: Sim) -> None:
    token = await sim.token()
    sha = "a" * 40
    first = await sim.client.post(
        f"/repos/octo/repo/statuses/{sha}",
        headers=sim.auth(token),
        json={"state": "pending", "context": "prgate", "description": "waiting", "target_url": "https://x/y"},
    )
    assert first.status == 201
    body = await first.json()
    assert (body["state"], body["context"], body["creator"]["login"]) == ("pending", "prgate", "prgate[bot]")
    sim.clock.advance(1)
    await sim.client.post(f"/repos/octo/repo/statuses/{sha}", headers=sim.auth(token), json={"state": "success"})
    invalid = await sim.client.post(f"/repos/octo/repo/statuses/{sha}", headers=sim.auth(token), json={"state": "ok"})
    assert invalid.status == 422
    listed = await sim.client.get(f"/repos/octo/repo/commits/{sha}/statuses", headers=sim.auth(token))
    states = [(s["state"], s["context"]) for s in await listed.json()]
    assert states == [("success", "default"), ("pending", "prgate")]
    assert [s.state for s in sim.state.statuses_for("octo/repo", "alice/patch-17")] == ["success", "pending"]
    read_back = await (await sim.client.get(f"/_sim/repos/octo/repo/statuses/{sha}")).json()
    assert [s["state"] for s in read_back] == ["success", "pending"]


async def test_collaborator_permission(sim: Sim) -> None:
    token = await sim.token()
    set_response = await sim.client.put(
        "/_sim/repos/octo/repo/collaborators/carol", json={"permission": "maintain", "id": 77}
    )
    assert set_response.status == 200
    carol = await sim.client.get("/repos/octo/repo/collaborators/carol/permission", headers=sim.auth(token))
    data = await carol.json()
    assert (data["permission"], data["role_name"], data["user"]["login"], data["user"]["id"]) == (
        "write",
        "maintain",
        "carol",
        77,
    )
    sim.state.set_permission("octo/repo", "dave", "admin")
    dave = await (
        await sim.client.get("/repos/octo/repo/collaborators/dave/permission", headers=sim.auth(token))
    ).json()
    assert dave["permission"] == "admin"
    stranger = await (
        await sim.client.get("/repos/octo/repo/collaborators/zed/permission", headers=sim.auth(token))
    ).json()
    assert stranger["permission"] == "read"
    private = await (
        await sim.client.get("/repos/octo/second/collaborators/zed/permission", headers=sim.auth(token))
    ).json()
    assert private["permission"] == "none"


# ---- rate limits ---------------------------------------------------------------------------------


async def test_rate_limit_headers_decrement_per_installation(sim: Sim) -> None:
    token = await sim.token()
    other = await sim.token(456)
    first = await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))
    second = await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))
    elsewhere = await sim.client.get("/repos/other/repo/pulls/1", headers=sim.auth(other))
    assert first.headers["x-ratelimit-limit"] == "5000"
    assert first.headers["x-ratelimit-resource"] == "core"
    assert (first.headers["x-ratelimit-remaining"], first.headers["x-ratelimit-used"]) == ("4999", "1")
    assert (second.headers["x-ratelimit-remaining"], second.headers["x-ratelimit-used"]) == ("4998", "2")
    assert second.headers["x-ratelimit-reset"] == str(int(T0) + 3600)
    assert elsewhere.headers["x-ratelimit-remaining"] == "4999"


async def test_primary_rate_limit_exhaustion_and_reset(make_sim: Callable[..., Awaitable[Sim]]) -> None:
    sim = await make_sim(rate_limit_per_hour=3)
    token = await sim.token()
    for _ in range(3):
        assert (await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))).status == 200
    limited = await sim.client.post("/repos/octo/repo/issues/17/comments", headers=sim.auth(token), json={"body": "x"})
    assert limited.status == 403
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert "API rate limit exceeded for installation ID 123" in (await limited.json())["message"]
    assert sim.state.comments == {}
    sim.clock.advance(3600)
    token = await sim.token()
    recovered = await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))
    assert recovered.status == 200
    assert recovered.headers["x-ratelimit-remaining"] == "2"


async def test_random_primary_rate_limit_fault(make_sim: Callable[..., Awaitable[Sim]]) -> None:
    sim = await make_sim()
    token = await sim.token()
    sim.state.faults.configure(
        FaultConfig(default=FaultProfile(primary_rate_limit_rate=1.0, primary_rate_limit_status=429))
    )
    response = await sim.client.post("/repos/octo/repo/issues/17/comments", headers=sim.auth(token), json={"body": "x"})
    assert response.status == 429
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-ratelimit-reset"] == str(int(T0) + 3)
    assert "API rate limit exceeded" in (await response.json())["message"]
    assert sim.state.comments == {}


async def test_secondary_rate_limit_rule(sim: Sim) -> None:
    token = await sim.token()
    added = await sim.client.post(
        "/_sim/faults/rules",
        json={"method": "POST", "path_regex": r"/comments$", "kind": "secondary_rate_limit", "retry_after_seconds": 7},
    )
    assert added.status == 201
    response = await sim.client.post("/repos/octo/repo/issues/17/comments", headers=sim.auth(token), json={"body": "x"})
    assert response.status == 403
    assert response.headers["retry-after"] == "7"
    assert (await response.json())["message"].startswith("You have exceeded a secondary rate limit")
    assert sim.state.comments == {}
    ok = await sim.client.post("/repos/octo/repo/issues/17/comments", headers=sim.auth(token), json={"body": "x"})
    assert ok.status == 201


async def test_content_creation_throttle(make_sim: Callable[..., Awaitable[Sim]]) -> None:
    sim = await make_sim(secondary_limit_per_minute=5)
    token = await sim.token()
    other = await sim.token(456)
    for n in range(5):
        sim.clock.advance(1)
        ok = await sim.client.post(
            "/repos/octo/repo/issues/17/comments", headers=sim.auth(token), json={"body": str(n)}
        )
        assert ok.status == 201
    throttled = await sim.client.patch("/repos/octo/repo/pulls/17", headers=sim.auth(token), json={"state": "closed"})
    assert throttled.status == 403
    assert throttled.headers["retry-after"] == "56"
    assert "secondary rate limit" in (await throttled.json())["message"]
    assert sim.state.get_pull_request("octo/repo", 17).state == "open"
    assert (await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))).status == 200
    assert (
        await sim.client.post("/repos/other/repo/issues/1/comments", headers=sim.auth(other), json={"body": "y"})
    ).status == 201
    sim.clock.advance(60)
    assert (
        await sim.client.patch("/repos/octo/repo/pulls/17", headers=sim.auth(token), json={"state": "closed"})
    ).status == 200
    assert len(sim.state.comments_for("octo/repo", 17)) == 5


# ---- deterministic and random faults -------------------------------------------------------------


async def test_fail_next_n_matching_requests(sim: Sim) -> None:
    token = await sim.token()
    other = await sim.token(456)
    sim.state.faults.configure(
        FaultConfig.model_validate(
            {
                "rules": [
                    {
                        "method": "POST",
                        "path_regex": r"^/repos/[^/]+/[^/]+/issues/\d+/comments$",
                        "status": 502,
                        "count": 2,
                    },
                    {"method": "GET", "path_regex": "/pulls/", "status": 503, "installation_id": 456},
                ]
            }
        )
    )
    url = "/repos/octo/repo/issues/17/comments"
    assert (await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))).status == 200
    statuses = [(await sim.client.post(url, headers=sim.auth(token), json={"body": f"{n}"})).status for n in range(3)]
    assert statuses == [502, 502, 201]
    assert [c.body for c in sim.state.comments_for("octo/repo", 17)] == ["2"]
    assert (await sim.client.get("/repos/other/repo/pulls/1", headers=sim.auth(other))).status == 503
    assert (await sim.client.get("/repos/other/repo/pulls/1", headers=sim.auth(other))).status == 200
    log = await (
        await sim.client.get(
            "/_sim/requests", params={"method": "POST", "installation_id": "123", "path_regex": "/comments$"}
        )
    ).json()
    assert [(r["status"], r["fault"]) for r in log["requests"]] == [
        (502, "rule:error"),
        (502, "rule:error"),
        (201, None),
    ]


async def test_server_errors_change_nothing(sim: Sim) -> None:
    token = await sim.token()
    comment = sim.state.add_comment("octo/repo", 17, "original")
    put = await sim.client.put("/_sim/faults", json={"seed": 1, "default": {"error_rate": 1.0}})
    assert put.status == 200
    attempts = [
        ("POST", "/repos/octo/repo/issues/17/comments", {"body": "new"}),
        ("PATCH", f"/repos/octo/repo/issues/comments/{comment.id}", {"body": "edited"}),
        ("PATCH", "/repos/octo/repo/pulls/17", {"state": "closed"}),
        ("POST", "/repos/octo/repo/statuses/" + "a" * 40, {"state": "failure"}),
    ]
    for method, path, body in attempts:
        response = await sim.client.request(method, path, headers=sim.auth(token), json=body)
        assert response.status in (502, 503)
    assert [c.body for c in sim.state.comments_for("octo/repo", 17)] == ["original"]
    assert sim.state.get_pull_request("octo/repo", 17).state == "open"
    assert sim.state.statuses == {}
    # The control routes are never faulted.
    assert (await sim.client.get("/_sim/repos/octo/repo/pulls/17/comments")).status == 200
    assert (await sim.client.delete("/_sim/faults")).status == 200
    assert (await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))).status == 200


async def test_fail_after_write_changes_state(sim: Sim) -> None:
    token = await sim.token()
    assert sim.state.faults.config.default.fail_after_write_rate == 0.0
    await sim.client.post("/_sim/faults/rules", json={"method": "*", "kind": "after_write", "count": 2})
    # Reads are not write requests: the rule waits for the next write.
    assert (await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))).status == 200
    created = await sim.client.post(
        "/repos/octo/repo/issues/17/comments", headers=sim.auth(token), json={"body": "<!-- marker -->"}
    )
    assert created.status == 502
    closed = await sim.client.patch("/repos/octo/repo/pulls/17", headers=sim.auth(token), json={"state": "closed"})
    assert closed.status == 502
    comments = await (await sim.client.get("/_sim/repos/octo/repo/pulls/17/comments")).json()
    assert [c["body"] for c in comments] == ["<!-- marker -->"]
    assert (await (await sim.client.get("/_sim/repos/octo/repo/pulls/17")).json())["state"] == "closed"


async def test_random_fail_after_write(sim: Sim) -> None:
    token = await sim.token()
    sim.state.faults.configure(FaultConfig(default=FaultProfile(fail_after_write_rate=1.0)))
    response = await sim.client.post("/repos/octo/repo/issues/17/comments", headers=sim.auth(token), json={"body": "x"})
    assert response.status == 502
    assert len(sim.state.comments_for("octo/repo", 17)) == 1
    assert (await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))).status == 200


async def test_faults_scoped_per_installation(sim: Sim) -> None:
    token = await sim.token()
    other = await sim.token(456)
    sim.state.faults.configure(FaultConfig(installations={456: FaultProfile(error_rate=1.0, error_statuses=[503])}))
    assert (await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))).status == 200
    assert (await sim.client.get("/repos/other/repo/pulls/1", headers=sim.auth(other))).status == 503


def test_seeded_faults_are_repeatable() -> None:
    config = FaultConfig(seed=7, default=FaultProfile(error_rate=0.5, secondary_rate_limit_rate=0.2))

    def run() -> list[str]:
        injector = FaultInjector(config)
        out = []
        for _ in range(50):
            decision = injector.decide("POST", "/repos/o/r/issues/1/comments", 1)
            out.append("ok" if decision is None else f"{decision.kind}:{decision.status}")
        return out

    first = run()
    assert first == run()
    assert {"ok", "error:502", "error:503", "secondary_rate_limit:403"} <= set(first)


async def test_latency_is_added(sim: Sim) -> None:
    token = await sim.token()
    sim.state.faults.configure(FaultConfig(default=FaultProfile(latency_ms=80)))
    started = time.monotonic()
    assert (await sim.client.get("/repos/octo/repo/pulls/17", headers=sim.auth(token))).status == 200
    assert time.monotonic() - started >= 0.08


async def test_fault_config_validation(sim: Sim) -> None:
    bad = await sim.client.put("/_sim/faults", json={"default": {"error_rate": 2}})
    assert bad.status == 422
    bad_regex = await sim.client.post("/_sim/faults/rules", json={"path_regex": "("})
    assert bad_regex.status == 422
    unknown = await sim.client.put("/_sim/faults", json={"nope": 1})
    assert unknown.status == 422


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


# ---- conformance with GitHub's OpenAPI description ---------------------------------------------------


def _normalize(path: str) -> str:
    # GitHub serves every /repos/{owner}/{repo} route under /repositories/{id} too; its OpenAPI
    # description lists only the first form.
    path = re.sub(r"^/repositories/\{[^}]+\}", "/repos/{owner}/{repo}", path)
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_every_simulated_route_exists_in_github_openapi(app_key: rsa.RSAPrivateKey) -> None:
    spec_routes = {(r["method"], _normalize(r["path"])) for r in json.loads(FIXTURE.read_text())}
    assert len(spec_routes) > 900
    app = create_simulator_app(_config(app_key))
    simulated = {
        (route.method, _normalize(route.resource.canonical))
        for route in app.router.routes()
        if route.resource is not None
        and not route.resource.canonical.startswith(("/_sim", "/login/oauth/"))  # not REST API routes
        and not route.resource.canonical.endswith("/settings/apps/new")  # manifest flow pages (web, not REST)
        and route.method not in ("HEAD", "*")
    }
    assert len(simulated) >= 15
    assert simulated - spec_routes == set()


# Schema checks need the full spec (13 MB, not committed): they run when it is unpacked at
# /tmp/package/generated/ (see scripts/extract_github_routes.py) or GITHUB_OPENAPI_SPEC points to it.


def _schema_errors(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _schema_errors(spec, spec["components"]["schemas"][name], value, where)
    errors: list[str] = []
    for sub in schema.get("allOf", []):
        errors += _schema_errors(spec, sub, value, where)
    for key in ("anyOf", "oneOf"):
        if key in schema and not any(not _schema_errors(spec, s, value, where) for s in schema[key]):
            errors.append(f"{where}: matches none of {key}")
    if value is None:
        if schema.get("type") and not schema.get("nullable") and schema.get("type") != "null":
            errors.append(f"{where}: null not allowed")
        return errors
    kind = schema.get("type")
    python_types: dict[str, Any] = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
    }
    wrong_type = (
        isinstance(kind, str)
        and kind in python_types
        and (not isinstance(value, python_types[kind]) or (kind in ("integer", "number") and isinstance(value, bool)))
    )
    if wrong_type:
        return [*errors, f"{where}: expected {kind}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in enum")
    if isinstance(value, dict):
        errors += [f"{where}: missing {key}" for key in schema.get("required", []) if key not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += _schema_errors(spec, sub, value[key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value[:3]):
            errors += _schema_errors(spec, schema["items"], item, f"{where}[{index}]")
    return errors


@pytest.fixture(scope="module")
def openapi_spec() -> dict[str, Any]:
    if not OPENAPI_SPEC.is_file():
        pytest.skip(f"GitHub OpenAPI spec not unpacked at {OPENAPI_SPEC}")
    spec: dict[str, Any] = json.loads(OPENAPI_SPEC.read_text())
    return spec


async def test_responses_match_openapi_schemas(sim: Sim, openapi_spec: dict[str, Any]) -> None:
    app_token_response = await sim.client.post("/app/installations/123/access_tokens", headers=sim.app_headers())
    token = (await app_token_response.json())["token"]
    sha = "a" * 40
    await sim.client.post(f"/repos/octo/repo/statuses/{sha}", headers=sim.auth(token), json={"state": "success"})
    calls: list[tuple[str, str, str, dict[str, Any] | None, dict[str, str]]] = [
        (
            "POST",
            "/app/installations/{installation_id}/access_tokens",
            "/app/installations/123/access_tokens",
            None,
            sim.app_headers(),
        ),
        # Not the list: its inline schema wrongly says the account is a user *and* an enterprise (allOf).
        ("GET", "/app/installations/{installation_id}", "/app/installations/123", None, sim.app_headers()),
        ("GET", "/installation/repositories", "/installation/repositories", None, sim.auth(token)),
        (
            "POST",
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            "/repos/octo/repo/issues/17/comments",
            {"body": "hi"},
            sim.auth(token),
        ),
        (
            "GET",
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            "/repos/octo/repo/issues/17/comments",
            None,
            sim.auth(token),
        ),
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", "/repos/octo/repo/pulls/17", None, sim.auth(token)),
        ("GET", "/repos/{owner}/{repo}/pulls", "/repos/octo/repo/pulls", None, sim.auth(token)),
        (
            "POST",
            "/repos/{owner}/{repo}/statuses/{sha}",
            f"/repos/octo/repo/statuses/{sha}",
            {"state": "pending", "context": "prgate"},
            sim.auth(token),
        ),
        (
            "GET",
            "/repos/{owner}/{repo}/commits/{ref}/statuses",
            f"/repos/octo/repo/commits/{sha}/statuses",
            None,
            sim.auth(token),
        ),
        (
            "GET",
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            "/repos/octo/repo/collaborators/alice/permission",
            None,
            sim.auth(token),
        ),
        ("GET", "/repos/{owner}/{repo}", "/repos/octo/repo", None, sim.auth(token)),
        ("GET", "/repos/{owner}/{repo}/installation", "/repos/octo/repo/installation", None, sim.app_headers()),
    ]
    problems: list[str] = []
    for method, template, path, body, headers in calls:
        response = await sim.client.request(method, path, json=body, headers=headers)
        status = str(response.status)
        operation = openapi_spec["paths"][template][method.lower()]
        assert status in operation["responses"], (method, path, status)
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        problems += [f"{method} {path}: {e}" for e in _schema_errors(openapi_spec, schema, await response.json())]
    assert problems == [], "\n".join(problems)


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


# ---- users: lookup, rename and reuse of a login; the user's installations (issue 13) --------------------


async def test_a_renamed_login_is_free_and_a_newcomer_gets_a_new_id(sim: Sim) -> None:
    token = await sim.token()
    created = await sim.client.post("/_sim/users", json={"login": "carla", "id": 501})
    assert created.status == 201
    assert (await sim.client.post("/_sim/users", json={"login": "CARLA", "id": 502})).status == 422
    sim.state.set_permission("octo/repo", "carla", "write")
    got = await sim.client.get("/users/carla", headers=sim.auth(token))
    assert got.status == 200
    body = await got.json()
    assert (body["login"], body["id"], body["type"]) == ("carla", 501, "User")

    renamed = await sim.client.patch("/_sim/users/carla", json={"login": "carla2"})
    assert (await renamed.json())["id"] == 501
    missing = await sim.client.get("/users/carla", headers=sim.auth(token))
    assert (missing.status, (await missing.json())["message"]) == (404, "Not Found")
    assert (await (await sim.client.get("/users/carla2", headers=sim.auth(token))).json())["id"] == 501
    assert sim.state.permission_of("octo/repo", "carla2")[0] == "write"  # the role followed the id

    assert (await sim.client.post("/_sim/users", json={"login": "carla", "id": 666})).status == 201
    assert (await (await sim.client.get("/users/carla", headers=sim.auth(token))).json())["id"] == 666
    assert sim.state.permission_of("octo/repo", "carla")[0] == "read"  # the newcomer has no role
    assert (await sim.client.get("/users/carla")).status == 401  # the backend asks with a token


async def test_user_installations_lists_what_the_user_token_reaches(sim: Sim) -> None:
    from prgate.simulator.github.oauth import SIM_OAUTH

    store = sim.client.app[SIM_OAUTH]
    store.tokens["gho_alice"] = "alice"
    store.tokens["gho_other"] = "other"
    sim.state.ensure_user("alice", 9)
    sim.state.set_permission("octo/repo", "alice", "triage")

    async def listed(token: str) -> tuple[int, list[int]]:
        resp = await sim.client.get("/user/installations", headers=sim.auth(token, "Bearer"))
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        return body["total_count"], [i["id"] for i in body["installations"]]

    assert await listed("gho_alice") == (1, [123])  # a role on one of its repositories
    assert await listed("gho_other") == (1, [456])  # the installation on the user's own account
    sim.state.set_permission("octo/repo", "alice", "none")
    assert await listed("gho_alice") == (0, [])
    # An installation token is not a user token.
    resp = await sim.client.get("/user/installations", headers=sim.auth(await sim.token()))
    assert resp.status == 401
    # The rename keeps the user's tokens theirs.
    sim.state.set_permission("octo/repo", "alice", "admin")
    await sim.client.patch("/_sim/users/alice", json={"login": "alice2"})
    assert await listed("gho_alice") == (1, [123])


# ---- the App itself, comments by other Apps (issue 13, item 2) ----------------------------------


async def test_get_app_answers_the_apps_identity_to_its_jwt(sim: Sim) -> None:
    response = await sim.client.get("/app", headers=sim.app_headers())
    assert response.status == 200
    data = await response.json()
    assert (data["id"], data["slug"]) == (APP_ID, "prgate")
    assert {"name", "owner", "node_id", "html_url", "permissions", "events"} <= data.keys()
    token = await sim.token()
    assert (await sim.client.get("/app", headers=sim.auth(token))).status == 401  # the JWT only


async def test_comments_written_by_the_app_carry_its_bot_user_and_app(sim: Sim) -> None:
    token = await sim.token()
    response = await sim.client.post(
        "/repos/octo/repo/issues/17/comments", headers=sim.auth(token), json={"body": "ours"}
    )
    data = await response.json()
    assert data["user"]["login"] == "prgate[bot]"
    assert data["user"]["type"] == "Bot"
    assert data["performed_via_github_app"]["id"] == APP_ID
    assert data["performed_via_github_app"]["slug"] == "prgate"


async def test_another_apps_comment_cannot_be_edited_or_deleted(sim: Sim) -> None:
    posted = await sim.client.post(
        "/_sim/repos/octo/repo/pulls/17/comments",
        json={"body": "<!-- prgate:pr-comment --> echoed", "app": {"id": 99, "slug": "other-gate"}},
    )
    assert posted.status == 201
    foreign = await posted.json()
    assert foreign["user"]["login"] == "other-gate[bot]"
    assert foreign["user"]["type"] == "Bot"
    assert foreign["performed_via_github_app"]["id"] == 99
    ci_bot = await (await sim.client.post(
        "/_sim/repos/octo/repo/pulls/17/comments",
        json={"body": "ci says hi", "user": {"login": "ci-bot[bot]", "id": 77, "type": "Bot"}},
    )).json()
    assert ci_bot["performed_via_github_app"] is None
    token = await sim.token()
    for comment in (foreign, ci_bot):
        path = f"/repos/octo/repo/issues/comments/{comment['id']}"
        patched = await sim.client.patch(path, headers=sim.auth(token), json={"body": "hijacked"})
        assert patched.status == 403
        assert (await patched.json())["message"] == "Resource not accessible by integration"
        assert (await sim.client.delete(path, headers=sim.auth(token))).status == 403
    assert [c.body for c in sim.state.comments_for("octo/repo", 17)] == [
        "<!-- prgate:pr-comment --> echoed", "ci says hi"
    ]
    bad = await sim.client.post("/_sim/repos/octo/repo/pulls/17/comments", json={"body": "x"})
    assert bad.status == 422


# ---- link_origin fault (issue 13, item 14) --------------------------------------------------------


async def test_link_origin_fault_moves_every_link_url_to_another_origin(sim: Sim) -> None:
    for n in range(5):
        sim.state.add_repository(123, 6000 + n, f"octo/more-{n}")
    put = await sim.client.put("/_sim/faults", json={"link_origin": "http://elsewhere.example:9999"})
    assert put.status == 200
    assert (await put.json())["link_origin"] == "http://elsewhere.example:9999"
    token = await sim.token()
    page = await sim.client.get("/installation/repositories?per_page=3", headers=sim.auth(token))
    assert page.status == 200
    links = _links(page.headers["Link"])
    assert links["next"] == "http://elsewhere.example:9999/installation/repositories?per_page=3&page=2"
    assert all(url.startswith("http://elsewhere.example:9999/") for url in links.values())
    assert (await sim.client.delete("/_sim/faults")).status == 200
    again = await sim.client.get("/installation/repositories?per_page=3", headers=sim.auth(token))
    assert "elsewhere.example" not in again.headers["Link"]
