"""Reconciliation with GitHub: `github.py` reads it (paginated, rate-limit aware), `job.py` runs a
pass and sends the snapshots to the backend, which repairs (docs/reconcile.md)."""
