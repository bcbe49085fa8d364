"""SQL for the reconciliation aggregate: `reconcile_runs` and the `reconcile_repairs` each run made."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from backend_api.store.db import Conn
from shared_contracts.reconcile import ReconcileError, ReconcileStats, ReconcileTrigger, Repair


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: int
    trigger: ReconcileTrigger
    installation_id: int | None
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    repairs: int
    errors: tuple[ReconcileError, ...]
    stats: ReconcileStats


_RUN_COLUMNS = "run_id, trigger, installation_id, worker_id, started_at, finished_at, repairs, errors, stats"


def _json(value: Any) -> Any:
    # The pool decodes jsonb; a bare connection (migrations, tools) hands back text.
    return json.loads(value) if isinstance(value, str) else value


def _run(row: asyncpg.Record) -> RunRow:
    return RunRow(
        run_id=row["run_id"], trigger=row["trigger"], installation_id=row["installation_id"],
        worker_id=row["worker_id"], started_at=row["started_at"], finished_at=row["finished_at"],
        repairs=row["repairs"],
        errors=tuple(ReconcileError.model_validate(e) for e in _json(row["errors"])),
        stats=ReconcileStats.model_validate(_json(row["stats"])),
    )


async def start_run(conn: Conn, trigger: ReconcileTrigger, worker_id: str, installation_id: int | None) -> RunRow:
    row = await conn.fetchrow(
        f"""INSERT INTO reconcile_runs (trigger, worker_id, installation_id) VALUES ($1, $2, $3)
            RETURNING {_RUN_COLUMNS}""",
        trigger, worker_id, installation_id,
    )
    assert row is not None
    return _run(row)


async def get_run(conn: Conn, run_id: int, *, for_update: bool = False) -> RunRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_RUN_COLUMNS} FROM reconcile_runs WHERE run_id = $1{lock}", run_id)
    return None if row is None else _run(row)


async def record_repair(conn: Conn, run_id: int, repair: Repair) -> None:
    await conn.execute(
        """INSERT INTO reconcile_repairs (run_id, kind, installation_id, repo_id, repo_full_name, pr_number, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        run_id, repair.kind.value, repair.installation_id, repair.repo_id, repair.repo_full_name,
        repair.pr_number, repair.detail,
    )


async def finish_run(
    conn: Conn, run_id: int, errors: list[ReconcileError], stats: ReconcileStats
) -> RunRow:
    row = await conn.fetchrow(
        f"""UPDATE reconcile_runs SET finished_at = now(), errors = $2, stats = $3,
                   repairs = (SELECT count(*) FROM reconcile_repairs WHERE run_id = $1)
            WHERE run_id = $1
            RETURNING {_RUN_COLUMNS}""",
        run_id, [e.model_dump(mode="json") for e in errors], stats.model_dump(mode="json"),
    )
    assert row is not None
    return _run(row)


async def repairs_of(conn: Conn, run_id: int, limit: int | None = None) -> list[Repair]:
    rows = await conn.fetch(
        """SELECT kind, installation_id, repo_id, repo_full_name, pr_number, detail FROM reconcile_repairs
           WHERE run_id = $1 ORDER BY repair_id LIMIT $2""",
        run_id, limit,
    )
    return [Repair.model_validate(dict(r)) for r in rows]


async def recent_runs(conn: Conn, limit: int) -> list[RunRow]:
    """Newest first; a run still going (or whose worker died) has no `finished_at`."""
    rows = await conn.fetch(
        f"SELECT {_RUN_COLUMNS} FROM reconcile_runs ORDER BY started_at DESC, run_id DESC LIMIT $1", limit
    )
    return [_run(r) for r in rows]
