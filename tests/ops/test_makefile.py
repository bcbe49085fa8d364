"""The Makefile's promises to a new user: `make run` installs only what running needs, `make test`
says in one line what the machine lacks, `make image` builds the image the chart and compose run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _make(*args: str, path: str | None = None, venv: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path} if path is not None else None
    extra = [f"VENV={venv}"] if venv is not None else []
    return subprocess.run([str(MAKE), "-s", "-C", str(REPO), *extra, *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def _bin_without_npm(tmp_path: Path, uname: str | None = None) -> str:
    """A PATH with the tools the recipe uses and no npm; `uname` faked to be another machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "id", "uname", "sed", "test", "command", "python3"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    if uname is not None:
        (bin_dir / "uname").unlink()
        fake = bin_dir / "uname"
        fake.write_text(f"#!/bin/sh\ncase \"$1\" in -s) echo {uname.split()[0]};; -m) echo {uname.split()[1]};; esac\n")
        fake.chmod(0o755)
    return str(bin_dir)


def test_run_installs_the_runtime_only(tmp_path: Path) -> None:
    plan = _make("-n", "run", venv=tmp_path / "venv")
    assert plan.returncode == 0, plan.stderr
    installs = [line for line in plan.stdout.splitlines() if "pip install" in line and "requirements.lock" in line]
    assert installs, plan.stdout
    assert all("[dev]" not in line for line in installs), installs
    assert "prgate up" in plan.stdout


def test_test_names_a_missing_npm_in_one_line(tmp_path: Path) -> None:
    result = _make("prereqs", "HELM_BIN=/nonexistent/helm", path=_bin_without_npm(tmp_path))
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len([line for line in lines if line.startswith("make test needs")]) == 1, lines
    assert "npm" in lines[0]


def test_test_names_the_wrong_machine(tmp_path: Path) -> None:
    result = _make("prereqs", "HELM_BIN=/nonexistent/helm", path=_bin_without_npm(tmp_path, uname="Darwin arm64"))
    assert result.returncode != 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("make test needs"))
    assert "Linux x86_64" in line
    assert "Darwin arm64" in line


def test_image_builds_the_versioned_tag() -> None:
    version = next(line.split('"')[1] for line in (REPO / "pyproject.toml").read_text().splitlines()
                   if line.startswith("version = "))
    assert _make("-n", "image").stdout.strip() == f"docker build -t prgate:{version} ."
    assert _make("-n", "image", "IMAGE=registry.example.com/prgate:1.2.3").stdout.strip() == (
        "docker build -t registry.example.com/prgate:1.2.3 ."
    )
