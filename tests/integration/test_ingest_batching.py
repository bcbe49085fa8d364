"""pull_request deliveries that arrive together share a transaction (backend_api/gate/batcher.py).

Through the real backend and PostgreSQL: batches form under concurrency and change no answer;
events about one pull request keep their order; a delivery sent many times at once is applied once.
The fallback (a failed batch written again one delivery per transaction) is driven through the
batcher itself with an ingest function that refuses one delivery.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Sequence

import asyncpg
import pytest

from backend_api.gate.batcher import IngestBatcher, Ingested
from backend_api.gate.pull_request import ingest_pull_requests
from bot_worker.providers.github.normalize import pull_request_event
from shared_contracts.actions import ActionType
from shared_contracts.events import IngestResponse, IngestStatus, PullRequestEvent
from tests.integration.test_backend_metrics import scrape, value
from tests.support.ingest import send_installation, send_pr
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.signed import SignedClient

BATCHES = "backend_ingest_batch_deliveries"
FALLBACKS = "backend_ingest_batch_fallbacks_total"


@pytest.fixture
async def installed(backend: SignedClient) -> SignedClient:
    await send_installation(backend, "installation", installation_payload("created"))
    return backend


async def _rows(db: asyncpg.Pool, sql: str) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return list(await conn.fetch(sql))


async def test_concurrent_deliveries_are_written_in_batches_with_the_same_answers(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    count = 60
    answers = await asyncio.gather(*(
        send_pr(installed, pull_request_payload("opened", number=100 + n, author_login=f"new-{n}",
                                                author_id=70_000 + n))
        for n in range(count)
    ))
    assert [(a["status"], a["decision"]) for a in answers] == [("ACCEPTED", "GATE")] * count
    challenges = await _rows(db, "SELECT challenge_id, pr_number, status FROM challenges")
    assert sorted(r["pr_number"] for r in challenges) == [100 + n for n in range(count)]
    assert {r["status"] for r in challenges} == {"PENDING"}
    by_pr = {r["pr_number"]: r["challenge_id"] for r in challenges}
    actions = await _rows(db, "SELECT action_id, action_type, pr_number, challenge_id FROM bot_actions "
                              "ORDER BY action_id")
    assert len(actions) == 2 * count
    for a in answers:
        pr = next(r["pr_number"] for r in challenges if r["challenge_id"] == a["challenge_id"])
        mine = [r for r in actions if r["pr_number"] == pr]
        # Each answer names its own actions, comment first, tied to its own challenge.
        assert a["enqueued_action_ids"] == [r["action_id"] for r in mine]
        assert [r["action_type"] for r in mine] == ["UPSERT_PR_COMMENT", "SET_COMMIT_STATUS"]
        assert {r["challenge_id"] for r in mine} == {by_pr[pr]}
    outcomes = await _rows(db, "SELECT delivery_id, decision, challenge_id FROM webhook_deliveries "
                               "WHERE event_name = 'pull_request'")
    assert {(r["delivery_id"], r["decision"], r["challenge_id"]) for r in outcomes} == {
        (a["delivery_id"], "GATE", a["challenge_id"]) for a in answers
    }
    decided = await _rows(db, "SELECT pr_number FROM decided_pull_requests")
    assert len(decided) == count
    samples = await scrape(installed)
    written = value(samples, f"{BATCHES}_count")
    assert value(samples, f"{BATCHES}_sum") == count
    assert written < count, "no two deliveries shared a transaction"
    assert value(samples, FALLBACKS) == 0
    assert value(samples, "backend_actions_enqueued_total", action_type="UPSERT_PR_COMMENT",
                 source="webhook") == count


async def test_events_about_one_pull_request_keep_their_order(installed: SignedClient, db: asyncpg.Pool) -> None:
    # Opened then closed for each PR, all waiting at once (in this order): each close must see its
    # PR's challenge, which only holds if a batch never carries two events of one PR.
    sizes: list[int] = []
    fallbacks: list[int] = []
    real = functools.partial(ingest_pull_requests, db, public_url="http://prgate.test", max_attempts=8)

    async def slow_opened(events: Sequence[PullRequestEvent]) -> list[Ingested]:
        if any(e.action == "opened" for e in events):
            await asyncio.sleep(0.1)  # a slow batch must not be overtaken by a later event of its PRs
        return await real(events)

    batcher = IngestBatcher(
        slow_opened, max_batch=50, lanes=2, on_batch=sizes.append, on_fallback=lambda: fallbacks.append(1),
    )
    prs = range(200, 220)
    events = []
    for n in prs:
        for action, state in (("opened", None), ("closed", "closed")):
            payload = pull_request_payload(action, number=n, author_login=f"new-{n}", author_id=80_000 + n,
                                           state=state)
            events.append(pull_request_event(str(uuid.uuid4()), payload))
    answers = await asyncio.gather(*(batcher.submit(e) for e in events))
    assert [a.decision.value if a.decision else None for a, _ in answers] == ["GATE", "CANCELLED"] * len(prs)
    rows = await _rows(db, "SELECT status FROM challenges")
    assert [r["status"] for r in rows] == ["CANCELLED"] * len(prs)
    assert fallbacks == []
    assert sum(sizes) == 2 * len(prs)
    assert max(sizes) > 1
    await batcher.aclose()


async def test_one_delivery_sent_many_times_at_once_is_applied_once(
    installed: SignedClient, db: asyncpg.Pool
) -> None:
    delivery = str(uuid.uuid4())
    answers = await asyncio.gather(*(send_pr(installed, pull_request_payload("opened"), delivery)
                                     for _ in range(30)))
    statuses = sorted(a["status"] for a in answers)
    assert statuses == ["ACCEPTED"] + ["DUPLICATE"] * 29
    [challenge] = await _rows(db, "SELECT challenge_id FROM challenges")
    assert {a["challenge_id"] for a in answers} == {challenge["challenge_id"]}
    assert len(await _rows(db, "SELECT 1 FROM bot_actions")) == 2
    assert len(await _rows(db, "SELECT 1 FROM webhook_deliveries WHERE event_name = 'pull_request'")) == 1


def _event(number: int) -> PullRequestEvent:
    return pull_request_event(f"d-{number}", pull_request_payload("opened", number=number + 1))


async def test_a_failed_batch_is_written_again_one_delivery_at_a_time() -> None:
    calls: list[list[int]] = []
    release = asyncio.Event()

    async def ingest(events: Sequence[PullRequestEvent]) -> list[Ingested]:
        numbers = [e.pull_request.number - 1 for e in events]
        calls.append(numbers)
        if numbers == [0]:
            await release.wait()  # hold the first lane so the rest wait and form one batch
        if 13 in numbers:
            raise RuntimeError("delivery 13 cannot be written")
        accepted = [IngestResponse(status=IngestStatus.ACCEPTED, delivery_id=e.delivery_id) for e in events]
        return [(a, [ActionType.UPSERT_PR_COMMENT]) for a in accepted]

    fallbacks: list[int] = []
    sizes: list[int] = []
    batcher = IngestBatcher(ingest, max_batch=50, lanes=1, on_batch=sizes.append,
                            on_fallback=lambda: fallbacks.append(1))
    first = asyncio.create_task(batcher.submit(_event(0)))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batcher.submit(_event(n))) for n in range(1, 20)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert calls[:2] == [[0], list(range(1, 20))]  # the waiting ones went together
    assert calls[2:] == [[n] for n in range(1, 20)]  # then one by one, in order, after it failed
    assert fallbacks == [1]
    assert sizes == [1] + [1] * 18
    for n, got in enumerate(results):
        if n == 13:
            assert isinstance(got, RuntimeError)
        else:
            assert not isinstance(got, BaseException)
            assert got[0].delivery_id == f"d-{n}"
    await batcher.aclose()


async def test_a_batch_takes_one_event_per_pull_request_and_delivery() -> None:
    calls: list[list[str]] = []
    release = asyncio.Event()

    async def ingest(events: Sequence[PullRequestEvent]) -> list[Ingested]:
        calls.append([e.delivery_id for e in events])
        if len(calls) == 1:
            await release.wait()
        return [(IngestResponse(status=IngestStatus.ACCEPTED, delivery_id=e.delivery_id), []) for e in events]

    batcher = IngestBatcher(ingest, max_batch=3, lanes=1)
    events = [pull_request_event(d, pull_request_payload("opened", number=n)) for d, n in
              [("a", 1), ("b", 1), ("c", 2), ("c", 2), ("d", 3), ("e", 4), ("f", 5)]]
    tasks = [asyncio.create_task(batcher.submit(e)) for e in events]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    # At most 3, never a PR or a delivery id twice in one batch; what waits keeps its order.
    assert calls == [["a", "c", "d"], ["b", "c", "e"], ["f"]]
