"""SQL for `internal_nonces`: the replay ledger of signed internal requests."""

from __future__ import annotations

from collections.abc import Sequence

from backend_api.store.db import Conn


async def record(conn: Conn, nonces: Sequence[str]) -> set[str]:
    """Insert the nonces; the ones not seen before (the others are replays)."""
    rows = await conn.fetch(
        """INSERT INTO internal_nonces (nonce) SELECT DISTINCT unnest($1::text[])
           ON CONFLICT DO NOTHING RETURNING nonce""",
        list(nonces),
    )
    return {r["nonce"] for r in rows}


async def purge(conn: Conn, older_than_seconds: float) -> int:
    result: str = await conn.execute(
        "DELETE FROM internal_nonces WHERE seen_at < now() - make_interval(secs => $1)", float(older_than_seconds)
    )
    return int(result.split()[-1])
