"""One action runner per provider: the executor looks an action's `provider` up here."""

from __future__ import annotations

from collections.abc import Iterable

from bot_worker.providers.base import ActionRunner
from shared_contracts.actions import Provider


class ProviderRegistry:
    """The runners this worker has; an action of any other provider fails with a clear reason."""

    def __init__(self, runners: Iterable[ActionRunner] = ()) -> None:
        self._runners: dict[Provider, ActionRunner] = {}
        for runner in runners:
            self.register(runner)

    def register(self, runner: ActionRunner) -> None:
        if runner.provider in self._runners:
            raise ValueError(f"a runner for {runner.provider.value} is already registered")
        self._runners[runner.provider] = runner

    def get(self, provider: Provider) -> ActionRunner | None:
        return self._runners.get(provider)

    def __contains__(self, provider: object) -> bool:
        return provider in self._runners
