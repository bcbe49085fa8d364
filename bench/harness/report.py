"""The report: aligned markdown tables, the machine and commit measured, and the docs file's sections."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench.harness import REPO_ROOT

DOCS_FILE = REPO_ROOT / "docs" / "benchmarks.md"

INTERPRETATION_PLACEHOLDER = """### Interpretation

(Hand-written, kept across `--write-docs` runs: update it when the numbers above move.)
"""


# --- what was measured, where -----------------------------------------------------------------------


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


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def git_state() -> str:
    """The commit measured, and whether the work tree had uncommitted changes to code the stack runs."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "backend_api", "bot_worker", "prgate",
             "shared_contracts"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "an unknown commit"
    if not head:
        return "an unknown commit"
    return f"commit {head}" + (" + uncommitted changes" if dirty else "")


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
