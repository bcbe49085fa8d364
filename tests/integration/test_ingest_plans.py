"""The ingest write must reach its rows by index however stale PostgreSQL's statistics are.

Found with auto_explain under bench.ingest (docs/benchmarks.md): with autovacuum not yet run on the
dedup table (a new install, or this CI machine's PostgreSQL, where it is off) and the generic plan
asyncpg's prepared statement gets after five runs, the outcome UPDATE hash-joined a sequential scan
of all of `webhook_deliveries` — once per batch, growing with every delivery ever received. The test
plans the real statement, generic and uncached, against a table of a few thousand never-analyzed rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from backend_api.store.challenges import NewChallenge
from backend_api.store.deliveries import DeliveryRecord
from backend_api.store.pr_decisions import WRITE_SQL, DecisionWrite, Outcome, write_arguments
from shared_contracts.actions import ActionType
from shared_contracts.events import Decision, IngestStatus


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _batch(size: int) -> list[DecisionWrite]:
    deadline = datetime.now(UTC) + timedelta(hours=24)
    return [
        DecisionWrite(
            installation_id=1, repo_id=10, repo_full_name="o/r", pr_number=n, challenge_id=None,
            new_challenge=NewChallenge(1, 10, "o/r", n, 900 + n, "a" * 40, 70 + n, f"u{n}", deadline, "h", f"d{n}"),
            actions=[(ActionType.UPSERT_PR_COMMENT, {"body": "x"}), (ActionType.SET_COMMIT_STATUS, {"state": "x"})],
            mark_decided=True,
            outcome=Outcome(f"d{n}", DeliveryRecord(IngestStatus.ACCEPTED, Decision.GATE, None, None)),
        )
        for n in range(1, size + 1)
    ]


async def test_the_outcome_update_finds_deliveries_by_primary_key_with_stale_statistics(db: asyncpg.Pool) -> None:
    decisions = _batch(8)
    async with db.acquire() as conn:
        await conn.execute(
            """INSERT INTO webhook_deliveries (delivery_id, event_name, action, installation_id, repo_id, status)
               SELECT 'd' || g, 'pull_request', 'opened', 1, 10, 'ACCEPTED' FROM generate_series(1, 3000) g"""
        )
        created = [(n, d.new_challenge) for n, d in enumerate(decisions) if d.new_challenge is not None]
        actions = [(n, d, t, p) for n, d in enumerate(decisions) for t, p in d.actions]
        outcomes = [(n, d.outcome) for n, d in enumerate(decisions) if d.outcome is not None]
        args = write_arguments(created, actions, decisions, outcomes, 8, "pull_request")
        scans = await _generic_scans(conn, WRITE_SQL, args, "webhook_deliveries")
    assert scans, "the plan reads webhook_deliveries somewhere"
    assert all(node_type != "Seq Scan" for node_type, _ in scans), scans
    assert {index for _, index in scans} == {"webhook_deliveries_pkey"}


async def _generic_scans(conn: asyncpg.Connection, sql: str, args: list[Any], table: str) -> list[tuple[str, Any]]:
    """(node type, index) of every scan of `table` in the generic plan of `sql` with `args`."""
    # EXECUTE takes no bind parameters: each argument becomes a literal of the statement's own type.
    types = [t.name for t in (await conn.prepare(sql)).get_parameters()]
    literals = [await conn.fetchval(f"SELECT format('%L::%s', $1::{typ}, '{typ}')", arg)
                for typ, arg in zip(types, args, strict=True)]
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE planned AS {sql}")
        explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE planned({', '.join(literals)})")
        await conn.execute("DEALLOCATE planned")
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
    return [(node["Node Type"], node.get("Index Name")) for node in _nodes(plan)
            if node.get("Relation Name") == table and node["Node Type"] != "ModifyTable"]
