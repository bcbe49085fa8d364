"""What a handler tells the metrics about the request it answered (``keys``: one request key each).

The metrics count outcomes the handler already holds as typed values; they never re-read a body.
A fact is set only where the handler reached that outcome: no fact, nothing counted but the HTTP
request itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared_contracts.actions import ActionType
from shared_contracts.events import IngestResponse


@dataclass(frozen=True, slots=True)
class Ingested:
    """The answers of an ingest call (a batch: one per event written) and what they enqueued."""

    event: str
    answers: tuple[IngestResponse, ...]
    # The types of the actions enqueued, when the use case returned them; None: asked of the store by id.
    enqueued_types: tuple[ActionType, ...] | None = None
    # Parked events decided because this installation event made their installation known.
    replayed: int = 0


@dataclass(frozen=True, slots=True)
class Claimed:
    action_types: tuple[ActionType, ...]


@dataclass(frozen=True, slots=True)
class Reported:
    """One (outcome the worker reported, what the backend made of it) per result."""

    results: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Tenancy:
    """A Bitbucket tenancy call (connect, disconnect, token, rediscover) and its outcome(s): one per workspace."""

    operation: str
    outcomes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Enqueued:
    """Actions an owner-API call enqueued (their types are asked of the store)."""

    action_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ConfigRead:
    """Config file reads a call made: ``trigger`` push | refresh, one result each (valid, invalid,
    absent, unavailable: GitHub could not be asked; skipped: not read)."""

    trigger: str
    results: tuple[str, ...]
