"""Decide the events parked for an installation once it is known (docs/security.md, "A pull request that arrives
before its installation is never gated"; `gate/parking.py`).

Runs inside the transaction that made the installation known, which holds `installations.lock`:
the parked rows are taken (deleted) and each is decided in received order through the same code as a
live delivery, so its delivery row ends with the same outcome it would have had.
"""

from __future__ import annotations

import logging

from backend_api.challenges.decide import decide
from backend_api.gate import command, pull_request
from backend_api.store import parked
from backend_api.store.db import Conn
from shared_contracts.events import CommandEvent, PullRequestEvent

log = logging.getLogger(__name__)


async def replay_parked(conn: Conn, installation_id: int, *, public_url: str, max_attempts: int) -> int:
    """How many parked events were decided (and deleted)."""
    taken = await parked.take(conn, installation_id)
    for item in taken:
        if item.event_kind == "pull_request":
            event = PullRequestEvent.model_validate(item.event)
            # One at a time: parked events may be about the same pull request, and their order matters.
            await pull_request.evaluate_many(
                conn, [event], decide, public_url=public_url, max_attempts=max_attempts,
                outcome_event=pull_request.EVENT_NAME,
            )
        else:
            cmd = CommandEvent.model_validate(item.event)
            await command.apply_command(conn, cmd, public_url=public_url, max_attempts=max_attempts)
    if taken:
        log.info("parked events decided now that their installation is known",
                 extra={"installation_id": installation_id, "replayed": len(taken)})
    return len(taken)
