"""Apply one `/prgate` command in one transaction, through the same evaluation as pull_request events."""

from __future__ import annotations

import functools
from typing import Final

import asyncpg

from backend_api.challenges.commands import as_recheck, decide_command
from backend_api.challenges.decide import Plan, PrContext
from backend_api.gate.parking import ParkingLimits, park_events
from backend_api.gate.pull_request import duplicate, evaluate, finish, response
from backend_api.store import deliveries, parked
from backend_api.store.db import Conn
from shared_contracts.actions import Provider
from shared_contracts.events import CommandEvent, IngestResponse, IngestStatus, PullRequestEvent

EVENT_NAME: Final = "issue_comment"


async def ingest_command(
    pool: asyncpg.Pool, cmd: CommandEvent, *, public_url: str, max_attempts: int,
    parking: ParkingLimits | None = None, provider: Provider = Provider.GITHUB, event_name: str = EVENT_NAME,
) -> IngestResponse:
    async with pool.acquire() as conn, conn.transaction():
        fresh = await deliveries.begin(
            conn, cmd.delivery_id, event_name, f"command:{cmd.command}", cmd.installation_id, cmd.repository.id,
            cmd.body_sha256, provider,
        )
        if not fresh:
            return await duplicate(conn, cmd.delivery_id, event_name, provider)
        if await parked.unknown_installations(conn, [cmd.installation_id]):
            # Only GitHub's events can arrive before their tenant: a Bitbucket workspace is connected first.
            answers = await park_events(conn, [cmd], EVENT_NAME, parking or ParkingLimits())
            return answers[cmd.delivery_id]
        return await apply_command(conn, cmd, public_url=public_url, max_attempts=max_attempts,
                                   provider=provider, event_name=event_name)


async def apply_command(
    conn: Conn, cmd: CommandEvent, *, public_url: str, max_attempts: int,
    provider: Provider = Provider.GITHUB, event_name: str = EVENT_NAME,
) -> IngestResponse:
    """Decide and write one command whose delivery row is begun, inside the caller's transaction
    (a live delivery, or one parked until its installation became known)."""
    if cmd.sender.type == "Bot":
        plan = Plan(status=IngestStatus.IGNORED, reason="commands from bots are ignored")
        await finish(conn, cmd.delivery_id, event_name, plan, None, provider)
        return response(cmd.delivery_id, plan, None, [])
    planner = functools.partial(_plan, cmd)
    plan, challenge_id, action_ids = await evaluate(
        conn, as_recheck(cmd), planner, public_url=public_url, max_attempts=max_attempts, provider=provider
    )
    await finish(conn, cmd.delivery_id, event_name, plan, challenge_id, provider)
    return response(cmd.delivery_id, plan, challenge_id, action_ids)


def _plan(cmd: CommandEvent, event: PullRequestEvent, ctx: PrContext) -> Plan:
    return decide_command(cmd, event, ctx)
