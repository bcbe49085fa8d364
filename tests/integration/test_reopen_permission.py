"""docs/security.md, "Reopen after timeout, session revocation, wrong-answer rate limit": only a maintainer's reopen
after the deadline exempts a PR for good.

The receiver asks GitHub (the simulator) for the reopener's permission, as it does for
`/prgate exempt`; the backend decides. Triage users (GitHub says `read`) and bots are gated again.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.integration import test_commands
from tests.integration.test_gate_lifecycle import expire_deadlines, sweep
from tests.support.github_sim import Simulator
from tests.support.payloads import pull_request_payload
from tests.support.webhooks import post_webhook

receiver = test_commands.receiver  # the fixture: receiver → backend, GitHub = simulator, PR #7 gated
HEAD = test_commands.HEAD


async def _statuses(db: asyncpg.Pool) -> list[str]:
    async with db.acquire() as conn:
        return [r["status"] for r in await conn.fetch("SELECT status FROM challenges ORDER BY challenge_id")]


@pytest.mark.parametrize(
    ("login", "user_type", "role", "exempt"),
    [("lead", "User", "maintain", True), ("helper", "User", "triage", False),
     ("ci-bot[bot]", "Bot", "write", False), ("visitor", "User", "read", False)],
)
async def test_a_reopen_after_the_deadline_exempts_only_when_a_maintainer_did_it(
    receiver: TestClient[Any, Any], simulator: Simulator, db: asyncpg.Pool,
    login: str, user_type: str, role: str, exempt: bool,
) -> None:
    simulator.state.set_permission("octo-org/widgets", login, role, 7000, user_type)
    await expire_deadlines(db)
    assert await sweep(db) == 1
    closed = await post_webhook(receiver, "pull_request", pull_request_payload("closed", head_sha=HEAD))
    assert closed.status == 200, await closed.text()
    reopen = pull_request_payload("reopened", head_sha=HEAD)
    reopen["sender"].update({"login": login, "id": 7000, "type": user_type})
    resp = await post_webhook(receiver, "pull_request", reopen)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    if exempt:
        assert (body["decision"], body["reason"]) == ("EXEMPT", f"reopened by {login} after the deadline")
        assert await _statuses(db) == ["TIMED_OUT", "EXEMPTED"]
    else:
        assert body["decision"] == "GATE", body
        assert await _statuses(db) == ["TIMED_OUT", "PENDING"]
    asked = [r.path for r in simulator.state.request_log if r.path.endswith("/permission")]
    assert asked == ([] if user_type == "Bot" else [f"/repositories/5001/collaborators/{login}/permission"])


async def test_github_unreachable_while_asking_about_a_reopen_is_503(
    receiver: TestClient[Any, Any], simulator: Simulator, db: asyncpg.Pool
) -> None:
    from prgate.simulator import FaultRule

    await expire_deadlines(db)
    await sweep(db)
    simulator.state.faults.add_rule(FaultRule(path_regex="/permission$", status=502, count=5))
    reopen = pull_request_payload("reopened", head_sha=HEAD)
    reopen["sender"].update({"login": "lead", "id": 7000})
    resp = await post_webhook(receiver, "pull_request", reopen)
    assert resp.status == 503
    assert await _statuses(db) == ["TIMED_OUT"]
