"""prgate/gc_tuning.py: what start-up built is frozen, the young generation is collected less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from prgate import gc_tuning


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_freezes_the_startup_heap_and_raises_the_young_threshold(restored_gc: None) -> None:
    built_at_startup = [{"n": n} for n in range(1000)]
    _, older, oldest = gc.get_threshold()
    gc_tuning.tune(20_000)
    assert gc.get_threshold() == (20_000, older, oldest)
    assert gc.get_freeze_count() >= len(built_at_startup)
    old_generation = {id(o) for o in gc.get_objects(generation=2)}
    assert not any(id(d) in old_generation for d in built_at_startup)  # frozen: no collection walks them


def test_zero_leaves_cpythons_defaults(restored_gc: None) -> None:
    before = gc.get_threshold()
    gc_tuning.tune(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_setting_is_read_by_both_services() -> None:
    from backend_api.settings import BackendSettings
    from bot_worker.settings import BotSettings

    assert BackendSettings.model_validate({}).gc_gen0_threshold == 20_000
    assert BotSettings.model_validate({"GC_GEN0_THRESHOLD": "0"}).gc_gen0_threshold == 0
