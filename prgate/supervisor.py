"""`prgate up`: run every component as a child process and stop them all together."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

log = logging.getLogger("prgate.up")
DEMO_OPERATOR = "demo-operator"


def _spawn(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log.info("starting %s", name)
    return subprocess.Popen([sys.executable, "-m", "prgate.cli", *args], env=env)


def demo_app_key(data_dir: Path) -> Path:
    """A throwaway GitHub App key for the simulator demo, made once and kept in the data dir."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = data_dir / "demo-app-key.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ))
        path.chmod(0o600)
    return path


def configure_demo(env: dict[str, str], data_dir: Path) -> None:
    """No GitHub App configured: point everything at the simulator with a generated App."""
    sim_port = env.setdefault("SIMULATOR_PORT", "8090")
    bot_port = env.setdefault("BOT_PORT", "8081")
    env["GITHUB_APP_ID"] = "1"
    env["GITHUB_PRIVATE_KEY_PATH"] = str(demo_app_key(data_dir))
    env.pop("GITHUB_PRIVATE_KEY", None)
    env.setdefault("GITHUB_WEBHOOK_SECRET", secrets.token_hex(20))
    env["GITHUB_API_URL"] = f"http://127.0.0.1:{sim_port}"
    env["SIMULATOR_WEBHOOK_URL"] = f"http://127.0.0.1:{bot_port}/webhooks/github"
    # GitHub sign-in (verification pages, owner API, dashboard) through the simulator's OAuth pages.
    env["GITHUB_WEB_URL"] = env["GITHUB_API_URL"]
    env["GITHUB_CLIENT_ID"] = "prgate-sim-oauth-client"
    env["GITHUB_CLIENT_SECRET"] = "prgate-sim-oauth-secret"
    # The dashboard is operator-only: in the demo, whoever signs in as demo-operator.
    env.setdefault("PRGATE_OPERATORS", DEMO_OPERATOR)


DEMO_DATABASE = "prgate_demo"


def fresh_demo_database(url: str) -> str:
    """The demo's data is made up: give every run a database of its own, so it replays the same way."""
    import asyncpg

    parts = urlsplit(url)
    demo_url = urlunsplit((parts.scheme, parts.netloc, f"/{DEMO_DATABASE}", parts.query, parts.fragment))

    async def recreate() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    return demo_url


async def _wait_ready(urls: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        for url in urls:
            while True:
                try:
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} did not become ready")
                await asyncio.sleep(0.2)


async def _play_demo(env: dict[str, str]) -> None:
    from prgate.demo import Demo

    backend = f"http://127.0.0.1:{env.get('BACKEND_PORT', '8080')}"
    simulator = f"http://127.0.0.1:{env['SIMULATOR_PORT']}"
    await _wait_ready([f"{backend}/readyz", f"{simulator}/_sim/health",
                       f"http://127.0.0.1:{env['BOT_PORT']}/healthz"])
    async with aiohttp.ClientSession() as session:
        await Demo(session, simulator, backend, lambda line: print(f"[demo] {line}", flush=True)).run()


def run_stack(env: dict[str, str], *, workers: int, data_dir: Path) -> int:
    demo = not (env.get("GITHUB_APP_ID") and (env.get("GITHUB_PRIVATE_KEY") or env.get("GITHUB_PRIVATE_KEY_PATH")))
    if demo:
        log.info("no GitHub App configured: starting the GitHub simulator and a demo scenario "
                 "(on a fresh database %s)", DEMO_DATABASE)
        configure_demo(env, data_dir)
        env["DATABASE_URL"] = fresh_demo_database(env["DATABASE_URL"])
    backend_port = env.get("BACKEND_PORT", "8080")
    env.setdefault("BACKEND_URL", f"http://127.0.0.1:{backend_port}")
    env.setdefault("BACKEND_PUBLIC_URL", f"http://127.0.0.1:{backend_port}")
    migrate = subprocess.run([sys.executable, "-m", "prgate.cli", "migrate"], env=env, check=False)
    if migrate.returncode != 0:
        log.error("migrations failed")
        return migrate.returncode
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        return _supervise(env, children, workers=workers, demo=demo)
    finally:
        # Whatever happened, nothing this command started outlives it.
        _stop_children(children)
        log.info("stopped")


def _stop_children(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for proc in children.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


def _supervise(
    env: dict[str, str], children: dict[str, subprocess.Popen[bytes]], *, workers: int, demo: bool
) -> int:
    if demo:
        children["simulator"] = _spawn("simulator", ["simulator"], env)
    children["backend"] = _spawn("backend", ["backend"], env)
    children["bot"] = _spawn("bot", ["bot"], env)
    base_metrics = int(env.get("WORKER_METRICS_PORT", "9101"))
    for i in range(workers):
        worker_env = {**env, "WORKER_ID": f"worker-{i + 1}", "WORKER_METRICS_PORT": str(base_metrics + i)}
        children[f"worker-{i + 1}"] = _spawn(f"worker-{i + 1}", ["worker"], worker_env)

    stopping = False
    demo_running = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if demo_running:
            raise KeyboardInterrupt  # abandon the scenario; run_stack's finally stops every child

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    if demo:
        demo_running = True
        try:
            asyncio.run(_play_demo(env))
        except Exception as exc:
            log.error("demo scenario failed: %s", exc)
        finally:
            demo_running = False
    backend = f"http://127.0.0.1:{env.get('BACKEND_PORT', '8080')}"
    print(f"\nprgate is up: backend {backend}  webhooks http://127.0.0.1:{env.get('BOT_PORT', '8081')}"
          "/webhooks/github  (Ctrl-C stops everything)", flush=True)
    if demo:
        print(f"dashboard: {backend}/dashboard (sign in with the simulated GitHub as {DEMO_OPERATOR})", flush=True)
    while not stopping:
        for name, proc in children.items():
            if proc.poll() is not None:
                log.error("%s exited with %s; stopping the stack", name, proc.returncode)
                code = proc.returncode or 1
                stopping = True
        time.sleep(0.2)
    return code



