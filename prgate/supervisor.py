"""`prgate up`: run every component as a child process and stop them all together."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from prgate.embedded import ENV_FILE, read_env_file, write_env_file
from prgate.lifeline import child_env

log = logging.getLogger("prgate.up")
DEMO_OPERATOR = "demo-operator"


def _spawn(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log.info("starting %s", name)
    # Its own session: a terminal's Ctrl-C reaches only this supervisor, which stops the children in
    # order (they printed tracebacks when interrupted together); prgate/lifeline.py makes each exit
    # when this process dies, SIGKILL included.
    return subprocess.Popen([sys.executable, "-m", "prgate.cli", *args], env=child_env(env), start_new_session=True)


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


DEMO_SECRETS = "demo-secrets"  # in the data dir: the demo's Bitbucket keys, kept across runs


def demo_bitbucket_secrets(data_dir: Path) -> dict[str, str]:
    """The demo's credential key and hook master, generated once and kept in the data dir (0600, as
    `.data/env`). Kept, not made per run: the workspace token the demo connects is stored encrypted
    in the kept database, and the backend refuses to start when no key opens it."""
    from cryptography.fernet import Fernet

    path = data_dir / DEMO_SECRETS
    kept = read_env_file(path) if path.exists() else {}
    values = {
        "PRGATE_ENCRYPTION_KEY": kept.get("PRGATE_ENCRYPTION_KEY") or Fernet.generate_key().decode(),
        "BITBUCKET_WEBHOOK_SECRET": kept.get("BITBUCKET_WEBHOOK_SECRET") or secrets.token_hex(32),
    }
    if values != kept:
        write_env_file(path, values, header="The demo's Bitbucket keys, made once by `prgate up` and kept "
                       "(the demo database holds a token encrypted with the first). Do not edit.")
    return values


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
    # "Sign in with Bitbucket" through the simulator's OAuth consumer (served under /bitbucket); the
    # simulator reads the same two names, so both sides agree on the consumer.
    env["BITBUCKET_API_URL"] = env["BITBUCKET_WEB_URL"] = f"{env['GITHUB_API_URL']}/bitbucket"
    env.setdefault("BITBUCKET_OAUTH_CLIENT_ID", "prgate-sim-bitbucket-key")
    env.setdefault("BITBUCKET_OAUTH_CLIENT_SECRET", "prgate-sim-bitbucket-secret")
    # The demo's workspace hook (registered when it connects) points at this stack's receiver.
    env.setdefault("BOT_PUBLIC_URL", f"http://127.0.0.1:{bot_port}")
    for variable, value in demo_bitbucket_secrets(data_dir).items():
        if not env.get(variable):  # the shell's own wins, as for every generated key
            env[variable] = value
    # The dashboard is operator-only: in the demo, whoever signs in as demo-operator.
    env.setdefault("PRGATE_OPERATORS", DEMO_OPERATOR)


DEMO_DATABASE = "prgate_demo"
DEMO_PLAYS = "demo-plays"  # in the data dir: how many times the scripted demo started on this data


def demo_database(url: str, *, reset: bool) -> str:
    """The demo's own database on the server at `url`, created the first time and kept across runs
    (what you tried yourself survives a restart); `reset` drops it first."""
    import asyncpg

    parts = urlsplit(url)
    demo_url = urlunsplit((parts.scheme, parts.netloc, f"/{DEMO_DATABASE}", parts.query, parts.fragment))

    async def ensure() -> None:
        conn = await asyncpg.connect(url)
        try:
            if reset:
                await conn.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DEMO_DATABASE):
                await conn.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
        finally:
            await conn.close()

    asyncio.run(ensure())
    return demo_url


def demo_plays(data_dir: Path, *, reset: bool) -> int:
    """How many times the demo started on the data kept in `data_dir` (0 after a reset)."""
    path = data_dir / DEMO_PLAYS
    if reset:
        path.unlink(missing_ok=True)
    try:
        return int(path.read_text().strip() or 0)
    except FileNotFoundError:
        return 0
    except ValueError:
        log.warning("%s does not hold a number: counting the demo's earlier plays as 0", path)
        return 0


def record_demo_play(data_dir: Path, plays: int) -> None:
    # Before the first pull request opens: an interrupted play has used its numbers too.
    (data_dir / DEMO_PLAYS).write_text(f"{plays + 1}\n")


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


async def _play_demo(env: dict[str, str], data_dir: Path, plays: int) -> None:
    from prgate.demo import Demo

    backend = f"http://127.0.0.1:{env.get('BACKEND_PORT', '8080')}"
    simulator = f"http://127.0.0.1:{env['SIMULATOR_PORT']}"
    await _wait_ready([f"{backend}/readyz", f"{simulator}/_sim/health",
                       f"http://127.0.0.1:{env['BOT_PORT']}/healthz"])
    record_demo_play(data_dir, plays)
    async with aiohttp.ClientSession() as session:
        # The stack's own admin key (generated for the run when the shell has none): the demo connects
        # its Bitbucket workspace as an operator's `prgate bitbucket connect` would.
        admin_key = env["PRGATE_ADMIN_SECRETS"].split(",")[0].strip()
        await Demo(session, simulator, backend, lambda line: print(f"[demo] {line}", flush=True), play=plays,
                   admin_key=admin_key).run()


def is_demo(env: dict[str, str]) -> bool:
    """No GitHub App configured: the stack plays the demo against the simulator."""
    return not (env.get("GITHUB_APP_ID") and (env.get("GITHUB_PRIVATE_KEY") or env.get("GITHUB_PRIVATE_KEY_PATH")))


def _port(env: dict[str, str], variable: str, default: int) -> int:
    value = env.get(variable) or str(default)
    if not value.isdigit():
        from prgate.preflight import ConfigError

        raise ConfigError(f"{variable}={value!r} is not a port number: set it to a free port (1-65535)")
    return int(value)


def planned_ports(env: dict[str, str], *, workers: int, demo: bool) -> list[tuple[str, str, int]]:
    """`(variable, host, port)` of every listener `prgate up` will start, as its children read them."""
    bot_host = env.get("BOT_HOST") or "0.0.0.0"
    ports = [
        ("BACKEND_PORT", env.get("BACKEND_HOST") or "0.0.0.0", _port(env, "BACKEND_PORT", 8080)),
        ("BACKEND_INTERNAL_PORT", env.get("BACKEND_HOST") or "0.0.0.0", _port(env, "BACKEND_INTERNAL_PORT", 0)),
        ("BOT_PORT", bot_host, _port(env, "BOT_PORT", 8081)),
    ]
    if demo:
        ports.append(("SIMULATOR_PORT", env.get("SIMULATOR_HOST") or "127.0.0.1", _port(env, "SIMULATOR_PORT", 8090)))
    base = _port(env, "WORKER_METRICS_PORT", 9101)
    if base:
        ports += [(f"WORKER_METRICS_PORT (+{i}, worker-{i + 1})" if i else "WORKER_METRICS_PORT", bot_host, base + i)
                  for i in range(workers)]
    return ports


def stack_env_file(env: Mapping[str, str], outer: Mapping[str, str]) -> dict[str, str]:
    """What this stack set or generated that the shell it was started from does not know: enough
    for any subcommand run in the checkout to reach it (`.data/env`)."""
    return {key: value for key, value in sorted(env.items()) if outer.get(key) != value}


def run_stack(env: dict[str, str], *, workers: int, data_dir: Path, demo: bool, reset: bool = False) -> int:
    plays = 0
    if demo:
        plays = demo_plays(data_dir, reset=reset)
        log.info("no GitHub App configured: starting the GitHub and Bitbucket simulator and a demo scenario "
                 "(database %s, %s)",
                 DEMO_DATABASE, "reset" if reset else "kept across runs; `prgate up --reset` starts from scratch")
        configure_demo(env, data_dir)
        env["DATABASE_URL"] = demo_database(env["DATABASE_URL"], reset=reset)
    backend_port = env.get("BACKEND_PORT", "8080")
    env.setdefault("BACKEND_URL", f"http://127.0.0.1:{backend_port}")
    env.setdefault("BACKEND_PUBLIC_URL", f"http://127.0.0.1:{backend_port}")
    migrate = subprocess.run([sys.executable, "-m", "prgate.cli", "migrate"], env=child_env(env), check=False,
                             start_new_session=True)
    if migrate.returncode != 0:
        log.error("migrations failed")
        return migrate.returncode
    env_file = data_dir / ENV_FILE
    # Before any child starts: from now on `prgate reconcile` in this checkout reaches this stack.
    write_env_file(env_file, stack_env_file(env, os.environ))
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        return _supervise(env, children, workers=workers, demo=demo, data_dir=data_dir, plays=plays)
    finally:
        # Whatever happened, nothing this command started outlives it.
        _stop_children(children)
        env_file.unlink(missing_ok=True)
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
    env: dict[str, str], children: dict[str, subprocess.Popen[bytes]], *, workers: int, demo: bool,
    data_dir: Path, plays: int,
) -> int:
    if demo:
        children["simulator"] = _spawn("simulator", ["simulator"], env)
    children["backend"] = _spawn("backend", ["backend"], env)
    children["bot"] = _spawn("bot", ["bot"], env)
    # Workers claim from the backend at once: started before it answers, each would first log
    # "claim failed (cannot connect)" lines that read like a fault. A backend that never answers is
    # reported below, with whichever component exited.
    try:
        asyncio.run(_wait_ready([f"http://127.0.0.1:{env.get('BACKEND_PORT', '8080')}/readyz"]))
    except TimeoutError as exc:
        log.error("%s; starting the workers anyway", exc)
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
            asyncio.run(_play_demo(env, data_dir, plays))
        except Exception as exc:
            log.error("demo scenario failed: %s", exc)
        finally:
            demo_running = False
    exited = {name: proc.returncode for name, proc in children.items() if proc.poll() is not None}
    if exited and not stopping:
        # Never "up" with a component down: say which, and stop the rest.
        log.error("not up: %s exited; stopping the stack",
                  ", ".join(f"{name} (status {code})" for name, code in exited.items()))
        return next(iter(exited.values())) or 1
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



