"""The `prgate` command: one entry point for every component."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import os
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from prgate import gc_tuning
from prgate.cli_env import epilog, settings_variables
from prgate.embedded import (
    ENV_FILE,
    STACK_LOCK,
    EmbeddedServiceError,
    LockBusy,
    data_dir,
    data_dir_path,
    embedded_postgres,
    embedded_redis,
    exclusive,
    running_stack_env,
)
from prgate.lifeline import SupervisorGone, die_with_supervisor
from prgate.logs import setup_logging
from prgate.preflight import (
    ConfigError,
    bind_failure,
    check_encryption_key,
    check_ports,
    check_postgres,
    check_private_key_path,
    check_redis_url,
    describe_invalid,
    log_level,
)
from shared_contracts.keys import KEY_VARIABLES, Caller, InsecureSecret

log = logging.getLogger("prgate")


@contextmanager
def _service_url(variable: str, what: str, start: Callable[[Path], AbstractContextManager[str]],
                 subdir: str) -> Iterator[str]:
    """The URL in `variable` when set, else an embedded server for the life of the command."""
    url = os.environ.get(variable, "")
    if url:
        yield url
        return
    log.info("%s is not set: using an embedded %s", variable, what)
    with start(data_dir() / subdir) as url:
        yield url


def database_url() -> AbstractContextManager[str]:
    return _service_url("DATABASE_URL", "PostgreSQL", embedded_postgres, "postgres")


def redis_url() -> AbstractContextManager[str]:
    return _service_url("REDIS_URL", "Redis", embedded_redis, "redis")


def _tune_gc(threshold: int) -> Callable[[Any], Awaitable[None]]:
    async def on_startup(_: Any) -> None:
        gc_tuning.tune(threshold)

    return on_startup


def _refuse(component: str, exc: InsecureSecret) -> int:
    """One line on stderr, exit status 2: a service refuses to start with an unusable secret."""
    print(f"prgate {component}: refusing to start: {exc}", file=sys.stderr)
    return 2


def cmd_migrate(_: argparse.Namespace) -> int:
    from backend_api.store.migrate import apply_migrations

    with database_url() as url:
        check_postgres(url)
        applied = asyncio.run(apply_migrations(url))
    log.info("migrations applied" if applied else "schema is up to date", extra={"migration": applied})
    return 0


def cmd_backend(_: argparse.Namespace) -> int:
    from aiohttp import web

    from backend_api.app import create_app
    from backend_api.settings import BackendSettings

    try:
        BackendSettings().check_secrets()  # before an embedded PostgreSQL is started for nothing
    except InsecureSecret as exc:
        return _refuse("backend", exc)
    configured = BackendSettings()
    check_ports([("BACKEND_PORT", configured.host, configured.port),
                 ("BACKEND_INTERNAL_PORT", configured.host, configured.internal_port)])
    with database_url() as url:
        check_postgres(url)
        check_encryption_key(url, configured.encryption_keys)
        settings = configured.model_copy(update={"database_url": url})
        app = create_app(settings)
        app.on_startup.append(_tune_gc(settings.gc_gen0_threshold))  # after the app's resources are open
        # BACKEND_INTERNAL_PORT: a second listener, the only one that serves /internal/*.
        internal = (
            [socket.create_server((settings.host, settings.internal_port),
                                  family=socket.AF_INET6 if ":" in settings.host else socket.AF_INET)]
            if settings.internal_port else None
        )
        listening = {
            "path": f"http://{settings.host}:{settings.port}",
            **({"internal_port": settings.internal_port} if internal else {}),
        }
        # run_app "prints" once the database pool is open and every listener is bound: only then is it true.
        web.run_app(app, host=settings.host, port=settings.port, sock=internal, access_log=None,
                    print=lambda _: log.info("backend listening", extra=listening))
    return 0


def cmd_bot(_: argparse.Namespace) -> int:
    from aiohttp import web

    from bot_worker.settings import BotSettings
    from bot_worker.webhooks.app import create_receiver_app

    try:
        BotSettings().signing_key(Caller.RECEIVER)
    except InsecureSecret as exc:
        return _refuse("bot", exc)
    configured = BotSettings()
    check_ports([("BOT_PORT", configured.host, configured.port)])
    with redis_url() as url:
        check_redis_url(url)
        settings = configured.model_copy(update={"redis_url": url})
        app = create_receiver_app(settings)
        app.on_startup.append(_tune_gc(settings.gc_gen0_threshold))
        listening = {"path": f"http://{settings.host}:{settings.port}"}
        web.run_app(app, host=settings.host, port=settings.port, access_log=None,
                    print=lambda _: log.info("webhook receiver listening", extra=listening))
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    from bot_worker.settings import BotSettings
    from bot_worker.worker.main import run_worker

    try:
        BotSettings().signing_key(Caller.WORKER)
    except InsecureSecret as exc:
        return _refuse("worker", exc)
    configured = BotSettings()
    check_ports([("WORKER_METRICS_PORT", configured.host, configured.metrics_port)])
    with redis_url() as url:
        check_redis_url(url)
        settings = configured.model_copy(update={"redis_url": url})
        gc_tuning.tune(settings.gc_gen0_threshold)
        asyncio.run(run_worker(settings))
    return 0


def cmd_simulator(_: argparse.Namespace) -> int:
    from prgate.simulator import SimulatorConfig, run_simulator
    from prgate.simulator.bitbucket.config import BitbucketConfig
    from prgate.simulator_env import simulator_settings

    env = simulator_settings()
    check_ports([("SIMULATOR_PORT", env.host, env.port)])
    config = SimulatorConfig(
        app_id=env.app_id, app_public_key_pem=env.public_key_pem(), webhook_url=env.webhook_url,
        webhook_secret=env.webhook_secret.get_secret_value(), seed=env.seed,
        secondary_limit_per_minute=env.secondary_limit_per_minute, rate_limit_per_hour=env.rate_limit_per_hour,
        # The html_url of what it renders: its own pages (prgate/simulator/github/pages.py), not github.com's.
        html_base_url=f"http://{'127.0.0.1' if env.host in ('', '0.0.0.0', '::') else env.host}:{env.port}",
    )
    bitbucket = BitbucketConfig(
        seed=env.seed, rate_limit_per_hour=env.bitbucket_rate_limit_per_hour,
        oauth_client_id=env.bitbucket_oauth_client_id,
        oauth_client_secret=env.bitbucket_oauth_client_secret.get_secret_value(),
    )
    log.info("GitHub simulator listening (Bitbucket under /bitbucket)", extra={"path": f"http://{env.host}:{env.port}"})
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulator(env.host, env.port, config, bitbucket=bitbucket))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from backend_api.settings import BackendSettings
    from bot_worker.settings import BotSettings
    from prgate.supervisor import is_demo, planned_ports, run_stack

    directory = data_dir()
    env = dict(os.environ)
    demo = is_demo(env)
    if args.reset and not demo:  # before anything is locked, started or dropped
        raise ConfigError("--reset drops the demo's data, and this stack is not the demo (a GitHub App is "
                          "configured): leave --reset out")
    ports = planned_ports(env, workers=args.workers, demo=demo)
    with ExitStack() as stack:
        # First, before anything is started or dropped: one stack per checkout.
        try:
            stack.enter_context(exclusive(directory / STACK_LOCK, "prgate up, " + ", ".join(
                f"{variable} {port}" for variable, _, port in ports if port)))
        except LockBusy as busy:
            raise ConfigError(
                f"a prgate stack is already running in this checkout ({busy.holder}; data in {directory}): "
                "use it (`prgate reconcile` and the other subcommands find it through .data/env), stop it, "
                "or start another with its own PRGATE_DATA_DIR and ports"
            ) from None
        (directory / ENV_FILE).unlink(missing_ok=True)  # a killed stack's: its servers are gone
        BackendSettings()  # a wrong variable is said now, not by a child after the others started
        BotSettings()
        check_ports(ports)
        env["DATABASE_URL"] = stack.enter_context(database_url())
        env["REDIS_URL"] = stack.enter_context(redis_url())
        # The demo's own random keys: nothing published ever signs anything (docs/security.md).
        for variable in (*KEY_VARIABLES.values(), "SESSION_SECRET"):
            if not env.get(variable):
                env[variable] = secrets.token_hex(32)
                log.info("%s is not set: generated one for this run", variable)
        return run_stack(env, workers=args.workers, data_dir=directory, demo=demo, reset=args.reset)


def _package_version() -> str:
    try:
        return importlib.metadata.version("prgate")
    except importlib.metadata.PackageNotFoundError:  # run from a tree that was never installed
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    from backend_api.settings import BackendSettings
    from bot_worker.settings import BotSettings
    from prgate.simulator_env import SimulatorSettings

    parser = argparse.ArgumentParser(
        prog="prgate", description="prgate: gate pull requests from unverified contributors"
    )
    parser.add_argument("--version", action="version", version=f"prgate {_package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, description: str, variables: list[str], **kwargs: Any) -> argparse.ArgumentParser:
        # help= is the line in `prgate --help`; description= and the epilog are `prgate NAME --help`.
        return sub.add_parser(name, help=description, description=description,
                              epilog=epilog(variables, **kwargs), formatter_class=argparse.RawDescriptionHelpFormatter)

    command("migrate", "apply backend_api/migrations/ in order (an embedded PostgreSQL without DATABASE_URL)",
            ["DATABASE_URL"]).set_defaults(func=cmd_migrate)
    command("backend", "serve the backend API on BACKEND_PORT (the sole owner of PostgreSQL)",
            settings_variables(BackendSettings)).set_defaults(func=cmd_backend)
    command("bot", "serve the webhook receiver on BOT_PORT",
            settings_variables(BotSettings)).set_defaults(func=cmd_bot)
    command("worker", "run one worker replica: claim actions from the backend and write them to GitHub",
            settings_variables(BotSettings)).set_defaults(func=cmd_worker)
    command("simulator", "serve the GitHub simulator (REST API, OAuth and HTML pages) on SIMULATOR_PORT",
            settings_variables(SimulatorSettings)).set_defaults(func=cmd_simulator)
    up = command("up", "run the whole stack on this machine; without a GitHub App, the simulator and the demo",
                 settings_variables(BackendSettings, BotSettings, SimulatorSettings), stack_env=False,
                 note="Unset secrets and service URLs are generated or embedded for the run and written to "
                      ".data/env (0600) for the other subcommands.")
    up.add_argument("--workers", type=int, default=2, help="worker replicas to start")
    up.add_argument("--reset", action="store_true",
                    help="drop the demo's data (database and played-demo record) and play the demo from scratch")
    up.set_defaults(func=cmd_up)
    from prgate.github_app_cli import add_subcommand as add_github_app

    add_github_app(sub)  # prgate github-app create (docs/github-app.md)
    from prgate.reconcile_cli import add_subcommand as add_reconcile

    add_reconcile(sub)  # prgate reconcile [--installation ID] (docs/reconcile.md)
    from prgate.bitbucket_cli import add_subcommand as add_bitbucket

    add_bitbucket(sub)  # prgate bitbucket connect|disconnect|list (docs/bitbucket.md)
    from prgate.api_token_cli import add_subcommand as add_api_token

    add_api_token(sub)  # prgate api-token create|list|revoke (docs/api-tokens.md)
    return parser


def use_running_stack_env(command: str) -> None:
    """In a checkout where `prgate up` runs, what it generated (its URLs, internal keys, the demo
    App) fills the variables absent from the environment, so `prgate reconcile` and friends reach
    that stack; a variable in the environment always wins, even empty (set so on purpose). `up`
    itself never reads it (it writes it)."""
    if command == "up":
        return
    for variable, value in running_stack_env(data_dir_path()).items():
        os.environ.setdefault(variable, value)


def _fail(command: str, message: str) -> int:
    print(f"prgate {command}: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: str = args.command
    try:
        die_with_supervisor(os.environ)  # a child of `prgate up`: gone when it is
    except SupervisorGone as exc:
        return _fail(command, str(exc))
    use_running_stack_env(command)
    try:
        level = log_level(os.environ.get("LOG_LEVEL", "INFO"))
    except ConfigError as exc:
        return _fail(command, str(exc))
    try:
        setup_logging(f"prgate-{command}", level)
    except ValueError as exc:  # LOG_FORMAT names no format
        return _fail(command, str(exc))
    # Configuration mistakes are one line and exit status 2 (prgate/preflight.py); bugs keep their traceback.
    try:
        check_private_key_path(os.environ.get("GITHUB_PRIVATE_KEY", ""), os.environ.get("GITHUB_PRIVATE_KEY_PATH", ""))
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ConfigError, EmbeddedServiceError, InsecureSecret) as exc:
        return _fail(command, str(exc))
    except ValidationError as exc:
        return _fail(command, describe_invalid(exc))
    except SystemExit as exc:
        if not isinstance(exc.code, str):  # argparse's and our own exit statuses pass through
            raise
        return _fail(command, exc.code)  # a component's own refusal to start: the same one line, status 2
    except OSError as exc:
        message = bind_failure(exc)
        if message is None:
            raise
        return _fail(command, message)
    return result


if __name__ == "__main__":
    sys.exit(main())
