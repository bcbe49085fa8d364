"""The environment variables each `prgate` subcommand reads, for its `--help` epilog.

The lists come from the typed settings models' aliases (the names the code actually reads), so
a new setting shows up in `--help` without being written down a second time; only the few
variables read outside a settings model are named here, next to the code that reads them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

from pydantic_settings import BaseSettings

# Read by every subcommand before it dispatches (prgate/cli.py main, prgate/logs.py, prgate/embedded.py).
COMMON_VARIABLES = ("LOG_LEVEL", "LOG_FORMAT", "PRGATE_DATA_DIR")


def settings_variables(*models: type[BaseSettings]) -> list[str]:
    """Every alias of the models' fields, in declaration order, each once."""
    names: list[str] = []
    for model in models:
        for name, field in model.model_fields.items():
            variable = field.alias or name.upper()
            if variable not in names:
                names.append(variable)
    return names


def epilog(variables: Iterable[str], *, note: str = "", stack_env: bool = True) -> str:
    """The `--help` epilog: the variables, wrapped, then the common ones (and `.data/env` unless
    the subcommand is `up`, which writes it)."""
    own = [v for v in dict.fromkeys(variables) if v not in COMMON_VARIABLES]
    lines = ["environment variables read:"]
    if own:
        lines += textwrap.wrap(", ".join(own), width=100, initial_indent="  ", subsequent_indent="  ")
    common = "and, like every subcommand, " + ", ".join(COMMON_VARIABLES)
    common += "; in a checkout where `prgate up` runs, its .data/env fills the unset ones." if stack_env else "."
    lines += textwrap.wrap(common,
                           width=100, initial_indent="  ", subsequent_indent="  ")
    if note:
        lines += textwrap.wrap(note, width=100, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)
