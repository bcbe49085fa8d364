"""Settings that cannot work together are refused when the service starts, not found out under load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend_api.settings import BackendSettings
from bot_worker.settings import BotSettings


def _backend(**env: str) -> BackendSettings:
    return BackendSettings.model_validate({**env})


def test_ingest_lanes_must_leave_pool_connections_for_the_rest() -> None:
    assert _backend(INGEST_LANES="9", DB_POOL_MAX="10").ingest_lanes == 9
    for lanes, pool in (("10", "10"), ("4", "4"), ("8", "2")):
        with pytest.raises(ValidationError, match=r"INGEST_LANES .* must be below DB_POOL_MAX"):
            _backend(INGEST_LANES=lanes, DB_POOL_MAX=pool)


def test_defaults_are_consistent() -> None:
    settings = _backend()
    assert settings.ingest_lanes < settings.db_pool_max


@pytest.mark.parametrize(("name", "value"), [("FORWARD_GROUP_MAX", "0"), ("FORWARD_GROUP_MAX", "101"),
                                             ("FORWARD_GROUP_LANES", "0"), ("FORWARD_GROUP_LANES", "17")])
def test_receiver_group_settings_are_bounded(name: str, value: str) -> None:
    with pytest.raises(ValidationError):
        BotSettings.model_validate({name: value})
    assert BotSettings.model_validate({}).forward_group_max == 50


def test_bitbucket_masters_are_a_comma_list_in_order_without_repeats() -> None:
    settings = BotSettings.model_validate({"BITBUCKET_WEBHOOK_SECRET": " new-master , old-master,new-master,, "})
    assert settings.bitbucket_masters() == [b"new-master", b"old-master"]
    assert BotSettings.model_validate({}).bitbucket_masters() == []
