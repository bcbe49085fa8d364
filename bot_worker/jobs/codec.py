"""How arq jobs are written to and read from Redis: JSON of a fixed shape, never pickle.

arq's default serializer is `pickle`, so anyone able to write one key to Redis would run code in
every worker (which holds the App's private key) the moment it read the job. Both sides — the
receiver's enqueuing pool and the worker's `arq.Worker` — use this codec instead: a job is a JSON
object whose arguments are strings (our forward job carries `(kind, JSON body)`, the body re-validated
against the contract models by `forward.decode`), and anything else is refused unread — never handed to
`pickle`. A refusal is counted (`forward_queue_total{outcome="refused"}`) and logged; arq then drops
the job (`deserializing job … failed`), which is the right answer for a forged key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

log = logging.getLogger(__name__)

# Upper bound of one job: a webhook body (25 MB, GitHub's own cap) plus its envelope.
MAX_JOB_BYTES: Final = 26 * 1024 * 1024


class JobRefused(ValueError):
    """Redis held something that is not one of our JSON jobs (a pickle, say): it is never unpickled."""


class _JobEnvelope(BaseModel):
    """The keys arq writes for a job (`serialize_job`); results add more, allowed by `extra`."""

    model_config = ConfigDict(extra="allow")
    t: StrictInt | None  # job try (None when enqueued: the worker counts tries itself)
    f: StrictStr  # function name
    a: list[StrictStr]  # positional arguments: only strings travel
    k: dict[StrictStr, StrictStr]  # keyword arguments, likewise
    et: StrictInt  # enqueue time (ms)


def _encode_default(value: object) -> object:
    """JSON for what arq adds to a job result: a failure's exception becomes its type and message."""
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    raise TypeError(f"{type(value).__name__} is not a job value")


def serialize(data: dict[str, Any]) -> bytes:
    """arq's `job_serializer`: a job (or its result) as compact JSON."""
    return json.dumps(data, default=_encode_default, separators=(",", ":")).encode()


class JobCodec:
    """arq's `job_serializer` / `job_deserializer` pair; `on_refused` counts what was refused."""

    def __init__(self, on_refused: Callable[[], None] | None = None) -> None:
        self._on_refused = on_refused

    serialize = staticmethod(serialize)

    def deserialize(self, raw: bytes) -> dict[str, Any]:
        """arq's `job_deserializer`: our JSON job, or `JobRefused` without interpreting the bytes further."""
        try:
            return self._decode(raw)
        except JobRefused as exc:
            if self._on_refused is not None:
                self._on_refused()
            # The first bytes tell an operator what was planted (b'\\x80\\x04' = pickle protocol 4).
            log.error("refused a queued job that is not a prgate JSON job: %s", exc,
                      extra={"path": repr(bytes(raw[:8]))})
            raise

    @staticmethod
    def _decode(raw: bytes) -> dict[str, Any]:
        if len(raw) > MAX_JOB_BYTES:
            raise JobRefused(f"job of {len(raw)} bytes exceeds {MAX_JOB_BYTES}")
        # Only a JSON object can be one of ours; a pickle starts with b'\x80' (or an opcode), never '{'.
        if not raw.lstrip()[:1] == b"{":
            raise JobRefused("not a JSON object (a pickle?)")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise JobRefused(f"not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise JobRefused("not a JSON object")
        if "r" in data:  # a kept result: arq's own keys, its result already plain JSON
            return data
        try:
            _JobEnvelope.model_validate(data)
        except ValidationError as exc:
            raise JobRefused(f"not a job of ours: {exc.error_count()} invalid field(s)") from None
        return data
