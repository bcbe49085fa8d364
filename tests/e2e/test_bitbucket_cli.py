"""`prgate bitbucket connect|disconnect|list` as real processes: the CLI, the backend and the simulator
(Bitbucket under /bitbucket). Only those three: connecting a workspace needs no receiver or worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from cryptography.fernet import Fernet

from provider_clients.bitbucket.hook_secret import bare_uuid, derive
from tests.conftest import INTERNAL_ENV
from tests.support.github_sim import APP_ID, app_keys
from tests.support.processes import Fleet, free_port, wait_http_ok

MASTER = "bb-master-" + "fedcba9876543210" * 2
_OURS = ("PRGATE_", "BITBUCKET_", "BACKEND_", "DATABASE_URL", "GITHUB_")


@dataclass
class Stack:
    fleet: Fleet
    env: dict[str, str]
    sim_url: str  # the simulator's Bitbucket, /bitbucket

    async def sim(self, path: str, body: dict[str, Any]) -> Any:
        async with aiohttp.ClientSession() as session, session.post(self.sim_url + path, json=body) as resp:
            assert resp.status in (200, 201), await resp.text()
            return await resp.json()

    async def hooks(self, workspace: str) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, \
                session.get(f"{self.sim_url}/_sim/workspaces/{workspace}/hooks") as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        return list(body["hooks"])

    def cli(self, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
        cli_env = {"PRGATE_ADMIN_SECRETS": self.env["PRGATE_ADMIN_SECRETS"], "BACKEND_URL": self.env["BACKEND_URL"],
                   "PRGATE_DATA_DIR": str(cwd / "data")}
        return subprocess.run([sys.executable, "-m", "prgate.cli", "bitbucket", *args], env={**base, **cli_env, **env},
                              cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
async def stack(db: asyncpg.Pool, database_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    fleet = Fleet()
    backend_port, sim_port = free_port(), free_port()
    key_path = tmp_path / "app.pem"
    key_path.write_text(app_keys().private_pem)
    env = {
        "DATABASE_URL": database_url, **INTERNAL_ENV, "BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": str(backend_port),
        "BACKEND_URL": f"http://127.0.0.1:{backend_port}", "SIMULATOR_PORT": str(sim_port),
        "GITHUB_APP_ID": str(APP_ID), "GITHUB_PRIVATE_KEY_PATH": str(key_path),
        "PRGATE_ENCRYPTION_KEY": Fernet.generate_key().decode(), "BITBUCKET_WEBHOOK_SECRET": MASTER,
        "BITBUCKET_API_URL": f"http://127.0.0.1:{sim_port}/bitbucket", "BOT_PUBLIC_URL": "https://bot.example.test",
        "PRGATE_DATA_DIR": str(tmp_path / "data"),
    }
    simulator = fleet.start("simulator", "simulator", env)
    backend = fleet.start("backend", "backend", env)
    try:
        await wait_http_ok(f"http://127.0.0.1:{sim_port}/bitbucket/_sim/health", simulator)
        await wait_http_ok(f"{env['BACKEND_URL']}/readyz", backend)
        yield Stack(fleet, env, f"http://127.0.0.1:{sim_port}/bitbucket")
    except BaseException:
        print(fleet.logs())
        raise
    finally:
        fleet.stop_all()


def _one_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = (result.stdout if status == 0 else result.stderr).strip().splitlines()
    assert len(lines) == 1, (result.stdout, result.stderr)
    return lines[0]


async def test_connect_again_list_and_disconnect_through_the_cli(stack: Stack, tmp_path: Path) -> None:
    workspace = await stack.sim("/_sim/workspaces", {"slug": "acme"})
    for slug in ("api", "web"):
        await stack.sim("/_sim/workspaces/acme/repositories", {"slug": slug})
    token = (await stack.sim("/_sim/workspaces/acme/tokens", {}))["token"]
    run = stack.cli

    line = _one_line(await asyncio.to_thread(run, ["connect", "acme"], tmp_path, BITBUCKET_ACCESS_TOKEN=token), 0)
    assert line.startswith("connected Bitbucket workspace acme (tenant 1")
    assert "2 repositories, webhook created" in line
    [hook] = await stack.hooks("acme")
    ws_uuid = bare_uuid(workspace["uuid"])
    assert ws_uuid is not None
    assert hook["url"] == f"https://bot.example.test/webhooks/bitbucket/{ws_uuid}"
    assert hook["secret"] == derive(MASTER.encode(), ws_uuid)

    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    line = _one_line(await asyncio.to_thread(run, ["connect", "acme", "--token-file", str(token_file)], tmp_path), 0)
    assert "webhook updated" in line
    assert len(await stack.hooks("acme")) == 1

    listing = await asyncio.to_thread(run, ["list"], tmp_path)
    assert listing.returncode == 0
    assert "acme" in listing.stdout
    assert "ACTIVE" in listing.stdout

    line = _one_line(await asyncio.to_thread(run, ["disconnect", "acme", "--purge"], tmp_path), 0)
    assert "webhook deleted" in line
    assert "purged" in line
    assert await stack.hooks("acme") == []
    logs = stack.fleet.logs()
    assert token not in logs
    assert derive(MASTER.encode(), ws_uuid) not in logs


async def test_cli_mistakes_are_one_line(stack: Stack, tmp_path: Path) -> None:
    await stack.sim("/_sim/workspaces", {"slug": "acme"})
    run = stack.cli
    line = _one_line(await asyncio.to_thread(run, ["connect", "acme"], tmp_path), 2)
    assert "BITBUCKET_ACCESS_TOKEN" in line
    line = _one_line(await asyncio.to_thread(run, ["connect", "acme", "--token-file", "/nonexistent"], tmp_path), 2)
    assert "/nonexistent" in line
    line = _one_line(await asyncio.to_thread(run, ["connect", "acme", "--token-file", "/nonexistent"], tmp_path,
                                             PRGATE_ADMIN_SECRETS=""), 2)
    assert "PRGATE_ADMIN_SECRETS" in line
    refused = await asyncio.to_thread(run, ["connect", "acme"], tmp_path, BITBUCKET_ACCESS_TOKEN="wrong-token")
    line = _one_line(refused, 1)
    assert "the token was refused" in line
    assert "wrong-token" not in refused.stderr + refused.stdout
    line = _one_line(await asyncio.to_thread(run, ["disconnect", "nowhere"], tmp_path), 1)
    assert "404" in line
    assert (await asyncio.to_thread(run, ["frobnicate"], tmp_path)).returncode == 2
