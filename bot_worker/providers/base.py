"""What the executor, the receiver and the jobs need from a provider, and nothing provider-specific.

Each provider is one folder beside this module (`github/` today) that implements these Protocols;
`registry.py` maps an action's `provider` to its runner. Kept free of any provider's imports so a
second provider adds a folder and a registry entry, never an edit here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from bot_worker.backend.ingest import IngestEvent
from shared_contracts.actions import ClaimedAction, Outcome, Provider

WRITE_METHODS: Final = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class Classified:
    """What one attempt's result is reported as."""

    outcome: Outcome
    error: str | None
    retry_after_seconds: float | None = None
    rate_limit: str | None = None  # "primary" | "secondary" | "throttle" when a limit was hit
    comment_id: int | None = None  # the PR comment written (reported so the next attempt edits it)


class LeaseBudgetExhausted(Exception):
    """Too little of the attempt's lease is left to start this request and still report in time."""


def request_timeout(remaining: float, method: str, provider_timeout: float, report_margin: float) -> float | None:
    """The timeout to give one request with `remaining` seconds of lease left; None: do not start it.

    A write starts only when its worst case (the full provider timeout) and the report still fit in
    the lease: a write that might land after the lease could duplicate another worker's re-run. A
    read is harmless late, so it gets whatever is left before the margin, capped at the timeout."""
    usable = remaining - report_margin
    if method.upper() in WRITE_METHODS:
        return provider_timeout if usable >= provider_timeout else None
    return min(provider_timeout, usable) if usable > 0 else None


@dataclass(frozen=True, slots=True)
class RequestBudget:
    """How long the current attempt may still talk to the provider. `deadline` reads the lease's expiry
    (monotonic seconds) afresh at every request: the lease keeper moves it when the lease is extended."""

    deadline: Callable[[], float]
    provider_timeout: float
    report_margin: float
    clock: Callable[[], float] = time.monotonic

    def timeout_for(self, method: str) -> float:
        remaining = self.deadline() - self.clock()
        timeout = request_timeout(remaining, method, self.provider_timeout, self.report_margin)
        if timeout is None:
            raise LeaseBudgetExhausted(
                f"{remaining:.1f}s of lease left: not starting a {method} that may take "
                f"{self.provider_timeout:.0f}s plus {self.report_margin:.0f}s to report"
            )
        return timeout


@dataclass(slots=True)
class Written:
    """What an action wrote so far: the log line, and the comment id even when a later step failed."""

    detail: str = ""
    comment_id: int | None = None


class ActionRunner(Protocol):
    """Carries out claimed actions against one provider (the executor holds one per provider)."""

    @property
    def provider(self) -> Provider: ...

    async def perform(self, action: ClaimedAction, budget: RequestBudget, written: Written) -> None:
        """Do the action's writes; raise on failure (after noting in `written` what was written)."""

    def classify(self, exc: BaseException) -> Classified:
        """The outcome a failure of `perform` is reported as."""


class WebhookSource(Protocol):
    """One provider's webhooks as the receiver reads them: headers first, then the verified body."""

    @property
    def signature_header(self) -> str: ...  # carries "sha256=<hex HMAC-SHA256 of the raw body>"

    @property
    def event_header(self) -> str: ...

    @property
    def delivery_header(self) -> str: ...

    @property
    def event_name(self) -> re.Pattern[str]: ...

    @property
    def delivery_id(self) -> re.Pattern[str]: ...

    @property
    def content_types(self) -> tuple[str, ...]: ...

    def parse_payload(self, body: bytes, content_type: str) -> Any:
        """The delivery's JSON; ValueError (or KeyError/IndexError) when it is none."""

    def normalize(self, event: str, delivery_id: str, payload: dict[str, Any]) -> IngestEvent:
        """The contract model of a forwarded event."""
