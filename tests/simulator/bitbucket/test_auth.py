"""Credentials: Bitbucket's 401 JSON, and a workspace's access token sees only its workspace."""

from __future__ import annotations

import pytest

from provider_clients.bitbucket.api import AuthFailed, BadRequest, BitbucketClient, NotFound
from tests.simulator.bitbucket.support import ALICE, BB, GLOBEX_UUID, MAINTAINER


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_no_or_unknown_token_is_401_with_bitbucket_error_json(bb: BB, token: str | None) -> None:
    status, body, _ = await bb.api("GET", "/2.0/repositories/acme", token)
    assert status == 401
    assert body["type"] == "error"
    assert isinstance(body["error"]["message"], str)
    status, body, _ = await bb.api("GET", "/2.0/nowhere", token)
    assert status == 404
    assert body["type"] == "error"


async def test_the_client_error_names_the_call_and_never_the_token(bb: BB) -> None:
    secret = "ATCTT3x-definitely-secret-token"
    client = BitbucketClient(bb.session, bb.base, secret)
    with pytest.raises(AuthFailed) as caught:
        await client.workspace("acme")
    assert caught.value.status == 401
    assert "/2.0/workspaces/acme" in str(caught.value)
    assert secret not in str(caught.value)
    assert secret not in repr(client)


async def test_one_workspaces_token_never_reaches_another_workspace(bb: BB) -> None:
    acme = bb.client("acme")
    # Workspace resources of another workspace: 403; its repositories and PRs: 404 (not revealed).
    for ref in ("globex", GLOBEX_UUID):
        with pytest.raises(AuthFailed) as refused:
            await acme.workspace(ref)
        assert refused.value.status == 403
    with pytest.raises(AuthFailed):
        await acme.list_hooks("globex")
    with pytest.raises(AuthFailed):
        await acme.create_hook("globex", url="http://evil.test/hook", secret="s")
    with pytest.raises(AuthFailed):
        _ = [r async for r in acme.repositories("globex")]
    with pytest.raises(NotFound):
        await acme.repository("globex", "secret-sauce")
    with pytest.raises(NotFound):
        await acme.pull_request("globex", "secret-sauce", 1)
    with pytest.raises(NotFound):
        await acme.create_comment("globex", "secret-sauce", 1, "hi")
    with pytest.raises(NotFound):
        await acme.decline("globex", "secret-sauce", 1)
    assert await acme.file("globex", "secret-sauce", "main", "README.md") is None
    assert bb.state.pull_request("globex", "secret-sauce", 1).state == "OPEN"
    assert bb.state.comments_of("globex", "secret-sauce", 1) == []
    assert bb.state.hooks_of("globex") == []
    # …and globex's own token does reach them.
    assert (await bb.client("globex").pull_request("globex", "secret-sauce", 1)).state == "OPEN"


async def test_a_workspace_token_cannot_act_as_a_user_and_a_user_token_expires(bb: BB) -> None:
    status, body, _ = await bb.api("GET", "/2.0/user", bb.tokens["acme"])
    assert status == 403
    assert body["type"] == "error"
    user_token = bb.state.user_token(ALICE)
    status, _, _ = await bb.api("GET", "/2.0/user", user_token.value)
    assert status == 200
    status, _, _ = await bb.api("GET", "/2.0/workspaces/acme/hooks", user_token.value)
    assert status == 403  # hooks need the workspace's access token
    bb.clock.advance(bb.state.config.token_ttl_seconds + 1)
    status, _, _ = await bb.api("GET", "/2.0/user", user_token.value)
    assert status == 401  # expired


async def test_a_user_token_sees_only_repositories_it_holds_a_permission_on_filtered_by_role(bb: BB) -> None:
    await bb.sim("PUT", f"/repositories/acme/gadgets/permissions/{MAINTAINER}", {"permission": "admin"})
    user = BitbucketClient(bb.session, bb.base, bb.state.user_token(MAINTAINER).value)
    assert [r.slug async for r in user.repositories("acme")] == ["widgets", "gadgets"]
    assert [r.slug async for r in user.repositories("acme", role="contributor")] == ["widgets", "gadgets"]
    assert [r.slug async for r in user.repositories("acme", role="admin")] == ["gadgets"]
    assert [r.slug async for r in user.repositories("globex")] == []
    assert (await user.repository("acme", "widgets")).slug == "widgets"
    with pytest.raises(NotFound):
        await user.repository("globex", "secret-sauce")
    stranger = BitbucketClient(bb.session, bb.base, bb.state.user_token(ALICE).value)
    with pytest.raises(NotFound):
        await stranger.repository("acme", "widgets")
    with pytest.raises(BadRequest):
        _ = [r async for r in user.repositories("acme", role="owner")]


async def test_the_request_log_names_the_credential_of_each_request(bb: BB) -> None:
    await bb.sim("DELETE", "/requests", None, 200)
    await bb.client("acme").repository("acme", "widgets")
    await bb.client("globex").repository("globex", "secret-sauce")
    await bb.api("GET", "/2.0/repositories/acme/widgets", None)
    log = (await bb.sim("GET", "/requests?path_regex=^/bitbucket/2.0/repositories/", None, 200))["requests"]
    assert [(r["path"], r["status"], r["credential"]) for r in log] == [
        ("/bitbucket/2.0/repositories/acme/widgets", 200, "workspace:acme"),
        ("/bitbucket/2.0/repositories/globex/secret-sauce", 200, "workspace:globex"),
        ("/bitbucket/2.0/repositories/acme/widgets", 401, None),  # no token: no credential to name
    ]
