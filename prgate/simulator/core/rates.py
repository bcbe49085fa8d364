"""An hourly request budget per key, with the snapshot a provider turns into rate-limit headers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RateBucket:
    limit: int
    used: int
    reset_at: float


@dataclass(frozen=True, slots=True)
class RateSnapshot:
    limit: int
    remaining: int
    used: int
    reset_at: int
    exhausted: bool

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(self.reset_at),
            "x-ratelimit-resource": "core",
        }


class RateLimiter:
    """GitHub's primary limit: a budget per hour per key (installation, app, anonymous)."""

    WINDOW_SECONDS = 3600

    def __init__(self, limit_per_hour: int) -> None:
        self.limit_per_hour = limit_per_hour
        self._buckets: dict[str, RateBucket] = {}

    def reset(self) -> None:
        self._buckets.clear()

    def _bucket(self, key: str, now: float, limit: int) -> RateBucket:
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket.reset_at:
            bucket = RateBucket(limit=limit, used=0, reset_at=float(int(now) + self.WINDOW_SECONDS))
            self._buckets[key] = bucket
        return bucket

    def consume(self, key: str, now: float, limit: int | None = None, block: bool = True) -> RateSnapshot:
        """Count one request; ``exhausted`` means it is refused (and not counted)."""
        bucket = self._bucket(key, now, limit or self.limit_per_hour)
        if bucket.used >= bucket.limit and block:
            return self._snapshot(bucket, exhausted=True)
        bucket.used = min(bucket.used + 1, bucket.limit)
        return self._snapshot(bucket, exhausted=False)

    def peek(self, key: str, now: float, limit: int | None = None) -> RateSnapshot:
        return self._snapshot(self._bucket(key, now, limit or self.limit_per_hour), exhausted=False)

    @staticmethod
    def _snapshot(bucket: RateBucket, exhausted: bool) -> RateSnapshot:
        return RateSnapshot(
            limit=bucket.limit,
            remaining=max(0, bucket.limit - bucket.used),
            used=bucket.used,
            reset_at=int(bucket.reset_at),
            exhausted=exhausted,
        )
