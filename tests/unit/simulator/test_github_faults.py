"""The GitHub simulator's rate limits and injected faults, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prgate.simulator import (
    FaultConfig,
    FaultInjector,
    FaultProfile,
)
from tests.unit.simulator.support import (
    T0,
    Sim,
    _links,
)

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


# ---- link_origin fault (docs/security.md, "`Link: next` URLs followed with the token, on any origin") ----------------


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
