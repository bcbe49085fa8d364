"""The simulator's OAuth web flow (authorize → code → access token → GET /user), over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from prgate.simulator import SIM_STATE, SimulatorConfig, create_simulator_app
from tests.support.github_sim import APP_ID, app_keys

Client = TestClient[web.Request, web.Application]
CLIENT_ID = "Iv1.test-client"
SECRET = "test-client-secret"
CALLBACK = "http://app.example/auth/callback"


@pytest.fixture
async def sim(aiohttp_client: Callable[[web.Application], Awaitable[Client]]) -> Client:
    config = SimulatorConfig(
        app_id=APP_ID, app_public_key_pem=app_keys().public_pem, oauth_client_id=CLIENT_ID,
        oauth_client_secret=SECRET,
    )
    return await aiohttp_client(create_simulator_app(config))


async def _code(sim: Client, login: str = "newcomer", state: str = "s1") -> str:
    resp = await sim.get(
        "/login/oauth/authorize",
        params={"client_id": CLIENT_ID, "redirect_uri": CALLBACK, "state": state, "login": login},
        allow_redirects=False,
    )
    assert resp.status == 302
    location = URL(resp.headers["Location"])
    assert str(location.with_query(None)) == CALLBACK
    assert location.query["state"] == state
    return location.query["code"]


async def _token(sim: Client, code: str, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    data = {"client_id": CLIENT_ID, "client_secret": SECRET, "code": code, **(overrides or {})}
    resp = await sim.post("/login/oauth/access_token", data=data, headers={"Accept": "application/json"})
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def test_authorize_without_login_renders_a_sign_in_form_that_posts_back(sim: Client) -> None:
    resp = await sim.get(
        "/login/oauth/authorize", params={"client_id": CLIENT_ID, "redirect_uri": CALLBACK, "state": "<x>"}
    )
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert "Sign in to GitHub" in page
    assert 'name=login' in page
    assert 'value="&lt;x&gt;"' in page  # state is carried, escaped
    submitted = await sim.post(
        "/login/oauth/authorize",
        data={"client_id": CLIENT_ID, "redirect_uri": CALLBACK, "state": "<x>", "login": "Newcomer"},
        allow_redirects=False,
    )
    assert submitted.status == 302
    location = URL(submitted.headers["Location"])
    assert location.query["state"] == "<x>"
    assert re.fullmatch(r"[0-9a-f]{20}", location.query["code"])


async def test_full_flow_json_and_user(sim: Client) -> None:
    state = sim.app[SIM_STATE]
    state.ensure_user("newcomer", 9001)
    body = await _token(sim, await _code(sim, "newcomer"))
    assert body["token_type"] == "bearer"
    assert body["scope"] == ""
    token = body["access_token"]
    assert re.fullmatch(r"gho_[A-Za-z0-9]{36}", token)
    for scheme in ("Bearer", "token"):
        resp = await sim.get("/user", headers={"Authorization": f"{scheme} {token}"})
        assert resp.status == 200
        user = await resp.json()
        assert (user["login"], user["id"], user["type"]) == ("newcomer", 9001, "User")
        assert "x-ratelimit-remaining" in resp.headers


async def test_first_sign_in_creates_the_user(sim: Client) -> None:
    token = (await _token(sim, await _code(sim, "brand-new")))["access_token"]
    user = await (await sim.get("/user", headers={"Authorization": f"Bearer {token}"})).json()
    assert user["login"] == "brand-new"
    assert sim.app[SIM_STATE].users["brand-new"].id == user["id"]


async def test_token_answer_is_form_encoded_without_accept_json(sim: Client) -> None:
    code = await _code(sim)
    resp = await sim.post(
        "/login/oauth/access_token", data={"client_id": CLIENT_ID, "client_secret": SECRET, "code": code}
    )
    assert resp.status == 200
    assert resp.content_type == "application/x-www-form-urlencoded"
    parsed = parse_qs(await resp.text())
    assert parsed["access_token"][0].startswith("gho_")
    assert parsed["token_type"] == ["bearer"]


async def test_json_request_body_is_accepted(sim: Client) -> None:
    code = await _code(sim)
    resp = await sim.post(
        "/login/oauth/access_token", json={"client_id": CLIENT_ID, "client_secret": SECRET, "code": code},
        headers={"Accept": "application/json"},
    )
    assert (await resp.json())["access_token"].startswith("gho_")


async def test_code_is_single_use(sim: Client) -> None:
    code = await _code(sim)
    assert "access_token" in await _token(sim, code)
    again = await _token(sim, code)
    assert again["error"] == "bad_verification_code"
    assert "access_token" not in again


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"client_secret": "wrong"}, "incorrect_client_credentials"),
        ({"client_id": "other"}, "incorrect_client_credentials"),
        ({"code": "0" * 20}, "bad_verification_code"),
        ({"redirect_uri": "http://elsewhere.example/cb"}, "redirect_uri_mismatch"),
    ],
)
async def test_token_errors_are_200_with_an_error_field(sim: Client, overrides: dict[str, str], error: str) -> None:
    body = await _token(sim, await _code(sim), overrides)
    assert body["error"] == error
    assert body["error_description"]
    assert "access_token" not in body


async def test_code_expires_after_ten_minutes(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> None:
    now = [1_700_000_000.0]
    config = SimulatorConfig(
        app_id=APP_ID, app_public_key_pem=app_keys().public_pem, oauth_client_id=CLIENT_ID,
        oauth_client_secret=SECRET,
    )
    sim = await aiohttp_client(create_simulator_app(config, clock=lambda: now[0]))
    code = await _code(sim)
    now[0] += 601
    assert (await _token(sim, code))["error"] == "bad_verification_code"


async def test_unknown_client_or_bad_redirect_is_refused(sim: Client) -> None:
    unknown = await sim.get(
        "/login/oauth/authorize", params={"client_id": "nope", "redirect_uri": CALLBACK, "login": "a"},
        allow_redirects=False,
    )
    assert unknown.status == 404
    relative = await sim.get(
        "/login/oauth/authorize", params={"client_id": CLIENT_ID, "redirect_uri": "/cb", "login": "a"},
        allow_redirects=False,
    )
    assert relative.status == 400
    bad_login = await sim.get(
        "/login/oauth/authorize",
        params={"client_id": CLIENT_ID, "redirect_uri": CALLBACK, "login": "<script>"},
        allow_redirects=False,
    )
    assert bad_login.status == 422
    assert "<script>" not in await bad_login.text()


@pytest.mark.parametrize("header", [None, "Bearer gho_unknown", "Bearer not-a-user-token"])
async def test_user_needs_a_user_token(sim: Client, header: str | None) -> None:
    resp = await sim.get("/user", headers={"Authorization": header} if header else {})
    assert resp.status == 401
    body = await resp.json()
    assert body["message"] in ("Requires authentication", "Bad credentials")
