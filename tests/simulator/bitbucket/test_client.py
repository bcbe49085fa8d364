"""What the Bitbucket client guarantees on its own: the token stays on the API's origin, every
attempt is counted, and answers of the wrong shape are errors, not crashes."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from provider_clients.bitbucket.api import BadRequest, RequestCounter
from tests.simulator.bitbucket.conftest import ServerFactory
from tests.simulator.bitbucket.support import BB


async def test_next_on_another_origin_is_refused_and_the_token_never_goes_there(
    bb: BB, aiohttp_server: ServerFactory
) -> None:
    seen: list[str] = []

    async def trap(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"values": [], "pagelen": 10, "size": 0, "page": 2})

    app = web.Application()
    app.router.add_get("/{tail:.*}", trap)
    other: TestServer = await aiohttp_server(app)
    for n in range(12):
        await bb.sim("POST", "/workspaces/acme/repositories", {"slug": f"r{n:02d}"}, 201)
    await bb.sim("PUT", "/faults", {"link_origin": f"http://{other.host}:{other.port}"})

    status, page, _ = await bb.api("GET", "/2.0/repositories/acme", bb.tokens["acme"])
    assert status == 200
    assert str(other.port) in page["next"]
    counter = RequestCounter()
    with pytest.raises(BadRequest, match="origin"):
        _ = [r async for r in bb.client("acme", counter=counter).paginate("/2.0/repositories/acme", {"pagelen": 5})]
    assert seen == []
    assert counter.total == 1


async def test_a_2xx_that_is_not_a_page_is_bad_request_not_a_crash(bb: BB) -> None:
    client = bb.client("acme")
    with pytest.raises(BadRequest, match="values"):  # a single object is not a page
        _ = [x async for x in client.paginate("/2.0/repositories/acme/widgets")]
