"""`prgate up` as root on a PATH without /usr/sbin: one line saying what is wrong, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prgate.embedded import PGSERVER_SYSTEM_USER, _user_exists, postgres_preflight


def test_root_without_useradd_on_path_is_refused_with_the_fix() -> None:
    problem = postgres_preflight(0, "/nonexistent", user_exists=lambda _: False)
    assert problem is not None
    assert "useradd" in problem
    assert "/usr/sbin" in problem
    assert "DATABASE_URL" in problem


def test_no_refusal_when_not_root_user_exists_or_useradd_found(tmp_path: Path) -> None:
    assert postgres_preflight(1000, "/nonexistent", user_exists=lambda _: False) is None
    assert postgres_preflight(0, "/nonexistent", user_exists=lambda _: True) is None
    useradd = tmp_path / "useradd"
    useradd.write_text("#!/bin/sh\n")
    useradd.chmod(0o755)
    assert postgres_preflight(0, str(tmp_path), user_exists=lambda _: False) is None


def test_prgate_migrate_as_root_without_sbin_says_one_line(tmp_path: Path) -> None:
    # Judged when the test runs, not when it is collected: any embedded start as root (a demo, another
    # test) creates pgserver's user, after which useradd is never needed again.
    if os.geteuid() != 0 or _user_exists(PGSERVER_SYSTEM_USER):
        pytest.skip("needs root on a machine where pgserver has not created its user yet")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env["PATH"] = str(Path(sys.executable).parent)  # the venv's bin only: no /usr/sbin
    env["PRGATE_DATA_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "prgate.cli", "migrate"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    line = [ln for ln in done.stderr.splitlines() if "useradd" in ln]
    assert len(line) == 1
    assert line[0].startswith("prgate migrate: ")
