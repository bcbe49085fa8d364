"""Bad input to the simulator is a 4xx with Bitbucket's error JSON (or the control API's), never a
5xx, and changes nothing."""

from __future__ import annotations

import pytest

from tests.simulator.bitbucket.support import ALICE, BB

REPO = "/2.0/repositories/acme/widgets"

API_CASES = [
    ("POST", REPO + "/pullrequests/1/comments", b"not json"),
    ("POST", REPO + "/pullrequests/1/comments", b"[1, 2]"),
    ("POST", REPO + "/pullrequests/1/comments", b'{"content": "raw"}'),
    ("POST", REPO + "/pullrequests/1/comments", b'{"content": {"raw": 5}}'),
    ("PUT", REPO + "/pullrequests/1/comments/999999", b'{"content": {"raw": "x"}}'),
    ("PUT", REPO + "/pullrequests/1/comments/abc", b'{"content": {"raw": "x"}}'),
    ("GET", REPO + "/pullrequests/99999999999999999999", b""),
    ("GET", REPO + "/pullrequests/-1", b""),
    ("POST", REPO + "/pullrequests/1/decline", b"{"),
    ("POST", REPO + "/commit/zzzzzzz/statuses/build", b'{"key": "k", "state": "FAILED", "url": "u"}'),
    ("POST", REPO + "/commit/main/statuses/build", b'{"key": 3, "state": "FAILED", "url": "u"}'),
    ("POST", REPO + "/commit/main/statuses/build", b'{"key": "k", "state": "FAILED", "url": "u", "name": []}'),
    ("GET", REPO + "/src/main/..%2F..%2Fetc%2Fpasswd", b""),
    ("GET", "/2.0/workspaces/acme/hooks/not-a-uuid", b""),
    ("PUT", "/2.0/workspaces/acme/hooks/{00000000-0000-4000-8000-000000000000}", b"{}"),
    ("POST", "/2.0/workspaces/acme/hooks", b'{"url": 5, "events": "repo:push"}'),
    ("POST", "/2.0/workspaces/acme/hooks", b'{"url": "http://x.test", "events": ["repo:push"], "secret": 7}'),
    ("GET", "/2.0/workspaces/acme/permissions/repositories/widgets?q=user.account_id%3D%22x%22%20OR%201", b""),
    ("GET", "/2.0/repositories/acme?page=abc", b""),
    ("GET", "/2.0/repositories/nowhere", b""),
    ("GET", REPO + "/pullrequests?state=", b""),
]


@pytest.mark.parametrize(("method", "path", "body"), API_CASES)
async def test_bad_rest_input_is_a_4xx_with_error_json(bb: BB, method: str, path: str, body: bytes) -> None:
    before = (len(bb.state.comments), len(bb.state.hooks), len(bb.state.statuses),
              bb.state.pull_request("acme", "widgets", 1).state)
    status, answer, _ = await bb.api(method, path, bb.tokens["acme"], data=body)
    assert 400 <= status < 500, answer
    assert answer["type"] == "error"
    assert isinstance(answer["error"]["message"], str)
    after = (len(bb.state.comments), len(bb.state.hooks), len(bb.state.statuses),
             bb.state.pull_request("acme", "widgets", 1).state)
    assert after == before


CONTROL_CASES = [
    ("POST", "/workspaces", b"{"),
    ("POST", "/workspaces", b'{"slug": 3}'),
    ("POST", "/workspaces", b'{"slug": "x", "uuid": "nope"}'),
    ("POST", "/workspaces", b'{"slug": "acme"}'),
    ("POST", "/workspaces/nowhere/tokens", b"{}"),
    ("POST", "/users", b'{"account_id": "a", "type": "robot"}'),
    ("PUT", f"/repositories/acme/widgets/permissions/{ALICE}", b'{"permission": "owner"}'),
    ("PUT", "/repositories/acme/widgets/permissions/nobody", b'{"permission": "read"}'),
    ("POST", "/repositories/acme/widgets/pullrequests", b'{"author": "nobody", "source_branch": "b"}'),
    ("POST", "/repositories/acme/widgets/pullrequests", b'{"author": "' + ALICE.encode() + b'", "draft": "yes",'
                                                          b' "source_branch": "b"}'),
    ("PUT", "/repositories/acme/widgets/pullrequests/1/draft", b'{"draft": 1}'),
    ("POST", "/repositories/acme/widgets/pullrequests/1/comments", b'{"user": "' + ALICE.encode() + b'"}'),
    ("POST", "/repositories/acme/widgets/files", b'{"path": "a", "content": 5}'),
    ("POST", "/repositories/acme/widgets/files", b'{"path": "a", "content": "x", "branch": "nope"}'),
    ("POST", "/faults/rules", b'{"path_regex": "("}'),
]


@pytest.mark.parametrize(("method", "path", "body"), CONTROL_CASES)
async def test_bad_control_input_is_a_4xx(bb: BB, method: str, path: str, body: bytes) -> None:
    async with bb.session.request(method, f"{bb.base}/_sim{path}", data=body) as response:
        assert 400 <= response.status < 500, await response.text()
        assert response.content_type == "application/json"
