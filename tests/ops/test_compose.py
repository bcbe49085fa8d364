"""docker-compose.yml and the Dockerfile agree with the chart: same image contract, commands and variables."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared_contracts.keys import KNOWN_SECRETS
from tests.ops.test_chart import (
    REPO,
    SECRET_VARS,
    SUBCOMMANDS,
    Doc,
    env_of,
    needed_by,
    pod_spec,
    render,
    workload_by_component,
)

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
# compose service -> chart component
SERVICES = {"migrate": "migrate", "backend": "backend", "bot": "receiver", "worker": "worker"}
# Set by the chart but not by compose, and why.
CHART_ONLY = {"WORKER_ID": "the chart passes the pod name; compose leaves the default (hostname-pid-random)"}


@cache
def compose() -> Doc:
    doc: Doc = yaml.safe_load(COMPOSE.read_text())
    return doc


def service(name: str) -> Doc:
    svc: Doc = compose()["services"][name]
    return svc


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    assert isinstance(env, dict), f"{name}: use the mapping form of environment"
    return {str(k): str(v) for k, v in env.items()}


@cache
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                         if not line.lstrip().startswith("#")))
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    return instructions[last_from:]


def exec_form(args: str) -> Any:
    return json.loads(args)


# --- compose ----------------------------------------------------------------------------------------------------


def test_compose_services() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", *SERVICES}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert service("worker")["deploy"]["replicas"] == 2


def test_compose_runs_the_same_subcommands_as_the_chart() -> None:
    for name, component in SERVICES.items():
        assert service(name)["command"] == [SUBCOMMANDS[component]]
        assert "entrypoint" not in service(name), "the image's ENTRYPOINT is prgate"
    # One image for every component, built from this Dockerfile.
    images = {service(name)["image"] for name in SERVICES}
    assert len(images) == 1
    assert all(service(name)["build"] == "." for name in SERVICES)


def test_compose_sets_the_same_variables_as_the_chart() -> None:
    workloads = workload_by_component(render("default"))
    for name, component in SERVICES.items():
        chart_env = set(env_of(workloads[component][0])) - set(CHART_ONLY)
        compose_env = set(environment(name))
        assert compose_env == chart_env, (
            f"{name}: only in the chart {sorted(chart_env - compose_env)}, "
            f"only in compose {sorted(compose_env - chart_env)}"
        )
        assert needed_by(component) <= compose_env | set(CHART_ONLY)


# Secrets a deployment may leave unset (empty, never a default value): sign-in answers 503, webhooks are
# refused, no App can be registered through this backend.
OPTIONAL_SECRETS = {"GITHUB_CLIENT_SECRET", "GITHUB_WEBHOOK_SECRET", "GITHUB_WEBHOOK_SECRETS", "PRGATE_ADMIN_SECRETS",
                    # Bitbucket is off until the operator sets these: no workspace connects, deliveries 401.
                    "PRGATE_ENCRYPTION_KEY", "BITBUCKET_WEBHOOK_SECRET", "BITBUCKET_OAUTH_CLIENT_SECRET"}
REQUIRED = re.compile(r"\$\{(?P<var>[A-Z_]+):\?[^}]+\}")


def test_compose_secrets_are_not_baked_in() -> None:
    for name in SERVICES:
        for var, value in environment(name).items():
            if var not in SECRET_VARS - {"DATABASE_URL", "REDIS_URL"}:
                continue
            if var in OPTIONAL_SECRETS:
                assert value == f"${{{var}:-}}", f"{name}: {var} must come from the shell, empty by default"
            else:  # required: compose itself refuses to start with one line naming it
                match = REQUIRED.fullmatch(value)
                assert match, f"{name}: {var} must be ${{{var}:?message}}, got {value}"
                assert match["var"] == var
                assert "openssl rand" in value
    # The database password too: no published default, and the URLs take it from the shell.
    assert REQUIRED.fullmatch(service("postgres")["environment"]["POSTGRES_PASSWORD"])
    for name in ("migrate", "backend"):
        assert "${POSTGRES_PASSWORD:?" in environment(name)["DATABASE_URL"]
    text = COMPOSE.read_text()
    # No variable named like a secret or password has a non-empty default anywhere in the file.
    assert not re.findall(r"\$\{[A-Z_]*(?:SECRET|PASSWORD)[A-Z_]*:?-[^}]+\}", text)
    for known in KNOWN_SECRETS:
        assert known not in text
    # The App key is a compose secret (a file), as in the chart.
    for name in ("backend", "bot", "worker"):
        assert "github_private_key" in service(name)["secrets"]
        assert environment(name)["GITHUB_PRIVATE_KEY_PATH"] == "/run/secrets/github_private_key"
        assert "GITHUB_PRIVATE_KEY" not in environment(name)


def test_compose_urls_point_at_compose_services() -> None:
    assert environment("backend")["DATABASE_URL"] == environment("migrate")["DATABASE_URL"]
    assert "@postgres:5432/" in environment("backend")["DATABASE_URL"]
    internal = environment("backend")["BACKEND_INTERNAL_PORT"]
    assert internal != environment("backend")["BACKEND_PORT"]
    for name in ("bot", "worker"):
        assert environment(name)["REDIS_URL"].startswith("redis://redis:6379")
        # The receiver and workers call the internal listener, the only port serving /internal/*.
        assert environment(name)["BACKEND_URL"] == f"http://backend:{internal}"


def _published(name: str) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) of each published port; ip '' = every interface."""
    out = []
    for spec in service(name).get("ports", []):
        parts = str(spec).split(":")
        ip, host, container = (["", *parts] if len(parts) == 2 else parts)
        out.append((ip, host, container))
    return out


def test_compose_publishes_only_the_receiver() -> None:
    published = {name: _published(name) for name in compose()["services"]}
    exposed = {name for name, ports in published.items() for ip, _, _ in ports if ip not in ("127.0.0.1", "::1")}
    assert exposed == {"bot"}, f"published on every interface: {sorted(exposed)}"
    assert [c for _, _, c in published["bot"]] == [environment("bot")["BOT_PORT"]]
    # The backend's pages on loopback only (for a local reverse proxy); its internal port not at all.
    internal = environment("backend")["BACKEND_INTERNAL_PORT"]
    assert published["backend"] == [("127.0.0.1", "8080", environment("backend")["BACKEND_PORT"])]
    assert not any(c == internal for ports in published.values() for _, _, c in ports)
    assert not any("expose" in service(name) for name in compose()["services"])
    for name in ("postgres", "redis", "migrate", "worker"):
        assert not published[name], f"{name} must not be published"


def test_compose_order_and_healthchecks() -> None:
    assert service("migrate")["restart"] == "no"
    assert service("migrate")["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert service("backend")["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("bot", "worker"):
        assert service(name)["depends_on"]["redis"]["condition"] == "service_healthy"
    probes = {"backend": "8080/readyz", "bot": "8081/readyz", "worker": "9101/healthz"}
    for name in ("postgres", "redis", *probes):
        test = service(name)["healthcheck"]["test"]
        assert test[0] == "CMD"
        if name in probes:
            assert f"127.0.0.1:{probes[name]}" in " ".join(test)


def test_compose_containers_match_the_chart_security_context() -> None:
    (backend,) = workload_by_component(render("default"))["backend"]
    pod_ctx = pod_spec(backend)["securityContext"]
    for name in SERVICES:
        svc = service(name)
        assert svc["user"] == f"{pod_ctx['runAsUser']}:{pod_ctx['runAsGroup']}"
        assert svc["read_only"] is True
        assert "/tmp" in svc["tmpfs"]
        assert svc["cap_drop"] == ["ALL"]


# --- Dockerfile -------------------------------------------------------------------------------------------------


def test_dockerfile_entrypoint_is_prgate_and_default_is_up() -> None:
    stage = final_stage()
    (entrypoint,) = [args for ins, args in stage if ins == "ENTRYPOINT"]
    (cmd,) = [args for ins, args in stage if ins == "CMD"]
    assert exec_form(entrypoint) == ["prgate"]
    assert exec_form(cmd) == ["up"]


def test_dockerfile_runs_as_the_charts_non_root_user() -> None:
    users = [args for ins, args in final_stage() if ins == "USER"]
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "a numeric uid lets runAsNonRoot verify it"
    assert int(uid) != 0
    (backend,) = workload_by_component(render("default"))["backend"]
    ctx = pod_spec(backend)["securityContext"]
    assert int(uid) == ctx["runAsUser"] == 10001
    assert not gid or int(gid) == ctx["runAsGroup"]


def test_dockerfile_is_multi_stage_slim_without_dev_dependencies() -> None:
    instructions = dockerfile_instructions()
    froms = [args for ins, args in instructions if ins == "FROM"]
    assert len(froms) >= 2
    assert froms[-1].split()[0] == "python:3.11-slim"
    runs = " ".join(args for ins, args in instructions if ins == "RUN")
    assert "pip install -c requirements.lock ." in runs
    assert "[dev]" not in runs
    env = " ".join(args for ins, args in final_stage() if ins == "ENV")
    assert "PRGATE_DATA_DIR=/tmp/prgate" in env
    assert any(ins == "COPY" and args.startswith("--from=") for ins, args in final_stage())


def test_the_wheel_carries_the_migrations_where_migrate_looks(tmp_path: Path) -> None:
    """The image installs the project as a wheel (`pip install .`): the migrations must be in it,
    inside backend_api, where `DEFAULT_MIGRATIONS_DIR` points, with nothing copied beside it."""
    from backend_api.store import migrate

    assert Path(migrate.__file__).resolve().parents[1] / "migrations" == migrate.DEFAULT_MIGRATIONS_DIR
    # Built from a copy: setuptools leaves build/ in the tree it builds.
    source = tmp_path / "src"
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy(REPO / name, source / name)
    for package in ("shared_contracts", "provider_clients", "backend_api", "bot_worker", "prgate"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("prgate-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = sorted(n.removeprefix("backend_api/migrations/") for n in zf.namelist()
                         if n.startswith("backend_api/migrations/") and n.endswith(".sql"))
    assert shipped == sorted(p.name for p in migrate.DEFAULT_MIGRATIONS_DIR.glob("*.sql"))
    assert "0001_init.sql" in shipped
    assert not any(ins == "COPY" and "migrations" in args for ins, args in dockerfile_instructions())


@pytest.mark.parametrize("path", [".git", ".venv", ".data", ".cache", "tests", ".env.github-app", "github-app.pem",
                                  ".secrets"])
def test_dockerignore_keeps_local_state_out(path: str) -> None:
    assert path in DOCKERIGNORE.read_text().split()


@pytest.mark.parametrize("path", [".env.github-app", "github-app.pem", ".secrets/github-app.pem",
                                  "conf/github-app.pem"])
def test_gitignore_keeps_credentials_out(path: str) -> None:
    """What `prgate github-app create` writes and what compose mounts are never committed by accident."""
    proc = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO, check=False)
    assert proc.returncode == 0, f"{path} is not ignored by .gitignore"
