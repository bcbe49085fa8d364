"""Ask GitHub to redeliver the webhook deliveries that failed and that the backend never recorded.

GitHub never redelivers by itself; a delivery can be redelivered for 3 days and keeps its
`X-GitHub-Delivery` guid, so the backend's dedup table makes any redelivery harmless. A run
(`redeliver_failed`, one at a time across replicas thanks to a Redis lock):

1. lists `GET /app/hook/deliveries?per_page=100` (App JWT) newest first, following the `Link`
   header's `rel="next"`, until it reaches the watermark (the newest delivery id a previous run
   finished with) or the lookback window (at most GitHub's 3 days);
2. groups the attempts by guid: a guid with a 2xx attempt is done; the others failed
   (`select_failed`, pure);
3. asks the backend which of those guids it recorded anyway (`POST /internal/v2/github/deliveries/known`);
4. for each remaining guid not yet redelivered (a Redis key per guid, kept 3 days and taken with
   `SET NX` before asking, so no guid is ever redelivered twice) asks
   `POST /app/hook/deliveries/{id}/attempts` (202);
5. stores the new watermark. See docs/redelivery.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp

from bot_worker.backend.client import BackendClient
from bot_worker.jobs.context import RedeliveryContext, job_context
from bot_worker.jobs.lock import fleet_lock
from bot_worker.metrics import Metrics
from bot_worker.providers.github.deliveries import GITHUB_WINDOW, Attempt, RedeliveryError

log = logging.getLogger(__name__)

WINDOW_MARGIN: Final = timedelta(minutes=10)  # do not ask for one that expires while we work
LOCK_TTL_MS: Final = 10 * 60 * 1000
DONE_TTL_SECONDS: Final = int(GITHUB_WINDOW.total_seconds())


@dataclass(frozen=True, slots=True)
class RunSummary:
    ran: bool  # False: another replica holds the lock
    listed: int = 0
    failed: int = 0
    known: int = 0
    redelivered: int = 0
    errors: int = 0
    foreign_links: int = 0  # `next` links off GITHUB_API_URL's origin, not followed (the listing stopped)


# --- pure selection ------------------------------------------------------------------------------


def select_failed(attempts: Iterable[Attempt], *, not_before: datetime) -> list[Attempt]:
    """One attempt per guid that has no 2xx attempt: its newest, if delivered at or after
    `not_before` (older ones cannot be redelivered any more). Oldest first."""
    newest: dict[str, Attempt] = {}
    succeeded: set[str] = set()
    for attempt in attempts:
        if attempt.ok:
            succeeded.add(attempt.guid)
            continue
        held = newest.get(attempt.guid)
        if held is None or attempt.id > held.id:
            newest[attempt.guid] = attempt
    chosen = [a for guid, a in newest.items() if guid not in succeeded and a.delivered_at >= not_before]
    return sorted(chosen, key=lambda a: a.id)


def select_for_redelivery(
    attempts: Iterable[Attempt],
    *,
    known: Iterable[str] = (),
    redelivered: Iterable[str] = (),
    not_before: datetime,
) -> list[Attempt]:
    """What to redeliver: failed guids (`select_failed`) the backend has not recorded (`known`)
    and that were not redelivered already. Oldest first, one attempt per guid."""
    skip = set(known) | set(redelivered)
    return [a for a in select_failed(attempts, not_before=not_before) if a.guid not in skip]


# --- the job -------------------------------------------------------------------------------------


def _key(ctx: RedeliveryContext, name: str) -> str:
    return f"{ctx.key_prefix}:redelivery:{name}"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def load_watermark(ctx: RedeliveryContext) -> int:
    raw = _text(await ctx.redis.get(_key(ctx, "watermark")))
    if not raw:
        return 0
    try:
        return int(json.loads(raw)["id"])
    except (ValueError, KeyError, TypeError):
        return 0


async def _store_watermark(ctx: RedeliveryContext, attempt: Attempt) -> None:
    body = json.dumps({"id": attempt.id, "delivered_at": attempt.delivered_at.isoformat()})
    await ctx.redis.set(_key(ctx, "watermark"), body, ex=DONE_TTL_SECONDS)


async def _redelivered(ctx: RedeliveryContext, guids: list[str]) -> set[str]:
    if not guids:
        return set()
    values = await ctx.redis.mget([_key(ctx, f"done:{g}") for g in guids])
    return {g for g, v in zip(guids, values, strict=True) if v is not None}


async def _redeliver_one(ctx: RedeliveryContext, attempt: Attempt) -> bool | None:
    """True: asked; None: another run had taken this guid; raises when GitHub refused (key released)."""
    done_key = _key(ctx, f"done:{attempt.guid}")
    if not await ctx.redis.set(done_key, str(attempt.id), nx=True, ex=DONE_TTL_SECONDS):
        return None
    try:
        await ctx.deliveries.redeliver(attempt)
    except BaseException:
        await ctx.redis.delete(done_key)  # not asked: a later run may try again
        raise
    return True


async def run_once(ctx: RedeliveryContext, backend: BackendClient, now: datetime | None = None) -> RunSummary:
    """One redelivery pass; the caller holds the lock."""
    now = now or datetime.now(UTC)
    not_before = now - min(ctx.lookback, GITHUB_WINDOW - WINDOW_MARGIN)
    watermark = await load_watermark(ctx)
    attempts, foreign = await ctx.deliveries.list_attempts(after_id=watermark, not_before=not_before)
    failed = select_failed(attempts, not_before=not_before)
    guids = [a.guid for a in failed]
    known = await backend.known_deliveries(guids) if guids else set()
    chosen = select_for_redelivery(
        failed, known=known, redelivered=await _redelivered(ctx, guids), not_before=not_before
    )
    redelivered = errors = 0
    oldest_error: int | None = None
    for attempt in chosen:
        extra = {"delivery_id": attempt.guid, "event": attempt.event, "attempt_id": attempt.id}
        try:
            if await _redeliver_one(ctx, attempt):
                redelivered += 1
                log.info("redelivery requested", extra=extra)
        except (RedeliveryError, aiohttp.ClientError, TimeoutError) as exc:
            errors += 1
            if oldest_error is None:
                oldest_error = attempt.id
            log.warning("redelivery request failed: %s", exc, extra=extra)
    # Advance to the newest attempt listed, but never past one whose redelivery request failed.
    # Not at all after a listing cut short by a foreign link: the pages it did not read are older.
    keep = [a for a in attempts if oldest_error is None or a.id < oldest_error]
    if keep and not foreign:
        newest = max(keep, key=lambda a: a.id)
        if newest.id > watermark:
            await _store_watermark(ctx, newest)
    return RunSummary(
        ran=True, listed=len(attempts), failed=len(failed), known=len(known & set(guids)),
        redelivered=redelivered, errors=errors, foreign_links=int(foreign),
    )


async def redeliver_failed(ctx: Mapping[str, Any]) -> RunSummary:
    """The periodic job: one pass under the fleet-wide lock (`jobs/lock.py`); skipped when it is held."""
    jobs = job_context(ctx)
    redelivery, metrics = jobs.redelivery, jobs.metrics
    if redelivery is None:
        raise TypeError("the job context has no RedeliveryContext")
    async with fleet_lock(redelivery.redis, _key(redelivery, "lock"), LOCK_TTL_MS) as held:
        if held is None:
            log.info("redelivery: another replica is running it")
            _observe(metrics, RunSummary(ran=False))
            return RunSummary(ran=False)
        try:
            summary = await run_once(redelivery, jobs.backend)
        except BaseException:
            if metrics is not None:
                metrics.redelivery_runs.labels("failed").inc()
            raise
    _observe(metrics, summary)
    log.info(
        "redelivery run: %d listed, %d failed, %d recorded by the backend, %d redelivered, %d errors",
        summary.listed, summary.failed, summary.known, summary.redelivered, summary.errors,
    )
    return summary


def _observe(metrics: Metrics | None, summary: RunSummary) -> None:
    """Count a run on the worker's /metrics (the ctx of tests and tools may have no Metrics)."""
    if metrics is None:
        return
    if not summary.ran:
        metrics.redelivery_runs.labels("skipped").inc()
        return
    metrics.redelivery_runs.labels("errors" if summary.errors else "ok").inc()
    for stage, count in (("seen", summary.listed), ("failed", summary.failed), ("known", summary.known),
                         ("redelivered", summary.redelivered)):
        metrics.redelivery_deliveries.labels(stage).inc(count)
    metrics.redelivery_errors.inc(summary.errors)
    metrics.foreign_next_links.labels("redelivery").inc(summary.foreign_links)
