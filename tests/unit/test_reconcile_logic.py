"""Reconciliation's pure parts: the diff (backend_api.reconcile.diff), the repository window and
cursor, GitHub's rate-limit headers and response shapes (providers/github/readers.py,
jobs/reconcile.py), the CLI's report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backend_api.challenges.messages import plural
from backend_api.reconcile.diff import installations_to_delete, plan_installation, plan_pull_requests
from backend_api.store.challenges import PendingChallenge
from backend_api.store.installations import InstallationDetail, Membership
from bot_worker.jobs.reconcile import parse_cursor, window
from bot_worker.providers.github.readers import (
    RateLimit,
    parse_installations,
    parse_pull_requests,
    parse_repositories,
    rate_limit,
)
from prgate.reconcile_cli import format_report
from shared_contracts.events import InstallationInfo, Repository
from shared_contracts.owner import InstallationStatus
from shared_contracts.reconcile import (
    InstallationSnapshot,
    OpenPullRequest,
    ReconcileError,
    ReconcileRunReport,
    ReconcileStats,
    Repair,
    RepairKind,
)

SINCE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BEFORE = SINCE - timedelta(hours=1)
AFTER = SINCE + timedelta(seconds=5)


def info(*, suspended: bool = False, login: str = "octo", selection: str = "selected") -> InstallationInfo:
    return InstallationInfo.model_validate({
        "id": 1, "account": {"id": 10, "login": login, "type": "Organization"}, "repository_selection": selection,
        "suspended_at": "2026-03-01T00:00:00Z" if suspended else None,
    })


def known(status: InstallationStatus = InstallationStatus.ACTIVE, *, updated: datetime = BEFORE) -> InstallationDetail:
    return InstallationDetail(
        installation_id=1, account_id=10, account_login="octo", account_type="Organization",
        repository_selection="selected", status=status, updated_at=updated,
    )


def repo(rid: int, name: str | None = None) -> Repository:
    return Repository(id=rid, full_name=name or f"octo/r{rid}")


def member(
    rid: int, *, name: str | None = None, added: datetime = BEFORE, removed: datetime | None = None
) -> Membership:
    return Membership(
        repo_id=rid, full_name=name or f"octo/r{rid}", private=False, added_at=added, removed_at=removed
    )


def snap(repos: list[Repository] | None, *, complete: bool = True, **kwargs: Any) -> InstallationSnapshot:
    return InstallationSnapshot(
        run_id=1, installation=info(**kwargs), repositories=repos, repositories_complete=complete
    )


def kinds(plan: Any) -> list[tuple[RepairKind, int | None]]:
    return [(s.kind, s.repo.id if s.repo else None) for s in plan.steps]


# ---- installations ----------------------------------------------------------------------------------


def test_in_agreement_nothing_to_repair() -> None:
    plan = plan_installation(known(), [member(1), member(2)], snap([repo(1), repo(2)]), since=SINCE)
    assert plan.steps == []


def test_an_unknown_installation_is_created_with_its_repositories() -> None:
    plan = plan_installation(None, [], snap([repo(1), repo(2)]), since=SINCE)
    [step] = plan.steps
    assert step.kind is RepairKind.INSTALLATION_CREATED
    assert step.event == ("installation", "created")
    assert [r.id for r in step.added] == [1, 2]


def test_a_deleted_installation_still_listed_is_created_again_unless_deleted_during_the_run() -> None:
    plan = plan_installation(known(InstallationStatus.DELETED), [member(1, removed=BEFORE)], snap([repo(1)]),
                             since=SINCE)
    assert kinds(plan) == [(RepairKind.INSTALLATION_CREATED, None)]
    raced = plan_installation(known(InstallationStatus.DELETED, updated=AFTER), [], snap([repo(1)]), since=SINCE)
    assert raced.steps == []


def test_missed_repository_added_and_removed() -> None:
    plan = plan_installation(known(), [member(1), member(2)], snap([repo(1), repo(3)]), since=SINCE)
    assert kinds(plan) == [(RepairKind.REPOSITORY_ADDED, 3), (RepairKind.REPOSITORY_REMOVED, 2)]
    added = plan.steps[0]
    assert added.event == ("installation_repositories", "added")
    removed = plan.steps[1]
    assert removed.event == ("installation_repositories", "removed")
    assert [r.full_name for r in removed.removed] == ["octo/r2"]


def test_a_repository_removed_earlier_and_listed_again_is_added() -> None:
    plan = plan_installation(known(), [member(1, removed=BEFORE)], snap([repo(1)]), since=SINCE)
    assert kinds(plan) == [(RepairKind.REPOSITORY_ADDED, 1)]


def test_an_incomplete_repository_list_only_adds() -> None:
    plan = plan_installation(known(), [member(1), member(2)], snap([repo(3)], complete=False), since=SINCE)
    assert kinds(plan) == [(RepairKind.REPOSITORY_ADDED, 3)]


def test_unknown_repositories_leave_membership_alone() -> None:
    plan = plan_installation(known(InstallationStatus.SUSPENDED), [member(1)], snap(None, suspended=True),
                             since=SINCE)
    assert plan.steps == []


def test_webhooks_applied_during_the_run_win() -> None:
    members = [member(1, added=AFTER), member(2, removed=AFTER)]
    # 1 was added and 2 removed by webhooks after GitHub was asked: the listing is older.
    plan = plan_installation(known(), members, snap([repo(2)]), since=SINCE)
    assert plan.steps == []


def test_renamed_repository() -> None:
    plan = plan_installation(known(), [member(1, name="octo/old")], snap([repo(1, "octo/new")]), since=SINCE)
    [step] = plan.steps
    assert step.kind is RepairKind.REPOSITORY_RENAMED
    assert step.detail == "renamed from octo/old"
    assert step.added == (repo(1, "octo/new"),)


@pytest.mark.parametrize(
    ("status", "suspended", "expected"),
    [
        (InstallationStatus.ACTIVE, True, RepairKind.INSTALLATION_SUSPENDED),
        (InstallationStatus.SUSPENDED, False, RepairKind.INSTALLATION_UNSUSPENDED),
    ],
)
def test_missed_suspend_and_unsuspend(status: InstallationStatus, suspended: bool, expected: RepairKind) -> None:
    plan = plan_installation(known(status), [member(1)], snap(None if suspended else [repo(1)], suspended=suspended),
                             since=SINCE)
    assert kinds(plan) == [(expected, None)]
    raced = plan_installation(known(status, updated=AFTER), [member(1)],
                              snap(None if suspended else [repo(1)], suspended=suspended), since=SINCE)
    assert raced.steps == []


def test_account_and_selection_changes_are_an_update() -> None:
    plan = plan_installation(known(), [member(1)], snap([repo(1)], login="octo-renamed", selection="all"),
                             since=SINCE)
    [step] = plan.steps
    assert step.kind is RepairKind.INSTALLATION_UPDATED
    assert step.event is None
    assert "octo → octo-renamed" in step.detail
    assert "selected → all" in step.detail


def test_installations_no_longer_listed_are_deleted_within_scope() -> None:
    two = InstallationDetail(
        installation_id=2, account_id=20, account_login="acme", account_type="User",
        repository_selection="all", status=InstallationStatus.ACTIVE, updated_at=BEFORE,
    )
    fresh = InstallationDetail(
        installation_id=3, account_id=30, account_login="new", account_type="User",
        repository_selection="all", status=InstallationStatus.ACTIVE, updated_at=AFTER,
    )
    live = [known(), two, fresh]
    assert [i.installation_id for i in installations_to_delete(live, [1], scope=None, since=SINCE)] == [2]
    assert installations_to_delete(live, [1, 2], scope=None, since=SINCE) == []
    assert [i.installation_id for i in installations_to_delete(live, [], scope=2, since=SINCE)] == [2]
    assert installations_to_delete(live, [2], scope=2, since=SINCE) == []


# ---- pull requests ----------------------------------------------------------------------------------


def pr(number: int, state: str = "open", created_at: datetime | None = None) -> OpenPullRequest:
    return OpenPullRequest.model_validate({
        "id": 1000 + number, "number": number, "state": state, "author": {"id": 5, "login": "x", "type": "User"},
        "created_at": created_at,
    })


def pending(number: int, created: datetime = BEFORE) -> PendingChallenge:
    return PendingChallenge(
        challenge_id=number * 10, repo_full_name="octo/r1", pr_number=number, pr_id=1000 + number, head_sha="",
        author_id=5, author_login="x", created_at=created,
    )


def test_open_pull_requests_never_decided_are_evaluated_once_each_in_order() -> None:
    plan = plan_pull_requests([pr(3), pr(1), pr(2), pr(3)], {2}, [], complete=True, since=SINCE)
    assert [p.number for p in plan.evaluate] == [1, 3]
    assert plan.cancel == []


def test_pending_challenges_of_pull_requests_no_longer_open_are_cancelled() -> None:
    plan = plan_pull_requests([pr(1)], {1}, [pending(1), pending(2)], complete=True, since=SINCE)
    assert plan.evaluate == []
    assert [c.pr_number for c in plan.cancel] == [2]


def test_an_incomplete_list_never_cancels() -> None:
    plan = plan_pull_requests([pr(1)], set(), [pending(2)], complete=False, since=SINCE)
    assert [p.number for p in plan.evaluate] == [1]
    assert plan.cancel == []


def test_a_challenge_created_during_the_run_is_kept() -> None:
    plan = plan_pull_requests([], set(), [pending(2, created=AFTER)], complete=True, since=SINCE)
    assert plan.cancel == []


def test_pull_requests_opened_before_the_installation_are_not_evaluated() -> None:
    installed = datetime(2026, 2, 1, tzinfo=UTC)
    prs = [pr(1, created_at=installed - timedelta(days=30)), pr(2, created_at=installed), pr(3)]
    plan = plan_pull_requests(prs, set(), [], complete=True, since=SINCE, installed_at=installed)
    assert [p.number for p in plan.evaluate] == [2, 3]  # an unknown creation time is evaluated
    assert [p.number for p in plan_pull_requests(prs, set(), [], complete=True, since=SINCE).evaluate] == [1, 2, 3]


def test_a_closed_item_in_the_list_counts_as_not_open() -> None:
    plan = plan_pull_requests([pr(2, "closed")], set(), [pending(2)], complete=True, since=SINCE)
    assert plan.evaluate == []
    assert [c.pr_number for c in plan.cancel] == [2]


# ---- worker: window, cursor, rate limits, GitHub's shapes ------------------------------------------------


def test_window_rotates_after_the_cursor_and_wraps() -> None:
    keys = [(2, 1), (1, 3), (1, 1), (2, 7)]
    assert window(keys, None, 3) == [(1, 1), (1, 3), (2, 1)]
    assert window(keys, (2, 1), 3) == [(2, 7), (1, 1), (1, 3)]
    assert window(keys, (1, 2), 10) == [(1, 3), (2, 1), (2, 7), (1, 1)]
    assert window(keys, (9, 9), 2) == [(1, 1), (1, 3)]  # past the end: from the start
    assert window([], (1, 1), 5) == []


@pytest.mark.parametrize(("raw", "expected"), [
    (b"12:34", (12, 34)), ("1:2", (1, 2)), (None, None), (b"x:1", None), (b"12", None), (b"-1:2", None),
])
def test_parse_cursor(raw: Any, expected: tuple[int, int] | None) -> None:
    assert parse_cursor(raw) == expected


def test_rate_limit_headers_and_reserve() -> None:
    headers = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "999", "X-RateLimit-Reset": "1700000000"}
    budget = rate_limit(headers)
    assert budget == RateLimit(limit=5000, remaining=999, reset_at=1700000000.0)
    assert budget.below(0.2)
    assert not RateLimit(5000, 1000, 0).below(0.2)
    assert not budget.below(0.0)
    assert rate_limit({}) is None
    assert rate_limit({**headers, "X-RateLimit-Remaining": "lots"}) is None


def test_githubs_shapes_are_read_and_anything_unreadable_makes_a_listing_incomplete() -> None:
    repos = parse_repositories([{"total_count": 2, "repositories": [
        {"id": 1, "full_name": "octo/a", "private": True, "name": "a", "owner": {"login": "octo"}},
        {"id": 2, "full_name": "octo/b"},
    ]}], complete=True)
    assert repos.complete
    assert [(r.id, r.full_name, r.private) for r in repos.items] == [(1, "octo/a", True), (2, "octo/b", False)]
    assert not parse_repositories([{"repositories": [{"id": 3, "full_name": "nope"}]}], complete=True).complete
    assert not parse_repositories([{"message": "Bad credentials"}], complete=True).complete

    item = {"id": 9, "number": 4, "state": "open", "draft": True, "title": "t", "html_url": "https://x",
            "user": {"id": 5, "login": "dev", "type": "User"}, "author_association": "CONTRIBUTOR",
            "head": {"sha": "a" * 40, "ref": "f"}, "created_at": "2026-01-02T03:04:05Z"}
    pulls = parse_pull_requests([[item]], complete=True)
    assert pulls.complete
    [p] = pulls.items
    assert (p.number, p.draft, p.head_sha, p.author.login, p.author_association) == (4, True, "a" * 40, "dev",
                                                                                     "CONTRIBUTOR")
    assert p.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    # Not needed to decide; kept out of the snapshot.
    assert p.title == ""
    assert p.html_url == ""
    assert not parse_pull_requests([[item, {"id": 1}]], complete=True).complete

    installs = parse_installations([
        {"id": 1, "account": {"id": 10, "login": "octo", "type": "Organization"}, "repository_selection": "all",
         "suspended_at": None, "created_at": "2026-01-02T03:04:05Z"},
        {"id": "broken"},
    ])
    assert [(i.info.id, i.info.repository_selection, i.created_at) for i in installs.items] == [
        (1, "all", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ]
    assert not installs.complete


def test_the_cli_report_lists_repairs_and_errors() -> None:
    report = ReconcileRunReport(
        run_id=7, trigger="cli", installation_id=None, worker_id="w", started_at=SINCE, finished_at=AFTER,
        repairs=[
            Repair(kind=RepairKind.REPOSITORY_ADDED, installation_id=1, repo_id=3, repo_full_name="octo/r3",
                   detail="listed by GitHub"),
            Repair(kind=RepairKind.PULL_REQUEST_EVALUATED, installation_id=1, repo_id=3, repo_full_name="octo/r3",
                   pr_number=4, detail="GATE"),
        ],
        errors=[ReconcileError(installation_id=2, message="deferred")],
        stats=ReconcileStats(installations=2, repositories=3, pull_requests=4),
    )
    text = format_report(report)
    assert text.splitlines()[0] == "reconciliation run 7 (every installation): 2 repairs, 1 error"
    assert "repository_added        installation 1 octo/r3: listed by GitHub" in text
    assert "pull_request_evaluated  installation 1 octo/r3#4: GATE" in text
    assert "installation 2: deferred" in text
    quiet = format_report(report.model_copy(update={"repairs": [], "errors": []}))
    assert "nothing to repair" in quiet



@pytest.mark.parametrize(("count", "noun", "expected"), [
    (0, "repository", "0 repositories"), (1, "repository", "1 repository"), (2, "repository", "2 repositories"),
    (1, "error", "1 error"), (3, "error", "3 errors"), (2, "delay", "2 delays"),
    (1, "installation was", "1 installation was"),
])
def test_counts_read_as_english(count: int, noun: str, expected: str) -> None:
    assert plural(count, noun) == expected
