"""The executor against the GitHub simulator over real HTTP: effects, idempotency and outcome mapping."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from redis.asyncio import Redis

from bot_worker.providers.github.auth import InstallationTokens
from bot_worker.providers.github.client import GitHubProvider
from bot_worker.worker.executor import Executor
from bot_worker.worker.throttle import WriteThrottle
from prgate.simulator import FaultRule
from shared_contracts.actions import ActionType, ClaimedAction, Outcome
from tests.support.github_sim import APP_ID, Simulator, app_keys

MARKER = "<!-- prgate:pr-comment -->"
REPO_IDS = {"octo-org/widgets": 5001, "acme/x": 7001}  # as the `simulator` fixture seeds them


def action(
    action_type: ActionType = ActionType.UPSERT_PR_COMMENT,
    body: str = f"{MARKER}\nplease verify",
    installation_id: int = 1001,
    repo: str = "octo-org/widgets",
    number: int = 7,
    action_id: int = 1,
    repo_id: int | None = None,
) -> ClaimedAction:
    return ClaimedAction.model_validate(
        {
            "action_id": action_id, "attempt": 1, "lease_expires_at": datetime.now(UTC) + timedelta(seconds=60),
            "provider": "github", "action_type": action_type, "installation_id": installation_id,
            "repo_id": repo_id or REPO_IDS[repo], "repo_full_name": repo, "github_pr_number": number,
            "payload": {"marker": MARKER, "body": body},
        }
    )


def lease() -> float:
    return time.monotonic() + 60


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as s:
        yield s


@pytest.fixture
def tokens(simulator: Simulator, session: aiohttp.ClientSession) -> InstallationTokens:
    return InstallationTokens(session, simulator.url, str(APP_ID), app_keys().private_pem)


@pytest.fixture
def executor(simulator: Simulator, session: aiohttp.ClientSession, tokens: InstallationTokens) -> Executor:
    return Executor(GitHubProvider(session, simulator.url, tokens), throttle=None, provider_timeout=3)


def bodies(simulator: Simulator, repo: str = "octo-org/widgets", number: int = 7) -> list[str]:
    return [c.body for c in simulator.state.comments_for(repo, number)]


async def test_upsert_creates_then_leaves_identical_then_edits(executor: Executor, simulator: Simulator) -> None:
    assert (await executor.run(action(), lease())).outcome is Outcome.SUCCEEDED
    assert bodies(simulator) == [f"{MARKER}\nplease verify"]
    await executor.run(action(), lease())
    assert bodies(simulator) == [f"{MARKER}\nplease verify"]
    writes = [r for r in simulator.state.request_log if r.method in ("POST", "PATCH") and "comments" in r.path]
    assert len(writes) == 1  # the identical re-run wrote nothing
    await executor.run(action(body=f"{MARKER}\nverified, thanks"), lease())
    assert bodies(simulator) == [f"{MARKER}\nverified, thanks"]


async def test_finds_our_comment_beyond_the_first_page(executor: Executor, simulator: Simulator) -> None:
    reviewer = simulator.state.ensure_user("reviewer")
    for i in range(150):
        simulator.state.add_comment("octo-org/widgets", 7, f"chatter {i}", user=reviewer)
    await executor.run(action(), lease())
    await executor.run(action(body=f"{MARKER}\nedited"), lease())
    ours = [b for b in bodies(simulator) if MARKER in b]
    assert ours == [f"{MARKER}\nedited"]
    assert len(bodies(simulator)) == 151


async def test_a_human_quoting_the_marker_is_not_mistaken_for_us(executor: Executor, simulator: Simulator) -> None:
    author = simulator.state.ensure_user("newcomer")
    simulator.state.add_comment("octo-org/widgets", 7, f"{MARKER} haha", user=author)
    await executor.run(action(), lease())
    assert bodies(simulator) == [f"{MARKER} haha", f"{MARKER}\nplease verify"]


async def test_close_with_comment_and_already_closed(executor: Executor, simulator: Simulator) -> None:
    result = await executor.run(action(ActionType.CLOSE_PR_WITH_COMMENT, body=f"{MARKER}\nclosed"), lease())
    assert result.outcome is Outcome.SUCCEEDED
    assert simulator.state.get_pull_request("octo-org/widgets", 7).state == "closed"
    assert bodies(simulator) == [f"{MARKER}\nclosed"]
    again = await executor.run(action(ActionType.CLOSE_PR_WITH_COMMENT, body=f"{MARKER}\nclosed"), lease())
    assert again.outcome is Outcome.SUCCEEDED
    assert bodies(simulator) == [f"{MARKER}\nclosed"]


async def test_retry_after_a_write_that_succeeded_but_answered_502_makes_no_second_comment(
    executor: Executor, simulator: Simulator
) -> None:
    simulator.state.faults.add_rule(FaultRule(method="POST", path_regex=r"/comments$", kind="after_write"))
    first = await executor.run(action(), lease())
    assert first.outcome is Outcome.RETRYABLE_FAILURE
    assert len(bodies(simulator)) == 1  # GitHub did write it
    second = await executor.run(action(), lease())
    assert second.outcome is Outcome.SUCCEEDED
    assert len(bodies(simulator)) == 1


async def test_installation_token_is_cached_and_refreshed_once_on_401(
    executor: Executor, simulator: Simulator
) -> None:
    for _ in range(3):
        await executor.run(action(), lease())
    assert simulator.state.tokens_issued[1001] == 1
    simulator.state.expire_tokens(1001)  # GitHub revoked it early: we get a 401
    assert (await executor.run(action(body=f"{MARKER}\nnew"), lease())).outcome is Outcome.SUCCEEDED
    assert simulator.state.tokens_issued[1001] == 2


async def test_token_refresh_is_single_flight(tokens: InstallationTokens, simulator: Simulator) -> None:
    import asyncio

    got = await asyncio.gather(*(tokens.get(1001) for _ in range(20)))
    assert len(set(got)) == 1
    assert len(got[0]) >= 520
    assert simulator.state.tokens_issued[1001] == 1


async def test_an_action_cannot_touch_another_installations_repo(executor: Executor, simulator: Simulator) -> None:
    # Installation 1001's token used on acme/x (installation 2002): GitHub answers 404.
    result = await executor.run(action(installation_id=1001, repo="acme/x", number=3), lease())
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert result.error.startswith("404")
    assert bodies(simulator, "acme/x", 3) == []


@pytest.mark.parametrize(
    ("rule", "outcome", "min_retry", "max_retry", "limit"),
    [
        (FaultRule(status=502), Outcome.RETRYABLE_FAILURE, None, None, None),
        (FaultRule(status=503), Outcome.RETRYABLE_FAILURE, None, None, None),
        (FaultRule(kind="primary_rate_limit", status=403, reset_seconds=30), Outcome.RETRYABLE_FAILURE, 20, 40,
         "primary"),
        (FaultRule(kind="primary_rate_limit", status=429, reset_seconds=30), Outcome.RETRYABLE_FAILURE, 20, 40,
         "primary"),
        (FaultRule(kind="secondary_rate_limit", retry_after_seconds=5), Outcome.RETRYABLE_FAILURE, 60, 60,
         "secondary"),
        (FaultRule(kind="secondary_rate_limit", retry_after_seconds=90), Outcome.RETRYABLE_FAILURE, 90, 90,
         "secondary"),
        (FaultRule(status=404), Outcome.FAILED, None, None, None),
        (FaultRule(status=410), Outcome.FAILED, None, None, None),
        (FaultRule(status=422, message="Validation Failed"), Outcome.FAILED, None, None, None),
    ],
)
async def test_outcome_mapping_from_provider_faults(
    executor: Executor, simulator: Simulator, rule: FaultRule, outcome: Outcome,
    min_retry: float | None, max_retry: float | None, limit: str | None,
) -> None:
    simulator.state.faults.add_rule(rule.model_copy(update={"path_regex": r"/issues/7/comments"}))
    result = await executor.run(action(), lease())
    assert result.outcome is outcome, result
    assert result.rate_limit == limit
    if min_retry is None:
        assert result.retry_after_seconds is None
    else:
        assert result.retry_after_seconds is not None
        assert min_retry <= result.retry_after_seconds <= max_retry  # type: ignore[operator]
    assert bodies(simulator) == []  # a refused request changed nothing


async def test_unreachable_github_is_retryable(session: aiohttp.ClientSession, tokens: InstallationTokens) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = InstallationTokens(session, f"http://127.0.0.1:{port}", str(APP_ID), app_keys().private_pem)
    result = await Executor(GitHubProvider(session, f"http://127.0.0.1:{port}", dead), None).run(action(), lease())
    assert result.outcome is Outcome.RETRYABLE_FAILURE


async def test_slow_github_times_out_as_retryable(executor: Executor, simulator: Simulator) -> None:
    from prgate.simulator import FaultConfig, FaultProfile

    simulator.state.faults.configure(FaultConfig(default=FaultProfile(latency_ms=5000)))
    result = await executor.run(action(), lease())  # the session's total timeout is 3 s
    assert result.outcome is Outcome.RETRYABLE_FAILURE


async def test_wrong_app_key_is_retryable_not_dropped(session: aiohttp.ClientSession, simulator: Simulator) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    tokens = InstallationTokens(session, simulator.url, str(APP_ID), other)
    result = await Executor(GitHubProvider(session, simulator.url, tokens), None).run(action(), lease())
    assert result.outcome is Outcome.RETRYABLE_FAILURE
    assert "401" in (result.error or "")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_write_throttle_is_shared_across_replicas(
    simulator: Simulator, session: aiohttp.ClientSession, tokens: InstallationTokens, redis: Redis
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    provider = GitHubProvider(session, simulator.url, tokens)
    # Two "replicas", each with its own throttle object, sharing one Redis budget of 3 writes a minute.
    replicas = [Executor(provider, WriteThrottle(redis, 3, 60, prefix=prefix)) for _ in range(2)]
    results = []
    for i in range(5):
        results.append(await replicas[i % 2].run(action(number=7, body=f"{MARKER}\nv{i}"), lease()))
    outcomes = [r.outcome for r in results]
    assert outcomes[:3] == [Outcome.SUCCEEDED] * 3
    assert outcomes[3:] == [Outcome.RETRYABLE_FAILURE] * 2
    assert all(r.rate_limit == "throttle" and (r.retry_after_seconds or 0) > 50 for r in results[3:])
    # Budgets are per installation: another installation still writes.
    other = await replicas[0].run(action(installation_id=2002, repo="acme/x", number=3), lease())
    assert other.outcome is Outcome.SUCCEEDED


async def test_throttle_waits_when_the_lease_allows(redis: Redis) -> None:
    throttle = WriteThrottle(redis, 2, window_seconds=0.5, prefix=f"test-{uuid.uuid4().hex}")
    assert await throttle.try_acquire(1) == 0
    assert await throttle.try_acquire(1) == 0
    wait = await throttle.try_acquire(1)
    assert 0 < wait <= 0.5
    import asyncio

    await asyncio.sleep(wait + 0.05)
    assert await throttle.try_acquire(1) == 0


def status_action(state: str, sha: str = "a" * 40) -> ClaimedAction:
    base = action().model_dump(mode="json")
    return ClaimedAction.model_validate({
        **base, "action_type": "SET_COMMIT_STATUS",
        "payload": {"sha": sha, "state": state, "description": "prgate says so", "target_url": "http://x/y"},
    })


async def test_commit_status_is_set_on_the_given_sha(executor: Executor, simulator: Simulator) -> None:
    assert (await executor.run(status_action("pending"), lease())).outcome is Outcome.SUCCEEDED
    assert (await executor.run(status_action("success"), lease())).outcome is Outcome.SUCCEEDED
    statuses = simulator.state.statuses_for("octo-org/widgets", "a" * 40)
    assert [(s.state, s.context) for s in statuses] == [("success", "prgate"), ("pending", "prgate")]
    assert statuses[0].description == "prgate says so"


def test_payload_must_match_the_action_type() -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="SET_COMMIT_STATUS needs a StatusPayload"):
        ClaimedAction.model_validate({**action().model_dump(mode="json"), "action_type": "SET_COMMIT_STATUS"})


async def test_reopen_with_comment_reopens_then_updates_our_comment(executor: Executor, simulator: Simulator) -> None:
    await executor.run(action(ActionType.CLOSE_PR_WITH_COMMENT, body=f"{MARKER}\nclosed"), lease())
    assert simulator.state.get_pull_request("octo-org/widgets", 7).state == "closed"
    reopen = action(ActionType.REOPEN_PR_WITH_COMMENT, body=f"{MARKER}\nverified, reopened")
    assert (await executor.run(reopen, lease())).outcome is Outcome.SUCCEEDED
    assert simulator.state.get_pull_request("octo-org/widgets", 7).state == "open"
    assert bodies(simulator) == [f"{MARKER}\nverified, reopened"]
    assert (await executor.run(reopen, lease())).outcome is Outcome.SUCCEEDED  # already open: fine


def with_comment_id(claimed: ClaimedAction, comment_id: int | None) -> ClaimedAction:
    return ClaimedAction.model_validate({**claimed.model_dump(mode="json"), "comment_id": comment_id})


async def test_a_stored_comment_id_is_edited_directly_and_a_deleted_one_falls_back(
    executor: Executor, simulator: Simulator
) -> None:
    first = await executor.run(action(), lease())
    assert first.comment_id is not None
    simulator.state.request_log.clear()
    edited = await executor.run(with_comment_id(action(body=f"{MARKER}\nedited"), first.comment_id), lease())
    assert (edited.outcome, edited.comment_id) == (Outcome.SUCCEEDED, first.comment_id)
    assert bodies(simulator) == [f"{MARKER}\nedited"]
    paths = [(r.method, r.path) for r in simulator.state.request_log]
    assert ("GET", "/repositories/5001/issues/7/comments") not in paths  # no paging through the PR
    # A maintainer deletes our comment: the stored id 404s, the PR is searched, a new one is created.
    simulator.state.delete_comment("octo-org/widgets", first.comment_id)
    again = await executor.run(with_comment_id(action(body=f"{MARKER}\nback"), first.comment_id), lease())
    assert again.outcome is Outcome.SUCCEEDED
    assert again.comment_id not in (None, first.comment_id)
    assert bodies(simulator) == [f"{MARKER}\nback"]


async def test_another_apps_comment_with_our_marker_is_passed_over(executor: Executor, simulator: Simulator) -> None:
    from prgate.simulator.github.model import SimApp

    other = SimApp(id=777, slug="other-gate", name="other", owner=simulator.state.ensure_user("someone"))
    foreign = simulator.state.add_comment(
        "octo-org/widgets", 7, f"{MARKER}\nechoed",
        user=simulator.state.ensure_user("other-gate[bot]", 5555, "Bot"), via_app=other,
    )
    result = await executor.run(action(), lease())
    assert result.outcome is Outcome.SUCCEEDED
    assert result.comment_id != foreign.id
    assert bodies(simulator) == [f"{MARKER}\nechoed", f"{MARKER}\nplease verify"]
    # Even a stored id pointing at the foreign comment is not trusted: ours is found and edited.
    again = await executor.run(with_comment_id(action(body=f"{MARKER}\nedited"), foreign.id), lease())
    assert (again.outcome, again.comment_id) == (Outcome.SUCCEEDED, result.comment_id)
    assert bodies(simulator) == [f"{MARKER}\nechoed", f"{MARKER}\nedited"]


async def test_no_write_starts_when_the_rest_of_the_lease_cannot_cover_it(
    session: aiohttp.ClientSession, simulator: Simulator, tokens: InstallationTokens
) -> None:
    """docs/security.md, "A run that outlives its lease keeps writing": 2.5 s of lease left, a write may take 2 s plus
    1 s to report: the reads
    run, the write does not start, the attempt goes back retryable with nothing written."""
    executor = Executor(GitHubProvider(session, simulator.url, tokens), None, provider_timeout=2, report_margin=1)
    result = await executor.run(action(), time.monotonic() + 2.5)
    assert result.outcome is Outcome.RETRYABLE_FAILURE
    assert "lease budget" in (result.error or "")
    assert bodies(simulator) == []
    assert [r.method for r in simulator.state.request_log if "comments" in r.path] == ["GET"]
    # The same attempt with its lease extended (the lease keeper moved the deadline) writes.
    from bot_worker.worker.executor import Lease

    held = Lease(time.monotonic() + 2.5)
    held.deadline = time.monotonic() + 60
    assert (await executor.run(action(), held)).outcome is Outcome.SUCCEEDED
    assert bodies(simulator) == [f"{MARKER}\nplease verify"]


async def test_a_read_never_waits_past_the_lease(
    session: aiohttp.ClientSession, simulator: Simulator, tokens: InstallationTokens
) -> None:
    from prgate.simulator import FaultConfig, FaultProfile

    await tokens.get(1001)  # minted before GitHub slows down
    provider = GitHubProvider(session, simulator.url, tokens)
    await provider.app_identity()
    simulator.state.faults.configure(FaultConfig(default=FaultProfile(latency_ms=3000)))
    executor = Executor(provider, None, provider_timeout=10, report_margin=1)
    result = await executor.run(action(), time.monotonic() + 2.5)
    assert result.outcome is Outcome.RETRYABLE_FAILURE
    # The listing was cut off at the 1.5 s left (a timeout), not answered after the lease ran out.
    assert (result.error or "").startswith("TimeoutError"), result.error
    assert bodies(simulator) == []
