"""Bitbucket webhook normalization over every real payload in tests/fixtures/bitbucket/webhooks/."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot_worker.providers.bitbucket.normalize import (
    BOT_COMMENT,
    NOT_A_COMMAND,
    NOT_MAIN_BRANCH,
    UNKNOWN_EVENT,
    Ignored,
    NotForwardable,
    normalize,
    payload_workspace,
)
from shared_contracts.bitbucket import BitbucketCommandEvent, BitbucketPullRequestEvent, BitbucketPushEvent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitbucket" / "webhooks"
ALL = sorted(p.name for p in FIXTURES.glob("*.json"))
CLOUDBEERS = "5e429024-1f85-425f-8955-8af0c35d1b41"
NFALCO = "7d3a178a-a087-4756-b2da-2f9eadf50ba8"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


# What each real body is: its event key (the files carry no headers) and what it normalizes to.
PULL_REQUESTS = {
    "BitbucketCloudPullRequestEventTest__createPayloadFork.json": ("pullrequest:created", "OPEN", "1c48041a96db"),
    "BitbucketCloudPullRequestEventTest__createPayloadOrigin.json": ("pullrequest:created", "OPEN", "a72355f35fde"),
    "BitbucketCloudPullRequestEventTest__fulfilledPayload.json": ("pullrequest:fulfilled", "MERGED", "a72355f35fde"),
    "BitbucketCloudPullRequestEventTest__rejectedPayload.json": ("pullrequest:rejected", "DECLINED", "63e3d18dca4c"),
    "BitbucketCloudPullRequestEventTest__updatePayload_newCommit.json": ("pullrequest:updated", "OPEN", "63e3d18dca4c"),
    "BitbucketCloudPullRequestEventTest__updatePayload_newDestination.json":
        ("pullrequest:updated", "OPEN", "63e3d18dca4c"),
    "BitbucketCloudPullRequestEventTest__updatePayload_newDestinationCommit.json":
        ("pullrequest:updated", "OPEN", "63e3d18dca4c"),
    "cloud__pullrequest_created.json": ("pullrequest:created", "OPEN", "d31df3425c5b"),
    "cloud__pullrequest_rejected.json": ("pullrequest:rejected", "DECLINED", "d31df3425c5b"),
    "cloud__pullrequest_updated.json": ("pullrequest:updated", "OPEN", "f945c96c71d0"),
}
# None: answered 202 ignored (a tag, a deletion, nothing moved).
PUSHES: dict[str, tuple[str, str] | None] = {
    "BitbucketCloudPushEventTest__createPayload.json": ("main", "501bf5b99365d1d870882254b9360c17172bda0e"),
    "BitbucketCloudPushEventTest__emptyPayload.json": None,
    "BitbucketCloudPushEventTest__multipleChangesPayload.json": ("main", "325d37697849f4b1fe42cb19c20134af08e03a82"),
    "BitbucketCloudPushEventTest__newTagPayload.json": None,
    "BitbucketCloudPushEventTest__updatePayload.json": ("main", "e42fac24456e4a56f1b7f9358afc3070e3b7ddec"),
    "cloud__annotated_tag_created.json": None,
    # No `mainbranch` in these bodies: the first branch moved goes to the backend, which knows the main branch.
    "cloud__branch_created.json": ("feature/test", "174561d625c9623b60d8aba09b7f08ddc9df45cd"),
    "cloud__branch_deleted.json": None,
    "cloud__commit_created.json": ("feature/issue-819", "5ecffa3874e96920f24a2b3c0d0038e47d5cd1a4"),
    "cloud__signed_payload.json": ("feature/webhook", "d7f300a32270053bdfd97a6d64113f58202c33e7"),
    "cloud__tag_created.json": None,
    "cloud__tag_deleted.json": None,
}


def test_every_fixture_is_covered() -> None:
    assert sorted([*PULL_REQUESTS, *PUSHES]) == ALL


@pytest.mark.parametrize("name", sorted(PULL_REQUESTS))
def test_pull_request_fixtures(name: str) -> None:
    event_key, state, commit = PULL_REQUESTS[name]
    payload = load(name)
    model = normalize(event_key, "req-1", payload)
    assert isinstance(model, BitbucketPullRequestEvent)
    pr = payload["pullrequest"]
    assert (model.event_key, model.delivery_id) == (event_key, "req-1")
    assert (model.pull_request.id, model.pull_request.state, model.pull_request.source_commit) == (
        pr["id"], state, commit)
    assert model.pull_request.author.account_id == pr["author"]["account_id"]
    assert model.pull_request.author.uuid == pr["author"]["uuid"].strip("{}")
    assert model.pull_request.source_branch == pr["source"]["branch"]["name"]
    assert model.pull_request.destination_branch == pr["destination"]["branch"]["name"]
    assert model.pull_request.html_url == pr["links"]["html"]["href"]
    assert model.repository.full_name == payload["repository"]["full_name"]
    assert model.repository.uuid == payload["repository"]["uuid"].strip("{}")
    workspace = payload["repository"].get("workspace") or payload["repository"]["owner"]
    assert model.workspace_uuid == workspace["uuid"].strip("{}")
    assert model.workspace_slug == (workspace.get("slug") or workspace["username"])


@pytest.mark.parametrize("name", sorted(PUSHES))
def test_push_fixtures(name: str) -> None:
    model = normalize("repo:push", "req-2", load(name))
    expected = PUSHES[name]
    if expected is None:
        assert model == Ignored(NOT_MAIN_BRANCH)
        return
    assert isinstance(model, BitbucketPushEvent)
    assert (model.branch, model.head_commit) == expected
    assert model.repository.main_branch is None


def test_push_to_another_branch_than_the_named_main_branch_is_ignored() -> None:
    payload = load("BitbucketCloudPushEventTest__multipleChangesPayload.json")
    payload["repository"]["mainbranch"] = {"name": "manchu", "type": "branch"}
    model = normalize("repo:push", "r", payload)
    assert isinstance(model, BitbucketPushEvent)
    assert (model.branch, model.repository.main_branch) == ("manchu", "manchu")
    payload["repository"]["mainbranch"] = {"name": "develop", "type": "branch"}
    assert normalize("repo:push", "r", payload) == Ignored(NOT_MAIN_BRANCH)


def comment_payload(text: str, *, user_type: str = "user") -> dict[str, Any]:
    """A `pullrequest:comment_created` body: Bitbucket's shape (comment beside pullrequest), on a real PR body."""
    payload = copy.deepcopy(load("cloud__pullrequest_updated.json"))
    author = copy.deepcopy(payload["actor"])
    author["type"] = user_type
    payload["comment"] = {"id": 555, "content": {"raw": text, "markup": "markdown", "html": ""},
                          "user": author, "type": "pullrequest_comment"}
    return payload


def test_a_prgate_comment_is_a_command() -> None:
    model = normalize("pullrequest:comment_created", "r", comment_payload("/prgate Recheck\nplease"))
    assert isinstance(model, BitbucketCommandEvent)
    assert (model.command, model.comment_id, model.pull_request.id) == ("recheck", 555, 1)
    assert model.workspace_uuid == NFALCO
    bare = normalize("pullrequest:comment_created", "r", comment_payload("/prgate"))
    assert isinstance(bare, BitbucketCommandEvent)
    assert bare.command == "help"


@pytest.mark.parametrize("text", ["looks good", "please /prgate recheck", "/prgatex", ""])
def test_other_comments_are_ignored(text: str) -> None:
    assert normalize("pullrequest:comment_created", "r", comment_payload(text)) == Ignored(NOT_A_COMMAND)


def test_a_bots_command_is_ignored() -> None:
    payload = comment_payload("/prgate exempt", user_type="app_user")
    assert normalize("pullrequest:comment_created", "r", payload) == Ignored(BOT_COMMENT)


@pytest.mark.parametrize("key", ["repo:commit_status_created", "issue:created", "pullrequest:approved"])
def test_unknown_event_keys_are_ignored(key: str) -> None:
    assert normalize(key, "r", load("cloud__pullrequest_created.json")) == Ignored(UNKNOWN_EVENT)


def test_workspace_is_read_from_workspace_then_owner() -> None:
    assert payload_workspace(load("cloud__pullrequest_created.json")) == (
        "2f053ac1-4c69-4188-8014-43c976bf1c7c", "amuniz")
    assert payload_workspace(load("BitbucketCloudPushEventTest__updatePayload.json")) == (CLOUDBEERS, "cloudbeers")
    assert payload_workspace({"repository": {"full_name": "a/b"}}) is None
    with pytest.raises(NotForwardable):
        payload_workspace({"repository": {"workspace": {"uuid": "not-a-uuid"}}})


def test_missing_pieces_are_errors_not_crashes() -> None:
    payload = load("cloud__pullrequest_created.json")
    del payload["pullrequest"]
    with pytest.raises(NotForwardable):
        normalize("pullrequest:created", "r", payload)
    payload = load("cloud__pullrequest_created.json")
    payload["pullrequest"]["author"] = {"nickname": "no uuid"}
    with pytest.raises(ValidationError):
        normalize("pullrequest:created", "r", payload)
    payload = load("cloud__pullrequest_created.json")
    payload["pullrequest"]["state"] = "WHATEVER"
    with pytest.raises(ValidationError):
        normalize("pullrequest:created", "r", payload)
    payload = load("cloud__pullrequest_created.json")
    del payload["repository"]["workspace"], payload["repository"]["owner"]
    with pytest.raises(NotForwardable):
        normalize("pullrequest:created", "r", payload)
