"""Find real PostgreSQL and Redis for tests: env URL, else the local service, else an embedded one."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/{db}"


def xdist_index() -> int:
    """Which of pytest-xdist's processes this is (0 without xdist): each gets a Redis database of its own,
    as it gets a PostgreSQL database of its own, so queues, locks and throttles never meet."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def postgres_admin_url(stack: ExitStack) -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
    elif _reachable("127.0.0.1", 5432):
        yield LOCAL_POSTGRES
    else:
        from prgate.embedded import embedded_postgres

        directory = Path(tempfile.mkdtemp(prefix="prgate-test-pg-"))
        yield stack.enter_context(embedded_postgres(directory))


@contextmanager
def redis_base_url(stack: ExitStack) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
    elif _reachable("127.0.0.1", 6379):
        yield LOCAL_REDIS.format(db=xdist_index())
    else:
        from prgate.embedded import embedded_redis

        directory = Path(tempfile.mkdtemp(prefix="prgate-test-redis-"))
        yield stack.enter_context(embedded_redis(directory))


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database (handles unix-socket query URLs)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))
