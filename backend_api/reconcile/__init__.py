"""Reconciliation with GitHub: repair what missed webhooks left out of date (docs/reconcile.md)."""
