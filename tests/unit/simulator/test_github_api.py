"""The GitHub simulator, exercised over real HTTP (pytest-aiohttp's ``aiohttp_client``)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from prgate.simulator.core.types import iso
from tests.unit.simulator.support import (
    APP_ID,
    T0,
    ServerFactory,
    Sim,
    _links,
)

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


# ---- users: lookup, rename and reuse of a login; the user's installations (docs/security.md, "Rights …") -------------


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


# ---- the App itself, comments by other Apps (docs/security.md, "Gate bypass through a foreign comment") --------------


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
