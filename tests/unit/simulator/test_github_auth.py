"""The GitHub simulator's App JWT and installation tokens, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from prgate.simulator.core.types import iso
from tests.unit.simulator.support import (
    APP_ID,
    T0,
    Sim,
    _links,
)

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
