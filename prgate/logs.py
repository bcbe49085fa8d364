"""JSON logs with a consistent field set across components.

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
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

BASE_FIELDS = ("ts", "level", "component", "logger", "msg")
# Correlation fields that callers pass through `extra=`; kept when present, in this order.
CORRELATION_FIELDS = (
    "delivery_id", "installation_id", "action_id", "scope", "worker_id", "event", "outcome", "attempt",
    "status", "path", "migration",
)
# A key containing any of these (case-insensitive) carries a secret: its value is never written.
SECRET_KEY_PARTS = (
    "token", "secret", "private_key", "privatekey", "authorization", "password", "passwd", "api_key", "apikey",
    "cookie", "signature", "credential",
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
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        ordered = [k for k in CORRELATION_FIELDS if k in extras] + [k for k in extras if k not in CORRELATION_FIELDS]
        for key in ordered:
            # An extra never replaces a base field: it keeps its value under another name.
            name = f"extra_{key}" if key in BASE_FIELDS or key in ("exc", "stack") else key
            entry[name] = REDACTED if is_secret_key(key) else redact(extras[key])
        if record.exc_info:
            entry["exc"] = mask_url_passwords(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def setup_logging(component: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
