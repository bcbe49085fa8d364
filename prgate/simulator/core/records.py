"""The request log: one record per API request a provider served (``GET /_sim/requests``)."""

from __future__ import annotations

from dataclasses import dataclass

from prgate.simulator.core.types import JsonDict, iso


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    query: str
    installation_id: int | None
    status: int
    at: float
    fault: str | None = None
    # Which credential made the request, for providers whose tokens are not an installation's:
    # Bitbucket's `workspace:<slug>` (an access token) or `user:<account_id>` (an OAuth token). Tests
    # assert a tenant's token only ever touched its own workspace.
    credential: str | None = None

    def to_json(self) -> JsonDict:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "installation_id": self.installation_id,
            "status": self.status,
            "at": iso(self.at),
            "fault": self.fault,
            "credential": self.credential,
        }
