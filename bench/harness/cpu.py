"""CPU accounting from Linux /proc (zeros elsewhere): one process, groups of processes, the whole machine.

Three meters for three shapes of measurement:

* `CpuMeter`: this process, one backend process and a set of PostgreSQL processes (bench.claim,
  bench.contention, bench.ingest);
* `GroupMeter`: named groups of pids, sampled while polling so that a pid that exits early still
  counts (bench.outbox);
* `PhaseMeter`: every group of a stack and the whole machine, with the busiest processes that are
  not ours (bench.e2e).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


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


def pids_cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    return {pid: process_cpu_seconds(pid) for pid in pids if _stat_fields(pid) is not None}


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy (not idle, not iowait) since boot, all cores."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def machine_stat() -> tuple[int, int, int]:
    """(busy, total, irq + softirq) jiffies of all CPUs from /proc/stat; zeros where there is none."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    irq = sum(fields[5:7]) if len(fields) > 6 else 0
    return total - idle, total, irq


def all_processes() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds) of every process on the machine (Linux /proc; empty elsewhere)."""
    out: dict[int, tuple[str, float]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.find("(") + 1 : raw.rfind(")")]
        fields = raw[raw.rfind(")") + 2 :].split()
        out[int(entry)] = (comm, (int(fields[11]) + int(fields[12])) / _CLK_TCK)
    return out


def redis_server_pid(info: dict[str, Any]) -> int | None:
    """redis-server's pid from INFO server, when it runs on this machine."""
    pid = info.get("process_id")
    return int(pid) if pid is not None and Path(f"/proc/{pid}").exists() else None


# --- this process, a backend, PostgreSQL --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds spent during one measurement, by side; `other` is everything else on the machine."""

    client: float
    backend: float
    postgres: float
    other: float


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


# --- named groups of processes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupSample:
    """CPU-seconds spent during one cell, by side; `other` is the rest of the machine."""

    workers: float = 0.0
    backend: float = 0.0
    postgres: float = 0.0
    redis: float = 0.0
    other: float = 0.0

    @property
    def ours(self) -> float:
        return self.workers + self.backend + self.postgres + self.redis


class GroupMeter:
    """CPU of groups of processes between start() and stop(), from /proc.

    sample() (called while polling) remembers each pid's latest reading, so a process that
    exits before stop() (an arq burst worker) still counts up to its last sample.
    """

    def __init__(self, groups: dict[str, Iterable[int]]) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._machine = 0.0

    def _pids(self) -> set[int]:
        return {pid for pids in self.groups.values() for pid in pids}

    def start(self) -> None:
        self._machine = machine_busy_seconds()
        self._first = pids_cpu_seconds(self._pids())
        self._last = dict(self._first)

    def sample(self) -> None:
        self._last.update(pids_cpu_seconds(self._first))

    def stop(self) -> GroupSample:
        self.sample()
        machine = machine_busy_seconds() - self._machine

        def used(name: str) -> float:
            return sum(self._last[p] - self._first[p] for p in self.groups.get(name, ()) if p in self._first)

        cpu = {name: used(name) for name in ("workers", "backend", "postgres", "redis")}
        return GroupSample(**cpu, other=max(0.0, machine - sum(cpu.values())))


# --- a stack's components and the whole machine, over one phase -----------------------------------------


@dataclass
class CpuSnapshot:
    at: float
    per_pid: dict[int, float]
    machine_busy: int
    machine_total: int
    machine_irq: int
    everyone: dict[int, tuple[str, float]]


@dataclass
class CpuUse:
    """CPU-seconds per wall-second (1.0 = one core) by component during one phase."""

    seconds: float
    groups: dict[str, float]
    machine: float  # all processes on the machine, 1.0 = one core
    cores: int
    top_others: list[tuple[str, float]]  # "comm[pid]", cores: the busiest processes that are not ours
    irq: float  # hardware + soft interrupt time of the machine (loopback TCP is largely softirq)
    other_procs: float  # processes that are not ours and lived through the phase

    @property
    def ours(self) -> float:
        return sum(self.groups.values())

    @property
    def foreign(self) -> float:
        """Cores that went to anything but this benchmark's processes and the kernel's interrupt work."""
        return max(0.0, self.machine - self.ours - self.irq)


class PhaseMeter:
    """CPU by group between a snapshot and `measure`; `pids` names the group of each of our pids, asked
    afresh at each end (pool connections come and go; a pid born during the phase counts from zero)."""

    def __init__(self, groups: Sequence[str], pids: Callable[[], Awaitable[dict[int, str]]]) -> None:
        self.groups = tuple(groups)
        self._pids = pids

    async def snapshot(self) -> tuple[CpuSnapshot, dict[int, str]]:
        groups = await self._pids()
        busy, total, irq = machine_stat()
        everyone = all_processes()
        per_pid = {pid: (os.times().user + os.times().system) if pid == os.getpid() else process_cpu_seconds(pid)
                   for pid in groups}
        return CpuSnapshot(time.monotonic(), per_pid, busy, total, irq, everyone), groups

    async def measure(self, before: CpuSnapshot) -> CpuUse:
        after, groups = await self.snapshot()
        seconds = max(1e-9, after.at - before.at)
        used: dict[str, float] = dict.fromkeys(self.groups, 0.0)
        for pid, group in groups.items():
            if group in used:
                used[group] += max(0.0, after.per_pid.get(pid, 0.0) - before.per_pid.get(pid, 0.0))
        cores = os.cpu_count() or 1
        d_total = after.machine_total - before.machine_total
        machine = cores * (after.machine_busy - before.machine_busy) / d_total if d_total > 0 else 0.0
        irq = cores * (after.machine_irq - before.machine_irq) / d_total if d_total > 0 else 0.0
        procs = sum(max(0.0, cpu - before.everyone.get(pid, (comm, cpu))[1])
                    for pid, (comm, cpu) in after.everyone.items() if pid not in groups) / seconds
        others = sorted(
            ((f"{comm}[{pid}]", (cpu - before.everyone[pid][1]) / seconds)
             for pid, (comm, cpu) in after.everyone.items()
             if pid not in groups and pid in before.everyone and cpu > before.everyone[pid][1]),
            key=lambda x: -x[1],
        )
        return CpuUse(seconds, {k: v / seconds for k, v in used.items()}, machine, cores, others[:4], irq, procs)
