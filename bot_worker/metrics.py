"""Prometheus metrics of the bot processes (receiver and worker), on a registry the caller owns.

Nothing here registers on prometheus_client's global default registry: each
receiver app (and each worker) builds its own `CollectorRegistry`, so two apps
in one process (tests) never share or collide on a counter.

One `Metrics` type serves both components (the code they share takes it), but each family is
registered only on the registry of the components that count it: a worker's `/metrics` does not
export the receiver's families as zeros that look like "no webhook ever arrived", and the other
way round. A family a component never counts is still an attribute (a counter on no registry), so
shared code needs no branch.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

# Outcome label values of `webhooks_forwarded_total`.
ACCEPTED = "accepted"  # backend answered ACCEPTED
DUPLICATE = "duplicate"  # backend answered DUPLICATE (delivery seen before)
IGNORED = "ignored"  # backend answered IGNORED (recorded, not acted on)
PARKED = "parked"  # backend answered PARKED (installation not known yet; decided when it is)
DROPPED = "dropped"  # backend answered DROPPED (installation not known yet, parking full)
QUEUED = "queued"  # backend unavailable: parked on the arq queue, answered 202
REJECTED = "rejected"  # answered 4xx: payload invalid here (422) or the backend refused it (its 4xx)
ERROR = "error"  # backend and queue both unavailable: answered 503

# Outcome label values of `forward_queue_total`.
Q_ENQUEUED = "enqueued"  # receiver: job written to Redis
Q_ALREADY_QUEUED = "already_queued"  # receiver: a job for this delivery was already waiting (arq job-id dedup)
Q_UNAVAILABLE = "unavailable"  # receiver: Redis refused or timed out (answered 503)
Q_DELIVERED = "delivered"  # worker: the job reached the backend
Q_RETRIED = "retried"  # worker: the backend was still unavailable, retry scheduled
Q_FAILED = "failed"  # worker: permanent failure (backend 4xx, undecodable job)
Q_REFUSED = "refused"  # worker: a Redis job that is not our JSON (a planted pickle): dropped unread (jobs/codec.py)

# Latency buckets for calls that must finish well inside GitHub's 10 s webhook budget.
_FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)


Component = Literal["receiver", "worker"]
COMPONENTS: tuple[Component, ...] = ("receiver", "worker")


class Metrics:
    """Every metric the bot counts; `component`'s families are registered on `registry`."""

    def __init__(self, registry: CollectorRegistry, component: Component) -> None:
        self.registry = registry
        self.component = component
        receiver = registry if component == "receiver" else None
        worker = registry if component == "worker" else None
        # Counted by both: forwarding (the receiver forwards; the worker replays parked deliveries).
        both = registry

        # Receiver
        self.webhooks_received = Counter(
            "webhooks_received_total",
            "Webhook deliveries with a valid signature, by GitHub event or Bitbucket event key",
            ["event"], registry=receiver,
        )
        self.webhooks_forwarded = Counter(
            "webhooks_forwarded_total", "Forwardable deliveries by event and outcome",
            ["event", "outcome"], registry=both,
        )
        self.webhook_confirmations = Counter(
            "webhook_confirmations_total",
            "pull_request.closed / installation.deleted checked against GitHub before forwarding "
            "(providers/github/confirm.py), by event and result: confirmed, refuted, unavailable (answered 503), "
            "unconfigured (no App credentials: forwarded as received)",
            ["event", "result"], registry=receiver,
        )
        self.signature_failures = Counter(
            "webhook_signature_failures_total",
            "Deliveries refused for a missing or wrong signature (GitHub's X-Hub-Signature-256, Bitbucket's "
            "X-Hub-Signature with the workspace's derived secret)",
            registry=receiver,
        )
        self.bitbucket_workspace_mismatches = Counter(
            "bitbucket_workspace_mismatches_total",
            "Bitbucket deliveries whose signature verified for the URL's workspace but whose payload names "
            "another workspace (refused 401)",
            registry=receiver,
        )
        self.bitbucket_webhooks_ignored = Counter(
            "bitbucket_webhooks_ignored_total",
            "Verified Bitbucket deliveries answered 202 ignored, by event key and reason (unknown_event, "
            "not_a_command, bot_comment, not_main_branch)",
            ["event_key", "reason"], registry=receiver,
        )
        self.backend_auth_failures = Counter(
            "forward_backend_auth_failures_total",
            "Forwards the backend refused with 401/403 (our internal signature: keys or clocks), kept "
            "queued, by where (receiver, worker)", ["where"], registry=both,
        )
        self.webhook_bodies_refused = Counter(
            "webhook_bodies_refused_total",
            "Webhook requests refused before their signature could be checked, by status: 400/415 headers, "
            "413 too long, 408 stalled, 503 shed at the concurrent-body bound (bot_worker/webhooks/intake.py)",
            ["status"], registry=receiver,
        )
        self.forward_latency = Histogram(
            "forward_latency_seconds", "Duration of the synchronous forward to the backend",
            buckets=_FAST_BUCKETS, registry=receiver,
        )
        self.forward_group_size = Histogram(
            "forward_group_deliveries", "pull_request deliveries per group call to the backend (webhooks/group.py)",
            buckets=(1, 2, 5, 10, 20, 50, 100), registry=receiver,
        )
        self.forward_queue = Counter(
            "forward_queue_total", "Deliveries parked on (and drained from) the arq forward queue, by outcome",
            ["outcome"], registry=both,
        )

        # Worker
        self.actions_claimed = Counter(
            "actions_claimed_total", "Outbox actions leased from the backend", ["action_type"], registry=worker,
        )
        self.actions_executed = Counter(
            "actions_executed_total", "Outbox actions carried out, by outcome",
            ["action_type", "outcome"], registry=worker,
        )
        self.provider_request_seconds = Histogram(
            "provider_request_seconds", "Requests to GitHub / Bitbucket",
            ["provider", "method", "status"], buckets=_FAST_BUCKETS, registry=worker,
        )
        self.rate_limit_waits = Counter(
            "rate_limit_waits_total", "Waits imposed by provider rate limits (primary / secondary / throttle)",
            ["kind"], registry=worker,
        )
        self.foreign_comments = Counter(
            "foreign_marker_comments_total",
            "Comments carrying prgate's marker that this App did not write (ignored, never edited)",
            registry=worker,
        )
        self.stored_comments_lost = Counter(
            "stored_comments_lost_total",
            "Remembered comment ids that GitHub no longer has (deleted) or that are not ours: the PR was searched",
            registry=worker,
        )
        self.lease_extensions = Counter(
            "lease_extensions_total", "Lease extensions of running attempts (extended / lost / unsupported / error)",
            ["outcome"], registry=worker,
        )
        self.token_refreshes = Counter(
            "token_refreshes_total", "GitHub App installation tokens minted", registry=both,
        )
        self.claim_errors = Counter(
            "claim_errors_total", "Failed claim calls to the backend", registry=worker,
        )
        self.claim_latency = Histogram(
            "claim_latency_seconds", "Duration of claim calls to the backend (includes long-poll wait)",
            buckets=(*_FAST_BUCKETS, 20.0, 30.0, 45.0), registry=worker,
        )

        # Periodic jobs (docs/redelivery.md, docs/reconcile.md). Run results: ok, errors (finished with
        # errors recorded), failed (raised), skipped (another replica held the lock).
        self.redelivery_runs = Counter(
            "redelivery_runs_total", "Redelivery job runs, by result", ["result"], registry=worker,
        )
        self.redelivery_deliveries = Counter(
            "redelivery_deliveries_total",
            "Delivery attempts the redelivery job saw (seen), failed guids (failed), of those recorded by the "
            "backend anyway (known), and redeliveries requested (redelivered)",
            ["stage"], registry=worker,
        )
        self.redelivery_errors = Counter(
            "redelivery_errors_total", "Redelivery requests GitHub refused or that did not reach it", registry=worker,
        )
        self.bitbucket_discovery = Counter(
            "bitbucket_discovery_total", "Bitbucket re-discovery, per workspace listed (listed) or refused (error), "
            "and runs skipped because another replica held the lock (skipped)", ["outcome"], registry=worker,
        )
        self.bitbucket_repositories_changed = Counter(
            "bitbucket_repositories_changed_total", "Repositories re-discovery found added or removed",
            ["change"], registry=worker,
        )
        self.reconcile_runs = Counter(
            "reconcile_runs_total", "Reconciliation runs, by result", ["result"], registry=worker,
        )
        self.reconcile_repairs = Counter(
            "reconcile_repairs_total", "Repairs made by reconciliation runs, by kind", ["kind"], registry=worker,
        )
        self.foreign_next_links = Counter(
            "github_foreign_next_links_total",
            "GitHub `Link: rel=next` URLs off GITHUB_API_URL's origin, not followed (the listing stopped)",
            ["job"], registry=worker,
        )
        self.config_refresh_runs = Counter(
            "config_refresh_runs_total", "Config-refresh job runs, by result", ["result"], registry=worker,
        )
        self.config_refresh_repositories = Counter(
            "config_refresh_repositories_total",
            "Repositories the config-refresh job had the backend read, by result (valid, invalid, absent, "
            "unavailable: GitHub could not be asked, skipped: no longer installed)", ["result"], registry=worker,
        )
        self.reconcile_errors = Counter(
            "reconcile_errors_total",
            "Errors recorded by reconciliation runs (GitHub or backend refusals, parts deferred to keep the "
            "rate-limit reserve)", registry=worker,
        )


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry in Prometheus text format 0.0.4, with its Content-Type header value."""
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
