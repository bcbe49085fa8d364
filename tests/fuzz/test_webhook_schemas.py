"""GitHub's own webhook schemas → hypothesis payloads → the real receiver → the real backend.

Every schema-valid (and therefore GitHub-plausible) payload, signed with the webhook secret,
must be answered 2xx or 4xx, never 5xx. A 4xx must change no business row. The backend is up
the whole time, so nothing may land on the retry queue either: a queued delivery means the
backend answered 5xx (or hung), which the receiver would otherwise hide behind a 202.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from tests.fuzz.schemas import WEBHOOKS, examples, payloads
from tests.support.rows import snapshot
from tests.support.webhooks import TestQueue, fresh_queue, installed_receiver, post_webhook

# pull_request payloads take ~1 s each to generate on a 2-core machine; installation ones ~0.2 s.
PR_EXAMPLES = examples(6)
INSTALLATION_EXAMPLES = examples(8)


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[TestQueue]:
    async with fresh_queue(redis_url) as q:
        yield q


@pytest.fixture
async def receiver(
    db: asyncpg.Pool, database_url: str, redis_url: str, queue: TestQueue, aiohttp_server: Any, aiohttp_client: Any
) -> TestClient[Any, Any]:
    return await installed_receiver(database_url, redis_url, queue, aiohttp_server, aiohttp_client)


async def check_delivery(
    receiver: TestClient[Any, Any], db: asyncpg.Pool, queue: TestQueue, event: str, payload: dict[str, Any]
) -> int:
    """POST one signed delivery and check the invariants; returns the status."""
    before = await snapshot(db)
    resp = await post_webhook(receiver, event, payload, str(uuid.uuid4()))
    text = await resp.text()
    hypothesis_event(f"status {resp.status} {text[:60] if resp.status >= 400 else ''}")  # --hypothesis-show-statistics
    assert resp.status < 500, (resp.status, text)
    assert 200 <= resp.status < 300 or 400 <= resp.status < 500, (resp.status, text)
    assert resp.content_type == "application/json", (resp.status, text)
    assert await queue.job_ids() == set(), f"queued although the backend is up (backend 5xx?): {text}"
    if resp.status >= 400:
        assert await snapshot(db) == before, (resp.status, text)
    return resp.status


_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
             HealthCheck.large_base_example]
PR_WEBHOOKS = sorted(n for n in WEBHOOKS if n.startswith("pull-request"))
INSTALLATION_WEBHOOKS = sorted(n for n in WEBHOOKS if not n.startswith("pull-request"))


# `database=None`: no .hypothesis/ directory in the work tree; a failure prints its reproducer instead.
@pytest.mark.parametrize("name", PR_WEBHOOKS)
@settings(max_examples=PR_EXAMPLES, deadline=None, database=None, suppress_health_check=_SUPPRESS)
@given(data=st.data())
async def test_schema_valid_pull_request_webhooks_never_5xx(
    name: str, data: st.DataObject, receiver: TestClient[Any, Any], db: asyncpg.Pool, queue: TestQueue
) -> None:
    event, action = WEBHOOKS[name]
    payload = data.draw(payloads(name), label="payload")
    assert payload["action"] == action
    await check_delivery(receiver, db, queue, event, payload)


@pytest.mark.parametrize("name", INSTALLATION_WEBHOOKS)
@settings(max_examples=INSTALLATION_EXAMPLES, deadline=None, database=None, suppress_health_check=_SUPPRESS)
@given(data=st.data())
async def test_schema_valid_installation_webhooks_never_5xx(
    name: str, data: st.DataObject, receiver: TestClient[Any, Any], db: asyncpg.Pool, queue: TestQueue
) -> None:
    event, action = WEBHOOKS[name]
    payload = data.draw(payloads(name), label="payload")
    assert payload["action"] == action
    await check_delivery(receiver, db, queue, event, payload)


@settings(max_examples=examples(25), deadline=None, database=None, suppress_health_check=_SUPPRESS)
@given(
    name=st.sampled_from(INSTALLATION_WEBHOOKS),
    data=st.data(),
)
async def test_schema_valid_then_mangled_installation_webhooks_never_5xx(
    name: str, data: st.DataObject, receiver: TestClient[Any, Any], db: asyncpg.Pool, queue: TestQueue
) -> None:
    """Schema-valid payloads with one field replaced by an arbitrary JSON value of another kind."""
    event, _ = WEBHOOKS[name]
    payload = data.draw(payloads(name))
    key = data.draw(st.sampled_from(sorted(payload)))
    junk = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )
    payload[key] = data.draw(junk)
    await check_delivery(receiver, db, queue, event, payload)
