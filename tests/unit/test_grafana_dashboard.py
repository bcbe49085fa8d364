"""docs/grafana-dashboard.json is a valid dashboard whose every query reads metrics the code exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from backend_api.metrics import BackendMetrics
from bot_worker.metrics import COMPONENTS, Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"

# PromQL words that look like identifiers but are not metric names.
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_LABEL_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def metric_names(expr: str) -> set[str]:
    """Every metric name in a PromQL expression (functions, keywords, labels and durations left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    text = re.sub(r"\boffset\s+\S+", "", text)
    return {m.group(1) for m in _IDENT.finditer(text) if not m.group(2) and m.group(1).lower() not in _KEYWORDS}


def label_names(expr: str) -> set[str]:
    """Labels an expression groups by or matches on."""
    labels: set[str] = set()
    for match in _GROUPING.finditer(_STRING.sub('""', expr)):
        labels |= {part.strip() for part in match.group(2).split(",") if part.strip()}
    for matchers in _MATCHERS.findall(_STRING.sub('""', expr)):
        labels |= set(_LABEL_MATCHER.findall(matchers))
    return labels


def _collectors(owner: object) -> Iterator[MetricWrapperBase]:
    for value in vars(owner).values():
        if isinstance(value, MetricWrapperBase):
            yield value


def exported() -> dict[str, set[str]]:
    """Every sample name the bot and the backend can export, with the labels it carries."""
    names: dict[str, set[str]] = {}
    owners = (*(Metrics(CollectorRegistry(), c) for c in COMPONENTS), BackendMetrics(CollectorRegistry()))
    for owner in owners:
        for collector in _collectors(owner):
            [family] = collector.describe()
            labels = set(collector._labelnames)
            if family.type == "counter":
                names[f"{family.name}_total"] = labels
            elif family.type == "histogram":
                names[f"{family.name}_bucket"] = labels | {"le"}
                names[f"{family.name}_sum"] = labels
                names[f"{family.name}_count"] = labels
            else:
                names[family.name] = labels
    return names


def load() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in document["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return found


def test_the_extractor_finds_metric_names_only() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(backend_http_request_duration_seconds_bucket'
        '{route!="/internal/v2/x"}[$__rate_interval]))) / ignoring(route) sum(up offset 5m) and on() vector(1)'
    )
    assert metric_names(expr) == {"backend_http_request_duration_seconds_bucket", "up"}
    assert label_names(expr) == {"le", "route"}


def test_dashboard_is_a_grafana_dashboard() -> None:
    document = load()
    assert document["schemaVersion"] >= 36
    assert document["title"]
    assert document["uid"]
    assert isinstance(document["panels"], list)
    ids = [p["id"] for p in panels(document)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(document):
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid), panel["title"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "gauge", "bargauge", "table", "text"}, panel["type"]
        assert panel["datasource"]["type"] == "prometheus"
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"


def _targets() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels(load()) for t in p.get("targets", [])]


@pytest.mark.parametrize(("title", "expr"), _targets())
def test_every_query_reads_exported_metrics_and_labels(title: str, expr: str) -> None:
    names = exported()
    used = metric_names(expr)
    assert used, f"{title}: no metric found in {expr!r}"
    unknown = used - set(names)
    assert not unknown, f"{title}: {sorted(unknown)} are not exported by bot_worker.metrics / backend_api.metrics"
    known_labels = set().union(*(names[m] for m in used))
    missing = label_names(expr) - known_labels
    assert not missing, f"{title}: labels {sorted(missing)} are on none of {sorted(used)}"


def test_the_dashboard_covers_what_operators_need() -> None:
    used = set().union(*(metric_names(expr) for _, expr in _targets()))
    required = {
        "webhooks_received_total", "webhooks_forwarded_total", "forward_queue_total",
        "backend_outbox_actions", "backend_outbox_oldest_pending_age_seconds", "actions_executed_total",
        "provider_request_seconds_bucket", "provider_request_seconds_count", "rate_limit_waits_total",
        "token_refreshes_total", "claim_errors_total", "backend_http_request_duration_seconds_bucket",
    }
    assert required <= used, sorted(required - used)
    outbox_states = "\n".join(expr for _, expr in _targets() if "backend_outbox_actions" in expr)
    assert "by (state)" in outbox_states  # pending, leased and failed together
