"""`prgate reconcile [--installation ID]`: one reconciliation run now, with the worker's settings.

It runs the worker's own job (`bot_worker.jobs.reconcile.reconcile`, under the same Redis lock, so
it never overlaps a scheduled run) and prints what was repaired and what went wrong. Exit status:
0 the run finished without errors, 1 it recorded errors, 2 it could not run (another run holds
the lock, or the configuration is incomplete). See docs/reconcile.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import TextIO

import aiohttp
from redis.asyncio import Redis

from backend_api.challenges.messages import plural
from bot_worker.backend.client import BackendClient
from bot_worker.jobs import reconcile as job
from bot_worker.providers.github.auth import InstallationTokens
from bot_worker.settings import BotSettings
from shared_contracts.keys import Caller, InsecureSecret
from shared_contracts.reconcile import ReconcileRunReport, Repair


def _subject(repair: Repair) -> str:
    where = repair.repo_full_name or (f"repository {repair.repo_id}" if repair.repo_id else "")
    if repair.pr_number is not None:
        where = f"{where}#{repair.pr_number}"
    return f"installation {repair.installation_id}" + (f" {where}" if where else "")


def format_report(report: ReconcileRunReport) -> str:
    scope = "every installation" if report.installation_id is None else f"installation {report.installation_id}"
    stats = report.stats
    lines = [
        f"reconciliation run {report.run_id} ({scope}): {plural(len(report.repairs), 'repair')}, "
        f"{plural(len(report.errors), 'error')}",
        f"  looked at {plural(stats.installations, 'installation')}, {plural(stats.repositories, 'repository')}, "
        f"{plural(stats.pull_requests, 'open pull request')}",
    ]
    if report.repairs:
        lines.append("repairs:")
        width = max(len(r.kind.value) for r in report.repairs)
        lines += [f"  {r.kind.value:<{width}}  {_subject(r)}: {r.detail}" for r in report.repairs]
    else:
        lines.append("nothing to repair: prgate agrees with GitHub")
    if report.errors:
        lines.append("errors:")
        for error in report.errors:
            where = " ".join(filter(None, [
                f"installation {error.installation_id}" if error.installation_id is not None else "",
                error.repo_full_name or "",
            ]))
            lines.append(f"  {where + ': ' if where else ''}{error.message}")
    return "\n".join(lines)


async def _run(settings: BotSettings, installation_id: int | None, out: TextIO) -> int:
    worker_id = f"cli-{socket.gethostname()}-{os.getpid()}"
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session, Redis.from_url(settings.redis_url) as redis:
        tokens = InstallationTokens(
            session, settings.github_api_url, settings.github_app_id, settings.private_key_pem()
        )
        backend = BackendClient(session, settings.backend_url, settings.signing_key(Caller.WORKER))
        ctx = job.build_context(settings, session, redis, tokens, worker_id=worker_id)
        report = await job.reconcile(ctx, backend, trigger="cli", installation_id=installation_id)
    if report is None:
        print("prgate reconcile: another reconciliation run is in progress; try again when it is done", file=out)
        return 2
    print(format_report(report), file=out)
    return 1 if report.errors else 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    settings = BotSettings()
    try:
        settings.signing_key(Caller.WORKER)
    except InsecureSecret as exc:
        print(f"prgate reconcile: {exc}", file=sys.stderr)
        return 2
    missing = [name for name, ok in (
        ("REDIS_URL", bool(settings.redis_url)),  # the lock is shared with the workers' Redis
        ("GITHUB_APP_ID", bool(settings.github_app_id)),
        ("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH", bool(settings.private_key_pem())),
    ) if not ok]
    if missing:
        print(f"prgate reconcile: set {', '.join(missing)} (the worker's settings)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(settings, args.installation, sys.stdout))
    except Exception as exc:  # what an operator needs is the reason, not a traceback
        print(f"prgate reconcile: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``prgate reconcile [--installation ID]``"""
    from prgate.cli_env import epilog, settings_variables

    about = "compare GitHub with prgate now, repair drift, print the repairs"
    parser = sub.add_parser("reconcile", help=about, description=about, epilog=epilog(settings_variables(BotSettings)),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--installation", type=int, metavar="ID", help="only this installation (default: all)")
    parser.set_defaults(func=cmd_reconcile)
