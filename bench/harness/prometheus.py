"""The components' own /metrics: Prometheus text parsed, scraped from several processes, differenced."""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from bench.harness.stack import StackProcess

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_prometheus(text: str) -> dict[str, float]:
    """Sum every sample by metric name and by `name{method=...}` (other labels are summed over)."""
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or line.startswith("#"):
            continue
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        try:
            number = float(value)
        except ValueError:
            continue
        out[name] += number
        method = re.search(r'method="([A-Z]+)"', labels)
        if method:
            out[f"{name}{{method={method.group(1)}}}"] += number
    return out


async def scrape(session: aiohttp.ClientSession, targets: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Every (url, prefix) target's /metrics, names prefixed, summed over targets of the same prefix.
    A target that does not answer counts nothing (a worker restarting between phases)."""
    total: dict[str, float] = defaultdict(float)
    for url, prefix in targets:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(url) as resp:
                for key, value in parse_prometheus(await resp.text()).items():
                    total[prefix + key] += value
    return total


_PORTS: dict[int, int] = {}


def logged_metrics_port(proc: StackProcess) -> int | None:
    """A component's metrics port (`*_METRICS_PORT=0`: any free one), from its first log lines."""
    if proc.pid not in _PORTS:
        try:
            with proc.log_path.open(errors="replace") as handle:
                head = handle.read(20_000)
        except OSError:
            return None
        found = re.search(r"metrics on :(\d+)", head)
        if not found:
            return None
        _PORTS[proc.pid] = int(found.group(1))
    return _PORTS[proc.pid]


@dataclass(frozen=True)
class MetricsDelta:
    """What the components counted themselves between two scrapes."""

    values: dict[str, float]

    @staticmethod
    def between(before: dict[str, float], after: dict[str, float]) -> MetricsDelta:
        return MetricsDelta({k: v - before.get(k, 0.0) for k, v in after.items()})

    def get(self, key: str) -> float:
        return float(self.values.get(key, 0.0))

    def mean_ms(self, name: str, labels: str = "") -> float | None:
        """A histogram's mean over the interval, in milliseconds (None: no observation)."""
        count = self.get(f"{name}_count{labels}")
        return 1000 * self.get(f"{name}_sum{labels}") / count if count else None
