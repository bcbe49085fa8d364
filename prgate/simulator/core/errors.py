"""The error a simulated operation raises; each provider's middleware renders it in its own JSON."""

from __future__ import annotations

from prgate.simulator.core.types import JsonDict


class SimulatorError(Exception):
    """A state operation that GitHub would refuse; the app maps it to an HTTP status."""

    def __init__(self, status: int, message: str, errors: list[JsonDict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


class NotFound(SimulatorError):
    def __init__(self, message: str = "Not Found") -> None:
        super().__init__(404, message)
