"""The simulator answers with Bitbucket's shapes: every key of a real payload (the fixtures) is
present, with the same JSON type, in what the simulator sends for the same resource."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.simulator.bitbucket.support import ACME_UUID, BB, Receiver

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "bitbucket"
# Keys real answers carry that the simulator leaves out: settings prgate never reads, and `username`
# on accounts, which Atlassian removed from user objects in 2019 (the fixtures are older).
NOT_SIMULATED = {"enforced_signed_commits", "override_settings", "username"}


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def missing(real: Any, simulated: Any, where: str = "$") -> list[str]:
    """Keys (recursively, dicts only) of ``real`` that ``simulated`` lacks or types differently;
    a null on either side matches anything (Bitbucket nulls many optional objects)."""
    if not isinstance(real, dict):
        return []
    if not isinstance(simulated, dict):
        return [f"{where}: {_kind(simulated)} instead of an object"]
    problems = []
    for key, value in real.items():
        if key in NOT_SIMULATED:
            continue
        if key not in simulated:
            problems.append(f"{where}.{key} missing")
            continue
        other = simulated[key]
        if value is not None and other is not None and _kind(value) != _kind(other):
            problems.append(f"{where}.{key}: {_kind(other)} instead of {_kind(value)}")
        problems += missing(value, other, f"{where}.{key}")
    return problems


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


async def test_pull_request_repository_hook_and_status_answers_have_the_real_keys(bb: BB, receiver: Receiver) -> None:
    token = bb.tokens["acme"]
    _, pr, _ = await bb.api("GET", "/2.0/repositories/acme/widgets/pullrequests/1", token)
    assert missing(fixture("api/2.0-repositories-amuniz-test-repos-pullrequests-1.json"), pr) == []
    _, repo, _ = await bb.api("GET", "/2.0/repositories/acme/widgets", token)
    assert missing(fixture("api/2.0-repositories-amuniz-test-repos.json"), repo) == []
    hook = await bb.client("acme").create_hook("acme", url=receiver.url("acme"), secret="s")
    _, hook_json, _ = await bb.api("GET", f"/2.0/workspaces/acme/hooks/{hook.uuid}", token)
    real_hook = fixture("api/2.0-repositories-amuniz-test-repos-hooks.json")
    real_hook.pop("subject")  # a repository hook's subject; ours is a workspace hook
    assert missing(real_hook, hook_json) == []
    full = pr["source"]["commit"]["hash"]
    _, status, _ = await bb.api("POST", f"/2.0/repositories/acme/widgets/commit/{full}/statuses/build", token,
                                json={"key": "prgate", "state": "INPROGRESS", "url": "https://prgate.test/v"})
    real_status = fixture(
        "api/2.0-repositories-amuniz-test-repos-commit-046d9a3c1532acf4cf08fe93235c00e4d673c1d2-statuses-build.json")
    assert missing(real_status, status) == []


async def test_a_pull_request_webhook_has_the_real_keys(bb: BB, receiver: Receiver) -> None:
    await bb.client("acme").create_hook("acme", url=receiver.url("acme"), secret="s")
    await bb.sim("POST", "/repositories/acme/widgets/pullrequests/1/commits", {})
    body = json.loads(receiver.received[0].body)
    real = fixture("webhooks/cloud__pullrequest_created.json")
    assert missing(real, body) == []
    assert body["repository"]["workspace"]["uuid"] == ACME_UUID


def test_the_comparison_can_fail() -> None:
    assert missing({"a": {"b": 1}, "c": "x"}, {"a": {}, "c": 3}) == ["$.a.b missing", "$.c: int instead of str"]
