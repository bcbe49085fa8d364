"""What every benchmark's `main` does: its common flags, the command a report quotes, SIGTERM as Ctrl-C,
and printing (and with `--write-docs` publishing) the report."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from bench.harness import REPO_ROOT
from bench.harness.report import INTERPRETATION_PLACEHOLDER, rewrite_docs_section

T = TypeVar("T")

WAIT_QUIET_HELP = "first wait up to SECONDS for the machine to be idle (shared machines)"


def parser(
    prog: str, doc: str | None, *, quick: str, wait_quiet_default: float | None = 0.0,
    wait_quiet_help: str = WAIT_QUIET_HELP,
) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark takes: --quick, --write-docs, --wait-quiet."""
    out = argparse.ArgumentParser(prog=f"python -m {prog}", description=(doc or "").split("\n\n")[0].strip())
    out.add_argument("--quick", action="store_true", help=quick)
    out.add_argument("--write-docs", action="store_true", help="rewrite this section of docs/benchmarks.md")
    out.add_argument("--wait-quiet", type=float, metavar="SECONDS", default=wait_quiet_default, help=wait_quiet_help)
    return out


def add_stack_env(out: argparse.ArgumentParser) -> None:
    out.add_argument("--stack-env", action="append", default=[], metavar="KEY=VALUE",
                     help="extra environment for every stack process, e.g. DB_POOL_MAX=30 (repeatable)")


def stack_env(items: Sequence[str]) -> dict[str, str]:
    """--stack-env KEY=VALUE items as a mapping."""
    return dict(item.split("=", 1) for item in items)


def int_list(text: str) -> tuple[int, ...]:
    """A comma-separated list of whole numbers, e.g. `1,4,16`."""
    return tuple(int(x) for x in text.split(",") if x.strip())


def command_line(prog: str, argv: Sequence[str] | None) -> str:
    """The command a report quotes: how to measure the same again (without --write-docs)."""
    shown = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--write-docs"]
    return " ".join([f"python -m {prog}", *shown])


def run_cancellable(make: Callable[[], Coroutine[Any, Any, T]], interrupted: str) -> T | None:
    """asyncio.run(make()) with SIGTERM acting as Ctrl-C: the task is cancelled, so every `finally`
    (processes, databases) runs. None, after printing `interrupted`, when it was."""

    async def guarded() -> T:
        task = asyncio.current_task()
        if task is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await make()

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"\n{interrupted}", file=sys.stderr)
        return None


def publish(
    text: str, *, started: float, write_docs: bool, heading: str, tag: str,
    interpretation: str = INTERPRETATION_PLACEHOLDER, total_note: str = "",
) -> None:
    """Print the report and the run's total time; with --write-docs, rewrite its section of the docs."""
    print()
    print(text)
    print(f"\n(total {time.monotonic() - started:.0f} s{total_note})")
    if write_docs:
        path = rewrite_docs_section(heading, tag, text, interpretation)
        print(f"wrote {path.relative_to(REPO_ROOT)}")
