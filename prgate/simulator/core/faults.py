"""Fault injection for the GitHub simulator.

Two kinds of misbehaviour are modelled:

* configured faults (:class:`FaultConfig`): random 5xx, primary and secondary rate limits, added
  latency and "fail after write", drawn from one seedable RNG so a run is repeatable, plus
  deterministic rules ("fail the next N requests matching METHOD + path regex with status S") so
  a test can drive every outcome exactly;
* GitHub's real content-creation throttle (:class:`ContentThrottle`): more than N content-creating
  requests per installation per minute get a secondary rate limit.

Nothing here knows about HTTP or the simulator's state: the app's middleware asks
:meth:`FaultInjector.decide` before running a handler and applies the answer.
"""

from __future__ import annotations

import math
import random
import re
from collections import deque
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})

FaultKind = Literal["error", "primary_rate_limit", "secondary_rate_limit", "after_write"]


class FaultProfile(BaseModel):
    """Random faults for one scope (the whole simulator or one installation). Rates are 0..1."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    error_statuses: list[int] = Field(default_factory=lambda: [502, 503], min_length=1)
    primary_rate_limit_rate: float = Field(0.0, ge=0.0, le=1.0)
    primary_rate_limit_status: Literal[403, 429] = 403
    primary_reset_seconds: int = Field(3, ge=0)
    secondary_rate_limit_rate: float = Field(0.0, ge=0.0, le=1.0)
    secondary_retry_after_seconds: int = Field(5, ge=0)
    latency_ms: float = Field(0.0, ge=0.0)
    latency_spike_rate: float = Field(0.0, ge=0.0, le=1.0)
    latency_spike_ms: float = Field(0.0, ge=0.0)
    # State changes, then the client sees an error: GitHub's "timed out but it did happen".
    fail_after_write_rate: float = Field(0.0, ge=0.0, le=1.0)
    fail_after_write_status: int = Field(502, ge=400, le=599)


class FaultRule(BaseModel):
    """Fail the next ``count`` requests matching ``method`` and ``path_regex`` (``re.search``)."""

    model_config = ConfigDict(extra="forbid")

    method: str = "*"
    path_regex: str = ".*"
    # Default: 502 for "error"/"after_write", 403 for the rate limits (which accept only 403 or 429).
    status: int | None = Field(None, ge=400, le=599)
    count: int = Field(1, ge=1)
    kind: FaultKind = "error"
    installation_id: int | None = None
    retry_after_seconds: int = Field(5, ge=0)
    reset_seconds: int = Field(3, ge=0)
    message: str | None = None

    @field_validator("path_regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"invalid path_regex: {error}") from None
        return value

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    def effective_status(self) -> int:
        if self.kind in ("primary_rate_limit", "secondary_rate_limit"):
            return self.status if self.status in (403, 429) else 403
        return self.status or 502

    def matches(self, method: str, path: str, installation_id: int | None) -> bool:
        if self.method not in ("*", method.upper()):
            return False
        if self.installation_id is not None and self.installation_id != installation_id:
            return False
        return re.search(self.path_regex, path) is not None


class FaultConfig(BaseModel):
    """Everything ``PUT /_sim/faults`` accepts. ``installations`` overrides ``default`` per installation."""

    model_config = ConfigDict(extra="forbid")

    seed: int | None = None
    default: FaultProfile = Field(default_factory=FaultProfile)
    installations: dict[int, FaultProfile] = Field(default_factory=dict)
    rules: list[FaultRule] = Field(default_factory=list)
    content_throttle: bool = True
    # Rewrite the origin of every `Link` header URL to this one ("http://host:port"), as a hostile
    # proxy or a poisoned response could: a client must not follow it with its token.
    link_origin: str | None = None


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What the middleware must do to one request.

    ``after_write`` decisions run the handler first and replace its (successful) response.
    """

    kind: FaultKind
    status: int
    source: Literal["rule", "random", "throttle"]
    retry_after_seconds: int = 0
    reset_seconds: int = 0
    message: str | None = None

    @property
    def after_write(self) -> bool:
        return self.kind == "after_write"


class FaultInjector:
    """Holds the fault configuration, the remaining counts of rules and the seeded RNG."""

    def __init__(self, config: FaultConfig | None = None, seed: int | None = None) -> None:
        self._base_seed = seed
        self._config = FaultConfig()
        self._rng = random.Random(seed)
        self.configure(config or FaultConfig())

    @property
    def config(self) -> FaultConfig:
        return self._config

    def configure(self, config: FaultConfig) -> None:
        """Replace the whole configuration; reseed when it carries a seed."""
        self._config = config.model_copy(deep=True)
        if config.seed is not None:
            self._rng = random.Random(config.seed)

    def reset(self) -> None:
        self._config = FaultConfig()
        self._rng = random.Random(self._base_seed)

    def add_rule(self, rule: FaultRule) -> None:
        self._config.rules.append(rule.model_copy())

    def profile_for(self, installation_id: int | None) -> FaultProfile:
        if installation_id is not None and installation_id in self._config.installations:
            return self._config.installations[installation_id]
        return self._config.default

    @property
    def content_throttle_enabled(self) -> bool:
        return self._config.content_throttle

    def latency_seconds(self, installation_id: int | None) -> float:
        profile = self.profile_for(installation_id)
        delay_ms = profile.latency_ms
        if profile.latency_spike_rate > 0 and self._rng.random() < profile.latency_spike_rate:
            delay_ms += profile.latency_spike_ms * (0.5 + self._rng.random() / 2)
        return delay_ms / 1000.0

    def decide(self, method: str, path: str, installation_id: int | None) -> FaultDecision | None:
        """The fault for this request, if any. Deterministic rules win over random faults."""
        rule_decision = self._take_rule(method, path, installation_id)
        if rule_decision is not None:
            return rule_decision
        return self._draw_random(method, installation_id)

    def _take_rule(self, method: str, path: str, installation_id: int | None) -> FaultDecision | None:
        rules = self._config.rules
        for index, rule in enumerate(rules):
            if not rule.matches(method, path, installation_id):
                continue
            if rule.kind == "after_write" and method.upper() not in WRITE_METHODS:
                continue
            rule.count -= 1
            if rule.count <= 0:
                del rules[index]
            return FaultDecision(
                kind=rule.kind,
                status=rule.effective_status(),
                source="rule",
                retry_after_seconds=rule.retry_after_seconds,
                reset_seconds=rule.reset_seconds,
                message=rule.message,
            )
        return None

    def _draw_random(self, method: str, installation_id: int | None) -> FaultDecision | None:
        profile = self.profile_for(installation_id)
        rng = self._rng
        if profile.error_rate > 0 and rng.random() < profile.error_rate:
            return FaultDecision(kind="error", status=rng.choice(profile.error_statuses), source="random")
        if profile.primary_rate_limit_rate > 0 and rng.random() < profile.primary_rate_limit_rate:
            return FaultDecision(
                kind="primary_rate_limit",
                status=profile.primary_rate_limit_status,
                source="random",
                reset_seconds=profile.primary_reset_seconds,
            )
        if profile.secondary_rate_limit_rate > 0 and rng.random() < profile.secondary_rate_limit_rate:
            return FaultDecision(
                kind="secondary_rate_limit",
                status=403,
                source="random",
                retry_after_seconds=profile.secondary_retry_after_seconds,
            )
        if (
            method.upper() in WRITE_METHODS
            and profile.fail_after_write_rate > 0
            and rng.random() < profile.fail_after_write_rate
        ):
            return FaultDecision(kind="after_write", status=profile.fail_after_write_status, source="random")
        return None


class ContentThrottle:
    """GitHub's content-creation secondary limit: at most ``limit_per_minute`` writes per installation
    in any 60 s window. Refused requests do not count towards the window."""

    WINDOW_SECONDS = 60.0

    def __init__(self, limit_per_minute: int) -> None:
        self.limit_per_minute = limit_per_minute
        self._windows: dict[int, deque[float]] = {}

    def reset(self) -> None:
        self._windows.clear()

    def admit(self, installation_id: int, now: float) -> FaultDecision | None:
        """Record one content-creating request, or refuse it with a secondary-limit decision."""
        window = self._windows.setdefault(installation_id, deque())
        while window and window[0] <= now - self.WINDOW_SECONDS:
            window.popleft()
        if len(window) >= self.limit_per_minute:
            retry_after = max(1, math.ceil(window[0] + self.WINDOW_SECONDS - now))
            return FaultDecision(
                kind="secondary_rate_limit", status=403, source="throttle", retry_after_seconds=retry_after
            )
        window.append(now)
        return None
