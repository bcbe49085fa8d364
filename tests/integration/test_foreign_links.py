"""A `Link: rel="next"` off GITHUB_API_URL's origin is never followed: no token leaves for it
(docs/security.md, "`Link: next` URLs followed with the token, on any origin"). GitHub is the simulator (its
`link_origin` fault); the foreign origin is a second local HTTP server that records whatever reaches it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from bot_worker.backend.client import BackendClient
from bot_worker.jobs.context import JobContext, RedeliveryContext
from bot_worker.jobs.reconcile import build_context
from bot_worker.jobs.redelivery import redeliver_failed
from bot_worker.metrics import Metrics
from bot_worker.providers.github.auth import InstallationTokens
from bot_worker.providers.github.client import GitHubProvider
from bot_worker.providers.github.paging import ForeignOrigin
from bot_worker.settings import BotSettings
from provider_clients.github.app import app_jwt
from shared_contracts.actions import Outcome
from shared_contracts.events import Repository
from tests.conftest import INTERNAL_ENV
from tests.support.github_sim import APP_ID, Simulator, app_keys


@dataclass
class Recorder:
    """The foreign origin: records every request (and its Authorization header) that reaches it."""

    server: TestServer
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    app = web.Application()
    holder: list[Recorder] = []

    async def record(request: web.Request) -> web.Response:
        holder[0].seen.append((request.path_qs, request.headers.get("Authorization")))
        return web.json_response([], headers={"Link": ""})

    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app)
    await server.start_server()
    holder.append(Recorder(server))
    yield holder[0]
    await server.close()


def foreign_links(metrics: Metrics, job: str) -> float:
    return metrics.registry.get_sample_value("github_foreign_next_links_total", {"job": job}) or 0.0


async def set_link_origin(session: aiohttp.ClientSession, sim: Simulator, origin: str | None) -> None:
    async with session.put(f"{sim.url}/_sim/faults", json={"link_origin": origin}) as resp:
        assert resp.status == 200, await resp.text()


async def test_reconcile_stops_at_a_foreign_next_link_and_calls_the_listing_incomplete(
    simulator: Simulator, recorder: Recorder, redis_url: str
) -> None:
    for number in range(100, 201):  # two pages of open PRs on octo-org/widgets
        simulator.state.upsert_pull_request("octo-org/widgets", number, author_login=f"dev{number}",
                                            author_id=20_000 + number)
    settings = BotSettings.model_validate({**INTERNAL_ENV, "GITHUB_API_URL": simulator.url})
    metrics = Metrics(CollectorRegistry(), "worker")
    async with aiohttp.ClientSession() as session, Redis.from_url(redis_url) as redis:
        tokens = InstallationTokens(session, simulator.url, str(APP_ID), app_keys().private_pem)
        ctx = build_context(settings, session, redis, tokens, worker_id="test", metrics=metrics)
        repo = Repository(id=5001, full_name="octo-org/widgets")
        complete = await ctx.reader.open_pull_requests(1001, repo, max_pages=10)
        assert complete.complete
        assert len(complete.items) == 102

        await set_link_origin(session, simulator, recorder.origin)
        cut = await ctx.reader.open_pull_requests(1001, repo, max_pages=10)

    assert not cut.complete  # so reconciliation concludes nothing from what it did not see
    assert len(cut.items) == 100
    assert recorder.seen == []  # neither a request nor the installation token reached the other origin
    assert foreign_links(metrics, "reconcile") == 1


class KnowsNothing(BackendClient):
    """The backend's answer to "which of these did you record?": none (the redelivery job's one call)."""

    def __init__(self) -> None:
        pass

    async def known_deliveries(self, delivery_ids: list[str], timeout: float | None = 15) -> set[str]:
        return set()


class AppAuth:
    def app_jwt(self) -> str:
        return app_jwt(str(APP_ID), app_keys().private_pem)


async def test_redelivery_stops_at_a_foreign_next_link_and_keeps_its_watermark(
    simulator: Simulator, recorder: Recorder, redis_url: str
) -> None:
    metrics = Metrics(CollectorRegistry(), "worker")
    prefix = uuid.uuid4().hex
    async with aiohttp.ClientSession() as session, Redis.from_url(redis_url) as redis:
        for n in range(130):  # deliveries the receiver never got: more than one page of 100
            body = {"event": "ping", "payload": {"zen": n}, "delivery_id": f"guid-{n}",
                    "url": "http://127.0.0.1:9/webhooks/github"}
            async with session.post(f"{simulator.url}/_sim/webhooks", json=body) as resp:
                assert resp.status == 201, await resp.text()
        redelivery = RedeliveryContext(session, redis, AppAuth(), simulator.url, key_prefix=prefix)
        ctx = JobContext(KnowsNothing(), metrics, redelivery=redelivery).arq_ctx()
        await set_link_origin(session, simulator, recorder.origin)
        summary = await redeliver_failed(ctx)
        watermark = await redis.get(f"{prefix}:redelivery:watermark")
        await set_link_origin(session, simulator, None)
        after = await redeliver_failed(ctx)
        await redis.delete(*[key async for key in redis.scan_iter(f"{prefix}:*")])

    assert recorder.seen == []  # the App JWT never went to the other origin
    assert (summary.listed, summary.foreign_links) == (100, 1)
    assert foreign_links(metrics, "redelivery") == 1
    assert watermark is None  # the unread older page is not skipped for good
    assert after.listed >= 130  # the next run, links fixed, reads everything again
    assert after.foreign_links == 0



async def test_the_comment_search_never_follows_a_foreign_next_link(
    simulator: Simulator, recorder: Recorder
) -> None:
    """gidgethub's `getiter` follows every `next` link with the installation token; the bot's requester
    refuses any URL off GITHUB_API_URL's origin before sending, so the search fails (retryable) instead."""
    reviewer = simulator.state.ensure_user("reviewer")
    for i in range(101):  # two pages of comments on octo-org/widgets#7
        simulator.state.add_comment("octo-org/widgets", 7, f"chatter {i}", user=reviewer)
    metrics = Metrics(CollectorRegistry(), "worker")
    async with aiohttp.ClientSession() as session:
        tokens = InstallationTokens(session, simulator.url, str(APP_ID), app_keys().private_pem)
        github = GitHubProvider(session, simulator.url, tokens,
                                on_foreign_link=metrics.foreign_next_links.labels("executor").inc)
        await set_link_origin(session, simulator, recorder.origin)
        with pytest.raises(ForeignOrigin):
            await github.upsert_comment(1001, 5001, 7, "<!-- prgate -->", "<!-- prgate -->\nplease verify")
        assert github.classify(ForeignOrigin("http://127.0.0.1:1")).outcome is Outcome.RETRYABLE_FAILURE
    assert recorder.seen == []  # neither a request nor the installation token reached the other origin
    assert foreign_links(metrics, "executor") == 1
    assert len(simulator.state.comments_for("octo-org/widgets", 7)) == 101  # nothing was written
