"""The executor dispatches by `action.provider` through one registry (bot_worker/providers/registry.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from bot_worker.providers.github.auth import InstallationTokens
from bot_worker.providers.github.client import GitHubProvider
from bot_worker.providers.registry import ProviderRegistry
from bot_worker.worker.executor import Executor
from shared_contracts.actions import ClaimedAction, Outcome, Provider


def claimed(provider: str) -> ClaimedAction:
    return ClaimedAction.model_validate({
        "action_id": 1, "attempt": 1, "lease_expires_at": datetime.now(UTC) + timedelta(seconds=60),
        "provider": provider, "action_type": "UPSERT_PR_COMMENT", "installation_id": 1001, "repo_id": 5001,
        "repo_full_name": "octo-org/widgets", "github_pr_number": 7,
        "payload": {"marker": "<!-- prgate -->", "body": "<!-- prgate -->\nplease verify"},
    })


async def test_an_unregistered_provider_fails_with_a_clear_reason_and_nothing_is_called() -> None:
    # No runner for Bitbucket, and an empty registry: both refuse before any request or throttle.
    async with aiohttp.ClientSession() as session:
        tokens = InstallationTokens(session, "http://127.0.0.1:9", "1", "unused")
        github = GitHubProvider(session, "http://127.0.0.1:9", tokens)
        for executor, provider in ((Executor(ProviderRegistry([github]), None), "bitbucket"),
                                   (Executor(ProviderRegistry(), None), "github")):
            result = await executor.run(claimed(provider), time.monotonic() + 60)
            assert result.outcome is Outcome.FAILED
            assert result.error == f"provider {provider} is not supported by this worker"


async def test_one_runner_per_provider() -> None:
    async with aiohttp.ClientSession() as session:
        tokens = InstallationTokens(session, "http://127.0.0.1:9", "1", "unused")
        github = GitHubProvider(session, "http://127.0.0.1:9", tokens)
        registry = ProviderRegistry([github])
        assert registry.get(Provider.GITHUB) is github
        assert Provider.BITBUCKET not in registry
        with pytest.raises(ValueError, match="already registered"):
            registry.register(github)
