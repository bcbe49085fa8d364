"""The JSON log formatter: the common field set, in a fixed order, and no secret values ever."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from prgate.logs import BASE_FIELDS, REDACTED, JsonFormatter, is_secret_key, setup_logging

CANARY = "s3cr3t-canary-value"


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("prgate-test"))
    logger = logging.getLogger(f"prgate.test.logs.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, stream
    logger.handlers.clear()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_base_fields_always_come_first(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.warning("claim failed (%s)", "boom")
    [entry] = lines(stream)
    assert list(entry) == list(BASE_FIELDS)
    assert entry["level"] == "warning"
    assert entry["component"] == "prgate-test"
    assert entry["logger"] == logger.name
    assert entry["msg"] == "claim failed (boom)"
    assert entry["ts"].endswith("Z")
    assert len(entry["ts"]) == len("2024-01-01T00:00:00.000Z")


def test_correlation_fields_in_a_fixed_order_then_the_rest(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.info("action done", extra={"repo_id": 5, "scope": "installation", "action_id": 42, "attempt": 2,
                                      "installation_id": 1001, "delivery_id": "d-1"})
    logger.info("again", extra={"delivery_id": "d-2", "action_id": 43, "installation_id": 7, "scope": "repo"})
    first, second = lines(stream)
    assert list(first) == [*BASE_FIELDS, "delivery_id", "installation_id", "action_id", "scope", "attempt", "repo_id"]
    assert list(second)[:9] == [*BASE_FIELDS, "delivery_id", "installation_id", "action_id", "scope"]
    assert (first["delivery_id"], first["installation_id"], first["action_id"]) == ("d-1", 1001, 42)


def test_an_extra_never_replaces_a_base_field(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.info("real message", extra={"level": "fake", "ts": "yesterday", "component": "other"})
    [entry] = lines(stream)
    assert (entry["level"], entry["component"], entry["msg"]) == ("info", "prgate-test", "real message")
    assert (entry["extra_level"], entry["extra_ts"], entry["extra_component"]) == ("fake", "yesterday", "other")


@pytest.mark.parametrize(
    "key",
    ["token", "installation_token", "access_token", "secret", "client_secret", "GITHUB_WEBHOOK_SECRET",
     "private_key", "private_key_pem", "authorization", "Authorization", "password", "db_password",
     "session_cookie", "signature", "x-hub-signature-256"],
)
def test_secret_bearing_extras_never_carry_their_value(capture: tuple[logging.Logger, io.StringIO], key: str) -> None:
    logger, stream = capture
    logger.info("with a secret", extra={key: CANARY, "installation_id": 1})
    output = stream.getvalue()
    assert CANARY not in output
    [entry] = lines(stream)
    assert entry[key] == REDACTED
    assert entry["installation_id"] == 1


def test_nested_secrets_and_url_passwords_are_redacted(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.error(
        "request to postgresql://prgate:%s@db:5432/prgate failed", CANARY,
        extra={
            "headers": {"Authorization": f"token {CANARY}", "Accept": "application/json"},
            "attempts": [{"password": CANARY, "n": 1}],
            "redis": f"redis://:{CANARY}@redis:6379/0",
            "secret_str": SecretStr(CANARY),
        },
    )
    output = stream.getvalue()
    assert CANARY not in output
    [entry] = lines(stream)
    assert entry["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert entry["attempts"] == [{"password": REDACTED, "n": 1}]
    assert entry["redis"] == f"redis://:{REDACTED}@redis:6379/0"
    assert entry["msg"] == f"request to postgresql://prgate:{REDACTED}@db:5432/prgate failed"
    assert entry["secret_str"] == REDACTED  # the key says secret


def test_exception_text_masks_url_passwords(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    try:
        raise ConnectionError(f"cannot reach redis://user:{CANARY}@cache:6379")
    except ConnectionError:
        logger.exception("worker component died", extra={"worker_id": "w1"})
    assert CANARY not in stream.getvalue()
    [entry] = lines(stream)
    assert list(entry)[-1] == "exc"
    assert "ConnectionError" in entry["exc"]


def test_non_secret_keys_are_kept() -> None:
    for key in ("delivery_id", "installation_id", "action_id", "scope", "worker_id", "repo_id", "answer_changed"):
        assert not is_secret_key(key), key


def test_setup_logging_installs_the_formatter_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging("prgate-unit", "debug")
        logging.getLogger("prgate.unit").debug("hello", extra={"action_id": 3, "token": CANARY})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    [entry] = lines(stream)
    assert (entry["component"], entry["msg"], entry["action_id"], entry["token"]) == (
        "prgate-unit", "hello", 3, REDACTED
    )
