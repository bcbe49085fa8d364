from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """Base for every model on the wire.

    Extra fields are ignored so a newer sender can talk to an older receiver;
    missing required fields are a validation error (HTTP 422).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


class ErrorBody(WireModel):
    """Every 4xx/5xx answer of every prgate endpoint carries this JSON body."""

    error: str
    message: str
    details: list[dict[str, object]] | None = None


def comma_list(value: object) -> object:
    """A comma-separated environment value (e.g. PRGATE_INTERNAL_SECRETS) as a list: blanks dropped, order kept."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class DuplicateKeyError(ValueError):
    """A JSON object named the same key twice: ambiguous, so refused rather than "last one wins"."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)  # in C: the common case costs one comparison more than plain json.loads
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


def loads_strict(data: str | bytes) -> Any:
    """`json.loads` that refuses duplicate keys (raises DuplicateKeyError, a ValueError)."""
    return json.loads(data, object_pairs_hook=_refuse_duplicates)
