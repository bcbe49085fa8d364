"""Benchmarks against the real backend and a real PostgreSQL.

`python -m bench` runs every benchmark; `python -m bench.<name>` runs one.
Each benchmark creates and drops its own database and never asserts: it
prints what it measured and, with `--write-docs`, rewrites its own section of
docs/benchmarks.md.
"""
