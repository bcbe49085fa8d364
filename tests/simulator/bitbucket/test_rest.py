"""The simulator's REST routes, driven through the one Bitbucket client (both are under test)."""

from __future__ import annotations

import aiohttp
import pytest
from yarl import URL

from provider_clients.bitbucket.api import (
    AuthFailed,
    BadRequest,
    NotFound,
    RequestCounter,
    authorize_url,
    oauth_exchange,
)
from tests.simulator.bitbucket.support import ACME_UUID, ALICE, BB, MAINTAINER


async def test_workspace_and_repositories_with_mainbranch(bb: BB) -> None:
    client = bb.client("acme")
    ws = await client.workspace("acme")
    assert (ws.slug, ws.uuid) == ("acme", ACME_UUID)
    assert await client.workspace(ACME_UUID) == ws  # a braced UUID names it too
    repos = [r async for r in client.repositories("acme")]
    assert [(r.full_name, r.mainbranch.name if r.mainbranch else None) for r in repos] == [
        ("acme/widgets", "main"), ("acme/gadgets", "master")]
    repo = await client.repository("acme", "gadgets")
    assert repo.uuid.startswith("{")
    assert repo.uuid.endswith("}")


async def test_paging_shape_and_next_is_absolute_on_the_simulators_origin(bb: BB) -> None:
    for n in range(23):
        await bb.sim("POST", "/workspaces/acme/repositories", {"slug": f"r{n:02d}"}, 201)
    status, first, _ = await bb.api("GET", "/2.0/repositories/acme", bb.tokens["acme"])
    assert status == 200
    assert (first["pagelen"], first["page"], first["size"], len(first["values"])) == (10, 1, 25, 10)
    nxt = URL(first["next"])
    assert (nxt.scheme, nxt.host, nxt.port) == ("http", bb.server.host, bb.server.port)
    status, last, _ = await bb.api("GET", "/2.0/repositories/acme?pagelen=10&page=3", bb.tokens["acme"])
    assert len(last["values"]) == 5
    assert "next" not in last
    assert "previous" in last
    status, capped, _ = await bb.api("GET", "/2.0/repositories/acme?pagelen=500", bb.tokens["acme"])
    assert capped["pagelen"] == 100
    assert len(capped["values"]) == 25
    status, bad, _ = await bb.api("GET", "/2.0/repositories/acme?pagelen=0", bb.tokens["acme"])
    assert status == 400
    assert bad["type"] == "error"

    counter = RequestCounter()
    client = bb.client("acme", counter=counter)
    seen = [item["slug"] async for item in client.paginate("/2.0/repositories/acme", {"pagelen": 7})]
    assert len(seen) == 25
    assert len(set(seen)) == 25
    assert counter.total == 4  # 7 + 7 + 7 + 4


async def test_page_cap_raises_instead_of_truncating(bb: BB) -> None:
    for n in range(5):
        await bb.sim("POST", "/workspaces/acme/repositories", {"slug": f"r{n}"}, 201)
    client = bb.client("acme", max_pages=2)
    with pytest.raises(BadRequest, match="more than 2 pages"):
        _ = [item async for item in client.paginate("/2.0/repositories/acme", {"pagelen": 2})]


async def test_pull_request_list_by_state_get_and_abbreviated_hashes_in_webhooks_only(bb: BB) -> None:
    client = bb.client("acme")
    pr = await client.pull_request("acme", "widgets", 1)
    assert (pr.state, pr.author.account_id, pr.source.branch.name, pr.destination.branch.name) == (
        "OPEN", ALICE, "fix/frob", "main")
    assert pr.source.commit is not None
    assert len(pr.source.commit.hash) == 40
    await bb.sim("POST", "/repositories/acme/widgets/pullrequests",
                 {"author": ALICE, "title": "Second", "source_branch": "two"}, 201)
    await bb.sim("POST", "/repositories/acme/widgets/pullrequests/2/decline", {"user": MAINTAINER})
    _, open_only, _ = await bb.api("GET", "/2.0/repositories/acme/widgets/pullrequests", bb.tokens["acme"])
    assert [p["id"] for p in open_only["values"]] == [1]
    _, both, _ = await bb.api("GET", "/2.0/repositories/acme/widgets/pullrequests?state=OPEN&state=DECLINED",
                              bb.tokens["acme"])
    assert sorted(p["id"] for p in both["values"]) == [1, 2]
    status, _, _ = await bb.api("GET", "/2.0/repositories/acme/widgets/pullrequests?state=BOGUS", bb.tokens["acme"])
    assert status == 400
    with pytest.raises(NotFound):
        await client.pull_request("acme", "widgets", 99)


async def test_the_control_api_opens_a_pull_request_with_a_chosen_id_once(bb: BB) -> None:
    """A driver whose simulator restarted over data kept elsewhere (`prgate up`'s demo) picks ids."""
    opened = await bb.sim("POST", "/repositories/acme/widgets/pullrequests",
                          {"author": ALICE, "source_branch": "seven", "id": 7}, 201)
    assert opened["id"] == 7
    pr = await bb.client("acme").pull_request("acme", "widgets", 7)
    assert pr.source.branch.name == "seven"
    await bb.sim("POST", "/repositories/acme/widgets/pullrequests",
                 {"author": ALICE, "source_branch": "again", "id": 7}, 409)
    await bb.sim("POST", "/repositories/acme/widgets/pullrequests",
                 {"author": ALICE, "source_branch": "zero", "id": 0}, 422)
    unpicked = await bb.sim("POST", "/repositories/acme/widgets/pullrequests",
                            {"author": ALICE, "source_branch": "next"}, 201)
    assert unpicked["id"] == 8  # after the highest, as before


async def test_comments_create_list_update_and_only_the_author_edits(bb: BB) -> None:
    client = bb.client("acme")
    mine = await client.create_comment("acme", "widgets", 1, "hello\n\n[//]: # (prgate:gate)")
    other = await bb.sim("POST", "/repositories/acme/widgets/pullrequests/1/comments",
                         {"user": ALICE, "raw": "thanks"}, 201)
    assert mine.user is not None
    assert mine.user.type == "app_user"
    listed = [c async for c in client.list_comments("acme", "widgets", 1)]
    assert [c.id for c in listed] == [mine.id, other["id"]]
    edited = await client.update_comment("acme", "widgets", 1, mine.id, "edited")
    assert edited.content.raw == "edited"
    with pytest.raises(AuthFailed):
        await client.update_comment("acme", "widgets", 1, other["id"], "not mine")
    with pytest.raises(BadRequest):
        await client.create_comment("acme", "widgets", 1, "   ")
    control = await bb.sim("GET", "/repositories/acme/widgets/pullrequests/1/comments")
    assert [c["content"]["raw"] for c in control["comments"]] == ["edited", "thanks"]


async def test_decline_and_an_already_declined_pr_is_success_for_the_client(bb: BB) -> None:
    client = bb.client("acme")
    declined = await client.decline("acme", "widgets", 1)
    assert declined.state == "DECLINED"
    status, body, _ = await bb.api("POST", "/2.0/repositories/acme/widgets/pullrequests/1/decline",
                                   bb.tokens["acme"], json={})
    assert status == 400
    assert body["type"] == "error"
    assert "declined" in body["error"]["message"]
    again = await client.decline("acme", "widgets", 1)
    assert again.state == "DECLINED"
    await bb.sim("POST", "/repositories/acme/widgets/pullrequests",
                 {"author": ALICE, "title": "Merged one", "source_branch": "m"}, 201)
    await bb.sim("POST", "/repositories/acme/widgets/pullrequests/2/merge", {"user": MAINTAINER})
    with pytest.raises(BadRequest):  # a merged PR cannot be declined: not success
        await client.decline("acme", "widgets", 2)


async def test_build_status_by_abbreviated_hash_and_the_same_key_updates(bb: BB) -> None:
    client = bb.client("acme")
    pr = await client.pull_request("acme", "widgets", 1)
    assert pr.source.commit is not None
    full = pr.source.commit.hash
    first = await client.set_build_status("acme", "widgets", full[:12], key="prgate", state="INPROGRESS",
                                          url="https://prgate.test/v/1", name="prgate")
    second = await client.set_build_status("acme", "widgets", full[:7], key="prgate", state="SUCCESSFUL",
                                           url="https://prgate.test/v/1")
    assert (first.state, second.state, second.name) == ("INPROGRESS", "SUCCESSFUL", "prgate")
    listed = await bb.sim("GET", f"/repositories/acme/widgets/commit/{full}/statuses")
    assert [(s["key"], s["state"], s["commit"]["hash"]) for s in listed["statuses"]] == [
        ("prgate", "SUCCESSFUL", full)]
    _, page, _ = await bb.api("GET", f"/2.0/repositories/acme/widgets/commit/{full[:9]}/statuses", bb.tokens["acme"])
    assert [s["key"] for s in page["values"]] == ["prgate"]
    with pytest.raises(NotFound):  # shorter than 7 characters is not a commit
        await client.set_build_status("acme", "widgets", full[:6], key="prgate", state="FAILED", url="u")
    status, body, _ = await bb.api("POST", f"/2.0/repositories/acme/widgets/commit/{full}/statuses/build",
                                   bb.tokens["acme"], json={"key": "prgate", "state": "PENDING", "url": "u"})
    assert status == 400
    assert body["type"] == "error"


async def test_permission_is_the_effective_level_or_none(bb: BB) -> None:
    client = bb.client("acme")
    assert await client.permission("acme", "widgets", MAINTAINER) == "write"
    assert await client.permission("acme", "widgets", ALICE) is None
    await bb.sim("PUT", f"/repositories/acme/widgets/permissions/{ALICE}", {"permission": "admin"})
    assert await client.permission("acme", "widgets", ALICE) == "admin"
    status, _, _ = await bb.api("GET", '/2.0/workspaces/acme/permissions/repositories/widgets?q=nonsense',
                                bb.tokens["acme"])
    assert status == 400


async def test_file_raw_content_at_branch_or_commit_and_none_when_absent(bb: BB) -> None:
    client = bb.client("acme")
    assert await client.file("acme", "widgets", "main", ".prgate.yml") == "deadline_seconds: 600\n"
    assert await client.file("acme", "widgets", "main", "missing.yml") is None
    assert await client.file("acme", "widgets", "no-such-branch", ".prgate.yml") is None
    pushed = await bb.sim("POST", "/repositories/acme/widgets/files",
                          {"path": ".prgate.yml", "content": "warn_only: true\n", "author": MAINTAINER}, 201)
    assert await client.file("acme", "widgets", "main", ".prgate.yml") == "warn_only: true\n"
    assert await client.file("acme", "widgets", pushed["hash"][:12], ".prgate.yml") == "warn_only: true\n"


async def test_oauth_flow_then_current_user_and_a_workspace_token_cannot_ask_for_the_user(bb: BB) -> None:
    config = bb.state.config
    start = URL(authorize_url(bb.base, config.oauth_client_id, "st4te", "http://prgate.test/cb"))
    async with bb.session.get(start) as page:  # the picker page lists registered users
        assert page.status == 200
        assert "Alice" in await page.text()
    async with bb.session.get(start.update_query(user="alice"), allow_redirects=False) as redirect:
        assert redirect.status == 302
        location = URL(redirect.headers["Location"])
    assert (location.host, location.query["state"]) == ("prgate.test", "st4te")
    token = await oauth_exchange(bb.session, bb.base, client_id=config.oauth_client_id,
                                 client_secret=config.oauth_client_secret, code=location.query["code"],
                                 redirect_uri="http://prgate.test/cb")
    assert token.token_type == "bearer"
    assert token.expires_in > 0
    assert token.refresh_token
    me = await bb.client("acme").current_user(token.access_token)
    assert (me.account_id, me.nickname) == (ALICE, "alice")
    with pytest.raises(BadRequest, match="invalid_grant"):  # codes are single-use
        await oauth_exchange(bb.session, bb.base, client_id=config.oauth_client_id,
                             client_secret=config.oauth_client_secret, code=location.query["code"])
    with pytest.raises(AuthFailed):
        await oauth_exchange(bb.session, bb.base, client_id=config.oauth_client_id, client_secret="wrong",
                             code="x")
    with pytest.raises(AuthFailed):  # an access token is not a user
        await bb.client("acme").current_user()
    status, listing, _ = await bb.api("GET", "/2.0/user/workspaces", token.access_token)
    assert status == 200
    assert listing["values"] == []


async def test_the_picker_page_signs_in_whoever_was_clicked_or_typed(bb: BB) -> None:
    config = bb.state.config
    start = URL(authorize_url(bb.base, config.oauth_client_id, "st4te", "http://prgate.test/cb"))
    form = {"client_id": config.oauth_client_id, "response_type": "code", "state": "st4te",
            "redirect_uri": "http://prgate.test/cb"}
    # A browser clicking an account button also sends the empty free-text field, after the button's value.
    clicked = aiohttp.FormData([*form.items(), ("user", ALICE), ("user", "")])
    async with bb.session.post(start.with_query(None), data=clicked, allow_redirects=False) as redirect:
        assert redirect.status == 302
        assert URL(redirect.headers["Location"]).query["state"] == "st4te"
    typed = aiohttp.FormData([*form.items(), ("user", " alice ")])
    async with bb.session.post(start.with_query(None), data=typed, allow_redirects=False) as redirect:
        assert redirect.status == 302
    empty = aiohttp.FormData([*form.items(), ("user", "")])
    async with bb.session.post(start.with_query(None), data=empty, allow_redirects=False) as page:
        assert page.status == 422
        assert "No such Bitbucket user" in await page.text()


async def test_pull_request_html_page(bb: BB) -> None:
    async with bb.session.get(f"{bb.base}/acme/widgets/pull-requests/1") as page:
        assert page.status == 200
        assert "Fix the frobnicator" in await page.text()
    async with bb.session.get(f"{bb.base}/acme/widgets/pull-requests/9") as missing:
        assert missing.status == 404


async def test_a_deleted_repository_is_gone_from_discovery_with_its_pull_requests(bb: BB) -> None:
    client = bb.client("acme")
    await bb.sim("DELETE", "/repositories/acme/widgets", expect=200)
    assert [r.slug async for r in client.repositories("acme")] == ["gadgets"]
    with pytest.raises(NotFound):
        await client.pull_request("acme", "widgets", 1)
