"""py-spy on every process of a stack during one phase, summarised as top self and inclusive time."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from bench.harness.stack import StackProcess


class Profiler:
    """py-spy record on every stack process during one phase (raw collapsed stacks, summarised)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self._running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self._logs: list[IO[bytes]] = []

    def available(self) -> bool:
        return Path(self.exe).exists()

    def start(self, procs: Sequence[StackProcess], seconds: float) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for proc in procs:
            if not proc.alive():
                continue
            out = self.out_dir / f"{proc.name}.txt"
            log = (self.out_dir / f"{proc.name}.py-spy.log").open("wb")
            self._logs.append(log)
            popen = subprocess.Popen(
                [self.exe, "record", "--pid", str(proc.pid), "--duration", str(max(1, round(seconds))),
                 "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=log,
            )
            self._running.append((proc.name, popen, out))

    def finish(self) -> None:
        for _, popen, _ in self._running:
            try:
                popen.wait(30)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)
        for log in self._logs:
            log.close()
        self._logs.clear()

    def summaries(self, top: int = 12) -> list[str]:
        lines: list[str] = []
        for name, _, out in self._running:
            if not out.exists():
                lines.append(f"{name}: no profile ({out.with_suffix('.py-spy.log')})")
                continue
            self_time: Counter[str] = Counter()
            inclusive: Counter[str] = Counter()
            total = 0
            for line in out.read_text(errors="replace").splitlines():
                stack, _, count = line.rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                n = int(count)
                total += n
                frames = stack.split(";")
                self_time[frames[-1]] += n
                for frame in set(frames):
                    inclusive[frame] += n
            if not total:
                lines.append(f"{name}: empty profile")
                continue
            lines.append(f"{name} ({total} samples, {out}): top self time")
            lines += [f"    {100 * n / total:5.1f}%  {frame}" for frame, n in self_time.most_common(top)]
            lines.append(f"{name}: top inclusive time")
            # Frames on (nearly) every stack — the event loop, main() — say nothing: skip them.
            lines += [f"    {100 * n / total:5.1f}%  {frame}"
                      for frame, n in [(f, n) for f, n in inclusive.most_common() if n < 0.6 * total][:top]]
        return lines

