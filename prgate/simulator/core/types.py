"""Types and the timestamp format every simulated provider shares."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

JsonDict = dict[str, Any]
Clock = Callable[[], float]


def iso(ts: float) -> str:
    """GitHub's timestamp format: ``2024-01-02T03:04:05Z``."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
