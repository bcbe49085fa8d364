"""Bitbucket's rolling-hour budget per credential (429 and its headers) and 5xx faults, as the
client sees them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from provider_clients.bitbucket.api import RateLimited, RequestCounter, Unavailable
from tests.simulator.bitbucket.support import BB


async def test_budget_headers_near_limit_then_429_with_retry_after(make_bb: Callable[..., Awaitable[BB]]) -> None:
    bb = await make_bb(rate_limit_per_hour=5)
    token = bb.tokens["acme"]
    seen = []
    for _ in range(5):
        status, _, headers = await bb.api("GET", "/2.0/repositories/acme/widgets", token)
        assert status == 200
        assert (headers["X-RateLimit-Limit"], headers["X-RateLimit-Resource"]) == ("5", "api")
        seen.append(headers["X-RateLimit-NearLimit"])
    assert seen == ["false", "false", "false", "false", "true"]  # less than 20 % left after the 5th
    status, body, headers = await bb.api("GET", "/2.0/repositories/acme/widgets", token)
    assert status == 429
    assert body["type"] == "error"
    assert headers["X-RateLimit-Limit"] == "5"
    assert int(headers["Retry-After"]) == 3600
    # Another credential has its own budget; workspace endpoints are not in the `api` group.
    assert (await bb.api("GET", "/2.0/repositories/globex", bb.tokens["globex"]))[0] == 200
    status, _, headers = await bb.api("GET", "/2.0/workspaces/acme", token)
    assert status == 200
    assert "X-RateLimit-Limit" not in headers

    client = bb.client("acme")
    with pytest.raises(RateLimited) as limited:
        await client.repository("acme", "widgets")
    assert limited.value.retry_after == 3600.0
    assert limited.value.status == 429

    bb.clock.advance(1800)  # a rolling window: still full
    assert (await bb.api("GET", "/2.0/repositories/acme/widgets", token))[0] == 429
    bb.clock.advance(1801)
    assert (await bb.api("GET", "/2.0/repositories/acme/widgets", token))[0] == 200


async def test_without_retry_after_the_client_says_none(make_bb: Callable[..., Awaitable[BB]]) -> None:
    bb = await make_bb(rate_limit_per_hour=1, rate_limit_retry_after=False)
    client = bb.client("acme")
    await client.repository("acme", "widgets")
    with pytest.raises(RateLimited) as limited:
        await client.repository("acme", "widgets")
    assert limited.value.retry_after is None


async def test_fault_rules_give_5xx_change_nothing_and_are_counted(bb: BB) -> None:
    await bb.sim("POST", "/faults/rules", {"method": "POST", "path_regex": "/comments$", "status": 503, "count": 1},
                 201)
    counter = RequestCounter()
    client = bb.client("acme", counter=counter)
    with pytest.raises(Unavailable) as failed:
        await client.create_comment("acme", "widgets", 1, "hello")
    assert failed.value.status == 503
    assert bb.state.comments_of("acme", "widgets", 1) == []  # refused before the handler
    await client.create_comment("acme", "widgets", 1, "hello")
    assert counter.by_call["create_comment"] == 2
    assert counter.total == 2
    records = await bb.sim("GET", "/requests?path_regex=/comments$")
    assert [r["status"] for r in records["requests"]] == [503, 201]
    assert records["requests"][0]["fault"] == "rule:error"


async def test_after_write_fault_the_write_happened_but_the_client_sees_5xx(bb: BB) -> None:
    await bb.sim("POST", "/faults/rules", {"method": "POST", "path_regex": "/decline$", "kind": "after_write"}, 201)
    with pytest.raises(Unavailable):
        await bb.client("acme").decline("acme", "widgets", 1)
    assert bb.state.pull_request("acme", "widgets", 1).state == "DECLINED"
    # …and the client's retry is success, not an error.
    assert (await bb.client("acme").decline("acme", "widgets", 1)).state == "DECLINED"


async def test_a_dead_api_is_unavailable(bb: BB) -> None:
    from provider_clients.bitbucket.api import BitbucketClient

    client = BitbucketClient(bb.session, "http://127.0.0.1:9", bb.tokens["acme"], timeout_seconds=2)
    with pytest.raises(Unavailable):
        await client.workspace("acme")


async def test_reset_forgets_everything(bb: BB) -> None:
    await bb.sim("POST", "/reset", {})
    assert bb.state.workspaces == {}
    assert bb.state.tokens == {}
    assert (await bb.api("GET", "/2.0/workspaces/acme", bb.tokens["acme"]))[0] == 401
