"""`/prgate <command>` in a comment: prgate's own syntax, the same on every provider. Pure."""

from __future__ import annotations

import re
from typing import Final

COMMAND_PREFIX: Final = "/prgate"
_COMMAND: Final = re.compile(r"^/prgate(?:\s+([A-Za-z0-9_-]{1,64}))?\s*$")


def parse_command(text: str) -> str | None:
    """The command of a comment whose first line is `/prgate [word]` (lower case; a bare `/prgate`
    is `help`); None for any other comment."""
    first_line = text.strip().splitlines()[0:1]
    match = _COMMAND.match(first_line[0].strip()) if first_line else None
    if match is None:
        return None
    return (match.group(1) or "help").lower()
