"""`prgate --version` and every subcommand's `--help`, through the installed CLI in a subprocess."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

from backend_api.settings import BackendSettings
from bot_worker.settings import BotSettings
from prgate.simulator_env import SimulatorSettings


def _prgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prgate.cli", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def _aliases(model: type) -> set[str]:
    return {field.alias for field in model.model_fields.values() if field.alias}


def test_version_is_the_installed_package_version() -> None:
    result = _prgate("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"prgate {importlib.metadata.version('prgate')}"


def test_the_top_level_help_gives_every_subcommand_a_description() -> None:
    out = _prgate("--help").stdout
    for name in ("migrate", "backend", "bot", "worker", "simulator", "up", "github-app", "reconcile"):
        line = next((line for line in out.splitlines() if line.strip().startswith(name + " ")), "")
        assert len(line.split()) > 3, f"{name} has no description in:\n{out}"


@pytest.mark.parametrize(("args", "models", "absent"), [
    (("backend",), (BackendSettings,), "SIMULATOR_PORT"),
    (("bot",), (BotSettings,), "SESSION_SECRET"),
    (("worker",), (BotSettings,), "SESSION_SECRET"),
    (("reconcile",), (BotSettings,), "SESSION_SECRET"),
    (("simulator",), (SimulatorSettings,), "DATABASE_URL"),
    (("up",), (BackendSettings, BotSettings, SimulatorSettings), None),
])
def test_a_subcommand_help_lists_exactly_the_variables_its_settings_read(
    args: tuple[str, ...], models: tuple[type, ...], absent: str | None
) -> None:
    result = _prgate(*args, "--help")
    assert result.returncode == 0, result.stderr
    head, _, epilog = result.stdout.partition("environment variables read:")
    assert epilog, result.stdout
    assert head.splitlines()[2].strip(), "no description under the usage line"
    listed = {word.strip(",.;") for word in epilog.split()}
    for model in models:
        missing = _aliases(model) - listed
        assert not missing, f"{args}: {missing} not listed"
    assert {"LOG_LEVEL", "LOG_FORMAT", "PRGATE_DATA_DIR"} <= listed
    if absent:
        assert absent not in listed


def test_github_app_create_lists_what_it_reads_outside_a_settings_model() -> None:
    epilog = _prgate("github-app", "create", "--help").stdout.partition("environment variables read:")[2]
    assert "PRGATE_ADMIN_SECRETS" in epilog
    assert "BACKEND_PUBLIC_URL" in epilog
