"""Which caller's key opens which internal route (the table is in backend_api.http.routes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared_contracts.keys import Caller


@dataclass(frozen=True, slots=True)
class InternalScopes:
    routes: Mapping[tuple[str, str], frozenset[Caller]]

    def allows(self, method: str, path_template: str | None, caller: Caller) -> bool:
        """Whether ``caller`` may call this route. A path that is no route is let through: it answers 404."""
        if path_template is None:
            return True
        callers = self.routes.get((method.upper(), path_template))
        if callers is None:
            # Another method on a known path (405), or HEAD on a GET route: only a caller allowed on
            # some method of the path may learn that.
            same_path = [c for (_, path), c in self.routes.items() if path == path_template]
            return not same_path or any(caller in c for c in same_path)
        return caller in callers
