"""Bitbucket pull requests through the one decision: the mapping of its facts, then `decide` itself."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backend_api.challenges.bitbucket import Identities, as_pull_request_event, needs_permission
from backend_api.challenges.decide import PrContext, decide
from provider_clients.bitbucket.hook_secret import bare_uuid
from shared_contracts.bitbucket import BitbucketAccount, BitbucketPullRequestEvent
from shared_contracts.events import Decision, IngestStatus
from shared_contracts.owner import InstallationStatus, RepoSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitbucket" / "webhooks"  # copies of ../shared/fixtures
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
IDS = Identities(tenant_id=10**15, repo_id=10**15 + 1, author_id=10**15 + 2, actor_id=10**15 + 3)
CTX = PrContext(
    installation_status=InstallationStatus.ACTIVE, repo_is_member=True, settings=RepoSettings(),
    author_verified=False, pending_challenge_id=None, now=NOW, verify_url="https://x/verify/t",
)


def _account(raw: dict[str, Any]) -> BitbucketAccount:
    return BitbucketAccount(account_id=raw.get("account_id"), uuid=bare_uuid(raw["uuid"]) or "",
                            nickname=raw.get("nickname", ""), display_name=raw.get("display_name", ""),
                            type=raw.get("type", "user"))


def fixture_event(name: str, key: str, **pr_changes: Any) -> BitbucketPullRequestEvent:
    """A real payload, read field by field as the receiver's normaliser does (its own tests cover it)."""
    body = json.loads((FIXTURES / name).read_text())
    pr, repo = body["pullrequest"], body["repository"]
    fields: dict[str, Any] = {
        "id": pr["id"], "title": pr["title"], "state": pr["state"], "draft": pr.get("draft", False),
        "source_commit": pr["source"]["commit"]["hash"], "source_branch": pr["source"]["branch"]["name"],
        "destination_branch": pr["destination"]["branch"]["name"], "html_url": pr["links"]["html"]["href"],
        "author": _account(pr["author"]),
    }
    fields.update(pr_changes)
    # Older payloads name the workspace only as the repository's owner.
    workspace = repo.get("workspace") or {"uuid": repo["owner"]["uuid"], "slug": repo["full_name"].split("/")[0]}
    return BitbucketPullRequestEvent.model_validate({
        "delivery_id": "req-1", "event_key": key,
        "workspace_uuid": bare_uuid(workspace["uuid"]), "workspace_slug": workspace["slug"],
        "repository": {"uuid": bare_uuid(repo["uuid"]), "full_name": repo["full_name"],
                       "private": repo["is_private"]},
        "pull_request": fields, "actor": _account(body["actor"]),
    })


def created(**pr_changes: Any) -> BitbucketPullRequestEvent:
    return fixture_event("cloud__pullrequest_created.json", "pullrequest:created", **pr_changes)


def test_a_first_time_contributor_is_gated_with_a_status_on_the_abbreviated_head() -> None:
    event = as_pull_request_event(created(), IDS, None)
    plan = decide(event, CTX)
    assert plan.decision is Decision.GATE
    assert event.pull_request.head_sha == "d31df3425c5b"  # webhooks carry 12 hex digits
    assert [s.state for s in plan.statuses] == ["pending"]
    assert (event.installation_id, event.repository.id, event.pull_request.author.id) == (
        IDS.tenant_id, IDS.repo_id, IDS.author_id)


@pytest.mark.parametrize(("permission", "decision"), [
    ("write", Decision.EXEMPT), ("admin", Decision.EXEMPT), ("read", Decision.GATE), (None, Decision.GATE),
])
def test_write_or_admin_on_the_repository_exempts(permission: Any, decision: Decision) -> None:
    plan = decide(as_pull_request_event(created(), IDS, permission), CTX)
    assert plan.decision is decision
    if decision is Decision.EXEMPT:
        assert plan.reason == f"author has {permission} permission"


def test_app_users_are_bots() -> None:
    bot = BitbucketAccount(uuid="6b47f1dc-23a0-4b99-9964-d13e665f5d8e", nickname="ci", type="app_user")
    plan = decide(as_pull_request_event(created(author=bot), IDS, None), CTX)
    assert (plan.status, plan.reason) == (IngestStatus.IGNORED, "bot author")


def test_a_draft_is_deferred_and_gated_once_updated_to_ready() -> None:
    draft = decide(as_pull_request_event(created(draft=True), IDS, None), CTX)
    assert draft.decision is Decision.DRAFT_DEFERRED
    ready = fixture_event("cloud__pullrequest_updated.json", "pullrequest:updated", draft=False)
    assert decide(as_pull_request_event(ready, IDS, None), CTX).decision is Decision.GATE


def test_updated_moves_the_status_to_a_new_head_and_ignores_an_unchanged_one() -> None:
    pending = replace(CTX, pending_challenge_id=7, pending_head_sha="0000000aaaaa")
    updated = fixture_event("cloud__pullrequest_updated.json", "pullrequest:updated", source_commit="1111111bbbbb")
    moved = decide(as_pull_request_event(updated, IDS, None), pending)
    assert moved.move_head
    assert [s.state for s in moved.statuses] == ["pending"]
    same = replace(pending, pending_head_sha="1111111bbbbb")
    plan = decide(as_pull_request_event(updated, IDS, None), same)
    assert (plan.status, plan.reason) == (IngestStatus.IGNORED, "the pull request's head did not change")


@pytest.mark.parametrize(("name", "key"), [
    ("cloud__pullrequest_rejected.json", "pullrequest:rejected"),
    ("BitbucketCloudPullRequestEventTest__fulfilledPayload.json", "pullrequest:fulfilled"),
])
def test_fulfilled_and_rejected_cancel_the_pending_challenge(name: str, key: str) -> None:
    event = fixture_event(name, key)
    assert not needs_permission(event)
    plan = decide(as_pull_request_event(event, IDS, None), replace(CTX, pending_challenge_id=7))
    assert plan.decision is Decision.CANCELLED
    assert plan.cancel_pending


def test_a_disconnected_workspace_is_refused() -> None:
    plan = decide(as_pull_request_event(created(), IDS, None),
                  replace(CTX, installation_status=InstallationStatus.DELETED))
    assert plan.status is IngestStatus.IGNORED
