"""docs/security.md, "Gate bypass through a foreign comment", "A run that outlives its lease keeps writing": the pure
rules behind comment ownership and the lease budget."""

from __future__ import annotations

from typing import Any

import pytest

from bot_worker.providers.base import request_timeout
from bot_worker.providers.github.client import AppIdentity, comment_on, owns_comment
from bot_worker.worker.main import lease_problem

APP = AppIdentity(id=424242, slug="prgate")


def comment(login: str, user_type: str = "Bot", via: dict[str, Any] | None = None, number: int = 7) -> dict[str, Any]:
    return {"user": {"login": login, "type": user_type}, "performed_via_github_app": via,
            "issue_url": f"https://api.github.com/repos/o/r/issues/{number}"}


@pytest.mark.parametrize(
    ("candidate", "ours"),
    [
        (comment("prgate[bot]", via={"id": 424242, "slug": "prgate"}), True),
        (comment("prgate[bot]"), True),  # GitHub left performed_via_github_app out
        (comment("prgate[bot]", via={"id": 1, "slug": "prgate"}), False),  # same slug claimed by another App id
        (comment("other-gate[bot]", via={"id": 777}), False),
        (comment("ci-helper[bot]"), False),
        (comment("prgate[bot]", user_type="User"), False),
        (comment("prgate"), False),  # a person whose login is the slug
        ({"user": None}, False),
    ],
)
def test_only_this_apps_bot_user_owns_a_comment(candidate: dict[str, Any], ours: bool) -> None:
    assert owns_comment(candidate, APP) is ours


def test_a_comment_belongs_to_its_own_pr_only() -> None:
    assert comment_on(comment("prgate[bot]", number=7), 7)
    assert not comment_on(comment("prgate[bot]", number=17), 7)
    assert not comment_on({}, 7)


@pytest.mark.parametrize(
    ("remaining", "method", "expected"),
    [
        (60.0, "POST", 10.0),  # the full timeout fits
        (25.0, "PATCH", 10.0),  # exactly the timeout plus the margin
        (24.9, "POST", None),  # a write that might outlive the lease does not start
        (24.9, "GET", 9.9),  # a read gets what is left before the margin
        (15.0, "GET", None),
        (-1.0, "DELETE", None),
        (100.0, "get", 10.0),
    ],
)
def test_request_timeout_never_reaches_past_the_lease(remaining: float, method: str, expected: float | None) -> None:
    assert request_timeout(remaining, method, provider_timeout=10.0, report_margin=15.0) == pytest.approx(expected)


def test_a_lease_too_short_for_one_write_is_refused_at_start_up() -> None:
    assert lease_problem(60, 10, 15) is None
    assert lease_problem(6, 2, 1) is None
    problem = lease_problem(5, 10, 15)
    assert problem is not None
    assert "WORKER_LEASE_SECONDS" in problem
