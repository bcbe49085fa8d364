"""Logs with a consistent field set across components: JSON for machines, one short line for people.

``LOG_FORMAT`` picks the shape: ``json``, ``text``, or ``auto`` (the default): text when stderr is a
terminal (someone is watching ``prgate up``), JSON otherwise (a file, a pipe, a container log
collector). The chart and docker-compose pin ``json``, so a pod started with a TTY still ships
machine-readable lines.

JSON: every line is one JSON object whose keys come in this order:

Every line is one JSON object whose keys come in this order:

1. always: ``ts`` (UTC, milliseconds), ``level``, ``component`` (``prgate-<command>``), ``logger``, ``msg``;
2. the correlation fields that are known (passed with ``extra=``), in the order of
   ``CORRELATION_FIELDS``: ``delivery_id``, ``installation_id``, ``action_id``, ``scope``, then the
   other common ones (``worker_id``, ``event``, ...);
3. any other ``extra=`` field, in the caller's order; ``exc`` / ``stack`` last.

Secrets never leave as values: an extra whose key names a secret (``token``, ``secret``,
``private_key``, ``authorization``, ``password``, ... anywhere in the key, any case, also inside
nested dicts) is written as ``"[redacted]"``, and a password in a URL (``scheme://user:pw@host``)
is masked in every string, the message included.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, Literal, TextIO

LogFormat = Literal["json", "text"]
LOG_FORMATS = ("auto", "json", "text")

BASE_FIELDS = ("ts", "level", "component", "logger", "msg")
# Correlation fields that callers pass through `extra=`; kept when present, in this order.
CORRELATION_FIELDS = (
    "delivery_id", "installation_id", "action_id", "scope", "worker_id", "event", "outcome", "attempt",
    "status", "path", "migration",
)
# A key containing any of these (case-insensitive) carries a secret: its value is never written.
SECRET_KEY_PARTS = (
    "token", "secret", "private_key", "privatekey", "authorization", "password", "passwd", "api_key", "apikey",
    "cookie", "signature", "credential", "encryption_key",
)
REDACTED = "[redacted]"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_MAX_DEPTH = 6


def is_secret_key(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    return any(part in lowered for part in SECRET_KEY_PARTS)


def mask_url_passwords(text: str) -> str:
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)


def redact(value: Any, depth: int = 0) -> Any:
    """`value` with secret-named keys blanked at any depth and URL passwords masked."""
    if isinstance(value, str):
        return mask_url_passwords(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_key(k) else redact(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, depth + 1) for v in value]
    return value


def _extras(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """The `extra=` fields of `record`, correlation fields first, values redacted."""
    extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
    ordered = [k for k in CORRELATION_FIELDS if k in extras] + [k for k in extras if k not in CORRELATION_FIELDS]
    return [(k, REDACTED if is_secret_key(k) else redact(extras[k])) for k in ordered]


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "msg": mask_url_passwords(record.getMessage()),
        }
        for key, value in _extras(record):
            # An extra never replaces a base field: it keeps its value under another name.
            name = f"extra_{key}" if key in BASE_FIELDS or key in ("exc", "stack") else key
            entry[name] = value
        if record.exc_info:
            entry["exc"] = mask_url_passwords(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level component message`` plus the correlation fields as ``key=value``: what a person
    at a terminal reads. The same redaction as the JSON lines applies: secret-named extras never show."""

    def __init__(self, component: str) -> None:
        super().__init__()
        # `prgate-worker` → `worker`: the prefix is the same on every line of one console.
        self.component = component.removeprefix("prgate-")

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{clock} {record.levelname.lower():<7} {self.component:<9} {mask_url_passwords(record.getMessage())}"
        fields = " ".join(f"{key}={value}" for key, value in _extras(record))
        if fields:
            line += "  " + fields
        if record.exc_info:
            line += "\n" + mask_url_passwords(self.formatException(record.exc_info))
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def choose_format(requested: str, stream: TextIO) -> LogFormat:
    """The format for `requested` (`LOG_FORMAT`) on `stream`; an unknown value is refused, not guessed."""
    value = requested.strip().lower() or "auto"
    if value not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {requested!r}")
    if value == "auto":
        isatty = getattr(stream, "isatty", None)
        return "text" if isatty is not None and isatty() else "json"
    return "json" if value == "json" else "text"


def setup_logging(component: str, level: str = "INFO", log_format: str | None = None) -> None:
    """Root logging for one process. `log_format` defaults to `LOG_FORMAT` from the environment: logging
    is set up before any settings object exists (a settings error must itself be logged)."""
    stream = sys.stderr
    fmt = choose_format(os.environ.get("LOG_FORMAT", "auto") if log_format is None else log_format, stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter(component) if fmt == "text" else JsonFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # pgserver logs every initdb/pg_ctl command line and its full output at INFO: noise for the
    # console; its warnings and errors (a server that will not start) still come through.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
