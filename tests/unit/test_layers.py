"""The package rules of docs/architecture.md, read from the code's own imports.

Each rule names a package and what it may not import; a violation lists the file and the import, so
a new provider or job that reaches across a boundary fails here before review has to find it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module `path` imports, absolute, including imports inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            yield stem
            yield from (f"{stem}.{alias.name}" for alias in node.names)


def _files(package: str) -> list[Path]:
    folder = ROOT / package.replace(".", "/")
    if folder.with_suffix(".py").is_file():
        return [folder.with_suffix(".py")]
    assert folder.is_dir(), f"{package} is neither a package nor a module: the rule names a layout that is gone"
    return sorted(folder.rglob("*.py"))


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in _files(package):
        for imported in _imports(path):
            if any(_within(imported, f) for f in forbidden) and not any(_within(imported, a) for a in allowed):
                found.append(f"{path.relative_to(ROOT)} imports {imported}")
    return sorted(set(found))


RULES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    # The wire contract stands alone: both services and the CLI depend on it, never the reverse.
    ("shared_contracts", ("backend_api", "bot_worker", "prgate", "provider_clients"), ()),
    # Provider code both services share imports neither of them.
    ("provider_clients", ("backend_api", "bot_worker", "prgate"), ()),
    # The two services talk only over signed HTTP.
    ("bot_worker", ("backend_api", "prgate"), ()),
    ("backend_api", ("bot_worker", "prgate"), ()),
    # The receiver and the worker replicas are separate processes with separate jobs.
    ("bot_worker.webhooks", ("bot_worker.worker",), ()),
    ("bot_worker.worker", ("bot_worker.webhooks",), ()),
    ("bot_worker.jobs", ("bot_worker.webhooks", "bot_worker.worker"), ()),
    # Providers are the leaves: they speak their HTTP and know nothing of who calls them.
    ("bot_worker.providers", ("bot_worker.webhooks", "bot_worker.worker", "bot_worker.jobs"), ()),
    # One folder per provider: what two providers share lives beside them (base.py, commands.py).
    ("bot_worker.providers.github", ("bot_worker.providers.bitbucket",), ()),
    ("bot_worker.providers.bitbucket", ("bot_worker.providers.github",), ()),
    # The gate's decisions are pure: no I/O, no store, no HTTP.
    ("backend_api.challenges", ("asyncpg", "aiohttp", "backend_api.store", "backend_api.http", "backend_api.web",
                                "backend_api.gate", "backend_api.github"), ()),
    # Use cases do not know they are served over HTTP.
    ("backend_api.gate", ("aiohttp", "backend_api.http", "backend_api.web"), ()),
    # The backend's GitHub calls know nothing of pages, handlers or tables.
    ("backend_api.github", ("backend_api.http", "backend_api.web", "backend_api.store"), ()),
    # The same for its Bitbucket calls (tenancy: token check, discovery, the workspace hook).
    ("backend_api.bitbucket", ("backend_api.http", "backend_api.web", "backend_api.store", "backend_api.gate"), ()),
    # Metrics are told facts; they do not reach into the handlers that produce them.
    ("backend_api.metrics", ("backend_api.http.handlers", "backend_api.http.owner", "backend_api.web"), ()),
    # The simulator's core serves any provider and knows none.
    ("prgate.simulator.core", ("prgate.simulator.github",), ()),
]

@pytest.mark.parametrize(("package", "forbidden", "allowed"), RULES, ids=[r[0] for r in RULES])
def test_package_imports_only_what_the_layout_allows(
    package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...]
) -> None:
    assert violations(package, forbidden, allowed) == []


@pytest.mark.parametrize(("package", "home"), [("bot_worker", "bot_worker.providers.github"),
                                               ("backend_api", "backend_api.github")])
def test_only_the_provider_folder_speaks_github(package: str, home: str) -> None:
    """gidgethub, the App JWT and the shared GitHub client belong to one folder per service."""
    # The settings read the App's key file once, at the edge, like every other setting.
    speaking = [v for v in violations(package, ("gidgethub", "jwt", "provider_clients.github"))
                if not v.startswith((home.replace(".", "/") + "/", f"{package}/settings.py"))]
    assert speaking == []


def test_a_violation_is_found() -> None:
    """The reader itself: the worker's entry point does import the provider folder."""
    assert violations("bot_worker.worker", ("bot_worker.providers",)) != []
