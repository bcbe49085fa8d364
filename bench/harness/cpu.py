"""Helpers shared by benchmarks: a throwaway database, CPU accounting, tables, the docs file."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from backend_api.store.migrate import apply_migrations
from tests.support.services import postgres_admin_url, with_database

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS_FILE = REPO_ROOT / "docs" / "benchmarks.md"
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --- database -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenchDatabase:
    url: str
    name: str
    server_version: str


@contextlib.asynccontextmanager
async def bench_database(stack: ExitStack, prefix: str = "prgate_bench") -> AsyncIterator[BenchDatabase]:
    """A fresh, migrated database on the PostgreSQL the tests would use; dropped on exit."""
    admin = stack.enter_context(postgres_admin_url(stack))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        version = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    try:
        url = with_database(admin, name)
        await apply_migrations(url)
        yield BenchDatabase(url=url, name=name, server_version=version)
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- CPU accounting (Linux /proc; zeros elsewhere) ------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), in seconds."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy (not idle, not iowait) since boot, all cores."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds spent during one measurement, by side; `other` is everything else on the machine."""

    client: float
    backend: float
    postgres: float
    other: float


def pids_cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    return {pid: process_cpu_seconds(pid) for pid in pids if _stat_fields(pid) is not None}


class CpuMeter:
    """CPU used by this process, a backend process (when separate) and a set of PostgreSQL processes.

    PostgreSQL pids are taken from pg_stat_activity by the caller: the bench database's backends
    plus the server's auxiliary processes (WAL writer, checkpointer, ...). A pid that exits during
    the measurement drops out, so keep connections open across it.
    """

    def __init__(self, backend_pid: int | None, postgres_pids: Iterable[int]) -> None:
        self.backend_pid = backend_pid
        self.postgres_pids = list(postgres_pids)
        self._client = 0.0
        self._backend = 0.0
        self._pg: dict[int, float] = {}
        self._machine = 0.0

    def start(self) -> None:
        self._machine = machine_busy_seconds()
        times = os.times()
        self._client = times.user + times.system
        self._backend = process_cpu_seconds(self.backend_pid) if self.backend_pid else 0.0
        self._pg = pids_cpu_seconds(self.postgres_pids)

    def stop(self) -> CpuSample:
        times = os.times()
        pg_now = pids_cpu_seconds(self.postgres_pids)
        machine = machine_busy_seconds() - self._machine
        client = times.user + times.system - self._client
        backend = (process_cpu_seconds(self.backend_pid) - self._backend) if self.backend_pid else 0.0
        postgres = sum(pg_now[pid] - before for pid, before in self._pg.items() if pid in pg_now)
        return CpuSample(client, backend, postgres, other=max(0.0, machine - client - backend - postgres))


# --- machine description --------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_line(server_version: str) -> str:
    return (
        f"nproc {os.cpu_count()} ({cpu_model()}), Python {platform.python_version()}, "
        f"PostgreSQL {server_version}, {platform.system()} {platform.release()}"
    )


# --- output ---------------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """An aligned markdown table; `right[i]` right-aligns column i."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right, strict=True))
    return "\n".join([line(header), rule + "|", *(line(r) for r in rows)])


def rewrite_docs_section(heading: str, tag: str, generated: str, interpretation: str) -> Path:
    """Replace the generated block of `heading`'s section in docs/benchmarks.md.

    The block between the `tag` markers is rewritten on every run; anything else in the
    section (the hand-written interpretation) is kept. A missing file or section is created,
    with `interpretation` as a starting text.
    """
    begin = f"<!-- BEGIN {tag}: generated, rewritten by `python -m {tag} --write-docs` -->"
    end = f"<!-- END {tag} -->"
    block = f"{begin}\n{generated.strip()}\n{end}"
    text = DOCS_FILE.read_text() if DOCS_FILE.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(f"<!-- BEGIN {tag}") + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        section = f"## {heading}\n\n{block}\n\n{interpretation.strip()}\n"
        text = text.rstrip("\n") + "\n\n" + section
    DOCS_FILE.parent.mkdir(parents=True, exist_ok=True)
    DOCS_FILE.write_text(text)
    return DOCS_FILE
