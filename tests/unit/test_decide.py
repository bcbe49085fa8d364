"""The decision function alone: no database, no HTTP."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backend_api.challenges.decide import PrContext, decide
from bot_worker.providers.github.normalize import pull_request_event
from shared_contracts.events import Decision, IngestStatus, PullRequestEvent
from shared_contracts.owner import InstallationStatus, RepoSettings
from tests.support.payloads import pull_request_payload

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


BASE = PrContext(
    installation_status=InstallationStatus.ACTIVE, repo_is_member=True, settings=RepoSettings(),
    author_verified=False, pending_challenge_id=None, now=NOW, verify_url="https://x/verify/t",
)


def ctx(**overrides: Any) -> PrContext:
    return replace(BASE, **overrides)


def event(action: str = "opened", **kw: Any) -> PullRequestEvent:
    return pull_request_event("d", pull_request_payload(action, **kw))


def test_gate_sets_deadline_from_settings_and_states_it() -> None:
    plan = decide(event(), ctx(settings=RepoSettings(deadline_seconds=7200)))
    assert plan.decision is Decision.GATE
    assert plan.create_challenge_deadline == NOW + timedelta(hours=2)
    [comment] = plan.comments
    assert "2026-11-22 14:00 UTC" in comment.body
    assert "https://x/verify/t" in comment.body


def test_warn_only_comment_does_not_threaten_closing() -> None:
    plan = decide(event(), ctx(settings=RepoSettings(warn_only=True)))
    assert "warn-only" in plan.comments[0].body
    assert "closed automatically" not in plan.comments[0].body


@pytest.mark.parametrize(
    ("status", "reason"),
    [(None, "unknown installation"), (InstallationStatus.SUSPENDED, "installation is suspended"),
     (InstallationStatus.DELETED, "installation is deleted")],
)
def test_inactive_installations_are_ignored(status: InstallationStatus | None, reason: str) -> None:
    plan = decide(event(), ctx(installation_status=status))
    assert (plan.status, plan.reason) == (IngestStatus.IGNORED, reason)


def test_precedence_exempt_beats_verified_beats_draft() -> None:
    e = event(association="MEMBER", draft=True)
    assert decide(e, ctx(author_verified=True)).decision is Decision.EXEMPT
    e = event(draft=True)
    assert decide(e, ctx(author_verified=True)).decision is Decision.VERIFIED_NOOP
    assert decide(e, ctx()).decision is Decision.DRAFT_DEFERRED


def test_custom_exempt_associations() -> None:
    settings = RepoSettings(exempt_associations=["OWNER"])
    assert decide(event(association="MEMBER"), ctx(settings=settings)).decision is Decision.GATE


def test_closed_pr_reopened_event_with_closed_state_is_ignored() -> None:
    plan = decide(event("opened", state="closed"), ctx())
    assert plan.status is IngestStatus.IGNORED
