from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """Base for every model on the wire.

    Extra fields are ignored so a newer sender can talk to an older receiver;
    missing required fields are a validation error (HTTP 422).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


class ErrorBody(WireModel):
    """Every 4xx/5xx answer of every prgate endpoint carries this JSON body."""

    error: str
    message: str
    details: list[dict[str, object]] | None = None


def comma_list(value: object) -> object:
    """A comma-separated environment value (e.g. PRGATE_INTERNAL_SECRETS) as a list: blanks dropped, order kept."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value
