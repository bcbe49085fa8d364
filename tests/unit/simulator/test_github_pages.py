"""github.com's account, repository and pull-request pages, served where no API route matched."""

from __future__ import annotations

from tests.unit.simulator.support import Sim


async def _written_through_the_api(sim: Sim) -> None:
    token = await sim.token(123)
    resp = await sim.client.post("/repos/octo/repo/issues/17/comments", headers=sim.auth(token),
                                 json={"body": "<!-- prgate --> Please verify <b>here</b>"})
    assert resp.status == 201, await resp.text()
    for state in ("pending", "success"):
        resp = await sim.client.post(f"/repos/octo/repo/statuses/{'a' * 40}", headers=sim.auth(token),
                                     json={"state": state, "context": "prgate/verification",
                                           "description": f"now {state}", "target_url": "http://x/verify/1"})
        assert resp.status == 201, await resp.text()
    resp = await sim.client.patch("/repos/octo/repo/pulls/17", headers=sim.auth(token), json={"state": "closed"})
    assert resp.status == 200, await resp.text()


async def test_the_pull_request_page_shows_title_author_state_comments_and_the_latest_status(sim: Sim) -> None:
    await _written_through_the_api(sim)
    resp = await sim.client.get("/octo/repo/pull/17")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    pr = sim.state.get_pull_request("octo/repo", 17)
    assert f"<title>{pr.title} · #17 · octo/repo</title>" in page
    assert '<a href="/alice">alice</a>' in page
    assert '<span class="state closed">closed</span>' in page
    assert "Please verify &lt;b&gt;here&lt;/b&gt;" in page  # escaped, never markup of the commenter's
    assert sim.state.bot_user.login in page
    assert '<td class="success">success</td><td>prgate/verification</td>' in page
    assert "now pending" not in page  # one line per context: the newest


async def test_repository_and_owner_pages_link_to_what_the_simulator_holds(sim: Sim) -> None:
    repo_page = await (await sim.client.get("/octo/repo")).text()
    assert '<a href="/octo/repo/pull/17">#17 ' in repo_page
    owner = await sim.client.get("/octo")
    assert owner.status == 200
    owner_page = await owner.text()
    assert '<a href="/octo/repo">octo/repo</a>' in owner_page
    assert '<a href="/octo/second">octo/second</a>' in owner_page
    assert "other/repo" not in owner_page
    author = await (await sim.client.get("/alice")).text()  # a user who opened a pull request
    assert '<a href="/octo/repo/pull/17">' in author


async def test_anything_the_simulator_does_not_hold_is_still_githubs_json_404(sim: Sim) -> None:
    for path in ("/nobody", "/octo/nope", "/octo/repo/pull/99", "/octo/repo/pull/17/files", "/favicon.ico"):
        resp = await sim.client.get(path)
        assert resp.status == 404, path
        assert (await resp.json())["message"] == "Not Found", path
    assert (await sim.client.get("/_sim/nothing")).status == 404  # the control API's own 404, no page


async def test_api_routes_are_unchanged_by_the_pages(sim: Sim) -> None:
    token = await sim.token(123)
    resp = await sim.client.get("/repos/octo/repo", headers=sim.auth(token))
    assert resp.status == 200
    assert (await resp.json())["full_name"] == "octo/repo"
    assert (await sim.client.get("/user")).status == 401  # the API's own answer, not an account page
    assert (await sim.client.post("/octo")).status == 404  # pages are GETs only
