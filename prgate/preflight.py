"""What every subcommand checks before it starts anything, and how a configuration mistake is told.

A wrong variable, an unreachable database or a taken port is the operator's to fix, not a bug: it
comes out as one line on stderr saying what is wrong and what to do, with exit status 2, never a
traceback (`prgate.cli.main`). Anything not recognised here still raises: a bug keeps its traceback.
"""

from __future__ import annotations

import asyncio
import errno
import logging

from pydantic import ValidationError

from prgate.embedded import port_in_use
from prgate.logs import is_secret_key, mask_url_passwords

CONNECT_TIMEOUT_SECONDS = 10.0
_SHOWN_INPUT_CHARS = 60


class ConfigError(Exception):
    """The configuration cannot work; the message is one line: what is wrong, how to fix it."""


def log_level(value: str) -> str:
    names = [name for name, number in logging.getLevelNamesMapping().items() if number and name != "WARN"]
    if value.upper() not in names:
        raise ConfigError(f"LOG_LEVEL={value!r} is not a log level: set it to one of {', '.join(names)}")
    return value.upper()


def describe_invalid(exc: ValidationError) -> str:
    """pydantic's multi-line report as one line, naming each variable (its alias) and the value given."""
    parts = []
    for error in exc.errors():
        variable = ".".join(str(part) for part in error["loc"])
        reason = str(error["msg"]).removeprefix("Value error, ")
        if not variable:  # a check across variables names them in its message
            parts.append(reason)
            continue
        given = error.get("input")
        shown = ""
        if isinstance(given, str) and not is_secret_key(variable):
            shown = "=" + repr(given if len(given) <= _SHOWN_INPUT_CHARS else given[:_SHOWN_INPUT_CHARS] + "…")
        parts.append(f"{variable}{shown}: {reason}")
    return "; ".join(parts) + " (fix the variable or unset it for its default; README, Configuration)"


def check_ports(ports: list[tuple[str, str, int]]) -> None:
    """`(variable, host, port)`: refuse with the first one something already listens on."""
    for variable, host, port in ports:
        if port and port_in_use(host, port):
            raise ConfigError(
                f"port {port} ({variable}) on {host} is already in use: stop what listens there "
                f"or set {variable} to a free port"
            )


def bind_failure(exc: OSError) -> str | None:
    """A bind that failed anyway (a race after `check_ports`) as one line, or None if not that."""
    if exc.errno == errno.EADDRINUSE:
        return f"{exc.strerror or exc}: a port is already in use ({exc}); free it or choose another port"
    return None


def check_private_key_path(inline: str, path: str) -> None:
    """GITHUB_PRIVATE_KEY_PATH naming a file this process cannot read (GITHUB_PRIVATE_KEY wins when set)."""
    if inline or not path:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"GITHUB_PRIVATE_KEY_PATH={path!r} cannot be read ({exc.strerror or exc}): point it at the "
            "GitHub App's private key (PEM), readable by this user, or set GITHUB_PRIVATE_KEY"
        ) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_postgres(url: str) -> None:
    """Connect once, so a wrong DATABASE_URL is said before the server starts."""
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_SECONDS)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ConfigError(
            f"cannot connect to PostgreSQL at DATABASE_URL={mask_url_passwords(url)!r}: {_reason(exc)}; "
            "check DATABASE_URL (postgresql://user:password@host:5432/database)"
        ) from None


def check_redis_url(url: str) -> None:
    """A REDIS_URL redis-py cannot even parse (the receiver starts while Redis is down, so a
    reachable server is not required here)."""
    from redis.asyncio import Redis

    try:
        Redis.from_url(url)
    except ValueError as exc:
        raise ConfigError(
            f"REDIS_URL={mask_url_passwords(url)!r} is not a Redis URL: {exc} "
            "(redis://host:6379/0, rediss://… or unix:///path/to/redis.sock)"
        ) from None


def check_encryption_key(url: str, keys: list[str]) -> None:
    """PRGATE_ENCRYPTION_KEY must open the stored Bitbucket tokens once a workspace is connected: unset,
    or without the key a token was stored with, every Bitbucket action would fail at run time."""
    import asyncpg

    from backend_api.crypto import CannotDecrypt, Vault
    from backend_api.store import bitbucket

    async def probe() -> tuple[int, bytes | None]:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            return await bitbucket.count_active(conn), await bitbucket.one_active_ciphertext(conn)
        except asyncpg.UndefinedTableError:  # not migrated yet: nothing is connected
            return 0, None
        finally:
            await conn.close()

    connected, ciphertext = asyncio.run(probe())
    if not connected:
        return
    if not keys:
        raise ConfigError(
            f"PRGATE_ENCRYPTION_KEY is not set, but {connected} Bitbucket workspace(s) are connected and their "
            "tokens are stored encrypted: set it to the key(s) they were connected with (README, Configuration)"
        )
    if ciphertext is not None:
        try:
            Vault(keys).decrypt(ciphertext)
        except CannotDecrypt:
            raise ConfigError(
                "PRGATE_ENCRYPTION_KEY does not open the stored Bitbucket tokens: keep the key they were "
                "connected with in the list (after the new first one) until every workspace is reconnected"
            ) from None
