"""The receiver's header-only refusals and its body bound (bot_worker/webhooks/intake.py), as pure decisions."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from bot_worker.webhooks.intake import BodyBudget, precheck

GOOD = {"X-Hub-Signature-256": "sha256=" + "ab" * 32, "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-1"}


def check(headers: dict[str, str], content_type: str = "application/json", length: int | None = 10) -> int | None:
    refusal = precheck(CIMultiDictProxy(CIMultiDict(headers)), content_type, length,
                       have_secret=True, max_body_bytes=1000)
    return None if refusal is None else refusal.status


def test_well_formed_headers_pass_and_a_chunked_body_is_left_to_the_streaming_cap() -> None:
    assert check(GOOD) is None
    assert check(GOOD, length=None) is None
    assert check(GOOD, content_type="application/x-www-form-urlencoded") is None


@pytest.mark.parametrize(("change", "status"), [
    ({"X-Hub-Signature-256": ""}, 401),
    ({"X-Hub-Signature-256": "sha1=" + "ab" * 20}, 401),
    ({"X-Hub-Signature-256": "sha256=" + "zz" * 32}, 401),
    ({"X-GitHub-Event": "Pull Request"}, 400),
    ({"X-GitHub-Delivery": ""}, 400),
])
def test_ill_formed_headers_are_refused(change: dict[str, str], status: int) -> None:
    assert check({**GOOD, **change}) == status


def test_content_type_and_declared_length_are_refused_before_the_body() -> None:
    assert check(GOOD, content_type="text/plain") == 415
    assert check(GOOD, length=1001) == 413
    assert precheck(CIMultiDictProxy(CIMultiDict(GOOD)), "application/json", 1, have_secret=False,
                    max_body_bytes=1000) is not None


def test_the_budget_sheds_past_either_bound_and_gives_back_what_leaves() -> None:
    budget = BodyBudget(max_bodies=2, max_bytes=100)
    assert budget.enter(60) is None
    shed = budget.enter(50)
    assert shed is not None
    assert shed.status == 503
    assert ("Retry-After", "30") in shed.headers
    assert budget.enter(40) is None
    assert budget.enter(0) is not None  # no slot left
    assert not budget.grow(1)
    budget.leave(60)
    assert budget.grow(60)
    assert (budget.bodies, budget.bytes) == (1, 100)
