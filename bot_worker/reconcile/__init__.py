"""Reconciliation with GitHub: `github.py` reads it (paginated, rate-limit aware); the job that runs a
pass and sends the snapshots to the backend is `bot_worker/jobs/reconcile.py` (docs/reconcile.md)."""
