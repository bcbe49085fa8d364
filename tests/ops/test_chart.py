"""The Helm chart (charts/prgate): lint, render, validate against Kubernetes 1.30 schemas, and check what matters.

Needs the helm binary at .cache/helm/helm (`make helm` / scripts/fetch_helm.sh); no cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from backend_api.settings import BackendSettings
from bot_worker.settings import BotSettings
from prgate.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "prgate"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
HELM = REPO / ".cache" / "helm" / "helm"
README = REPO / "README.md"
KUBE_VERSION = "1.30"
RELEASE = "ci"
NAMESPACE = "prgate"
VALUES_FILES: dict[str, list[str]] = {"default": [], "full": ["-f", str(FULL_VALUES)]}

Doc = dict[str, Any]

# Custom resources: no schema in kubernetes-validate; their apiVersion/kind are checked instead.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
# Each component's container and its `prgate` subcommand (the image's ENTRYPOINT is `prgate`).
SUBCOMMANDS = {"backend": "backend", "receiver": "bot", "worker": "worker", "migrate": "migrate"}
# The README's "used by" name of each component.
README_COMPONENT = {"backend": "backend", "receiver": "bot", "worker": "worker", "migrate": "migrate"}
# Variables a component reads that the chart deliberately leaves to their defaults, and why.
RETIRED = {"PRGATE_INTERNAL_SECRETS": "retired: read only to refuse to start when it is set (docs/security.md)"}
NOT_SET: dict[str, dict[str, str]] = {
    "backend": {"GITHUB_PRIVATE_KEY": "the key is mounted as a file: GITHUB_PRIVATE_KEY_PATH", **RETIRED},
    "receiver": {"GITHUB_PRIVATE_KEY": "the key is mounted as a file: GITHUB_PRIVATE_KEY_PATH", **RETIRED},
    "worker": {
        "GITHUB_PRIVATE_KEY": "the key is mounted as a file: GITHUB_PRIVATE_KEY_PATH",
        "BOT_PORT": "the worker binds only BOT_HOST (its metrics server, on WORKER_METRICS_PORT)",
        **RETIRED,
    },
    "migrate": {},
}
KEY_VARS = {"PRGATE_RECEIVER_SECRETS", "PRGATE_WORKER_SECRETS", "PRGATE_ADMIN_SECRETS"}
# Never a plain value: credentials, and URLs that embed them.
SECRET_VARS = KEY_VARS | {"DATABASE_URL", "REDIS_URL", "GITHUB_WEBHOOK_SECRETS"} | {
    field.alias
    for settings in (BackendSettings, BotSettings)
    for field in settings.model_fields.values()
    if field.alias and field.annotation is SecretStr
}
SECRET_VALUE_KEYS = {
    "PRGATE_RECEIVER_SECRETS": "receiverSecrets", "PRGATE_WORKER_SECRETS": "workerSecrets",
    "PRGATE_ADMIN_SECRETS": "adminSecrets", "DATABASE_URL": "databaseUrl", "REDIS_URL": "redisUrl",
    "GITHUB_WEBHOOK_SECRET": "webhookSecret", "GITHUB_CLIENT_SECRET": "githubClientSecret",
    "SESSION_SECRET": "sessionSecret", "GITHUB_WEBHOOK_SECRETS": "webhookSecrets",
    "PRGATE_ENCRYPTION_KEY": "encryptionKey", "BITBUCKET_WEBHOOK_SECRET": "bitbucketWebhookSecret",
    "BITBUCKET_OAUTH_CLIENT_SECRET": "bitbucketOauthClientSecret",
}


# --- helm -------------------------------------------------------------------------------------------------------


def helm_bin() -> Path:
    if not os.access(HELM, os.X_OK):
        pytest.fail(f"{HELM.relative_to(REPO)} is missing: run `make helm` (scripts/fetch_helm.sh) first",
                    pytrace=False)
    return HELM


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    home = REPO / ".cache" / "helm" / "home"  # keeps helm's own config/cache out of $HOME
    env = {**os.environ, "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_DATA_HOME": str(home / "data")}
    return subprocess.run([str(helm_bin()), *args], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def template(*args: str) -> subprocess.CompletedProcess[str]:
    return helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", f"{KUBE_VERSION}.0",
                *args)


@cache
def render(variant: str) -> tuple[Doc, ...]:
    proc = template(*VALUES_FILES[variant])
    assert proc.returncode == 0, f"helm template ({variant} values) failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


@cache
def values(variant: str) -> Doc:
    merged: Doc = yaml.safe_load((CHART / "values.yaml").read_text())
    if variant == "full":
        merged = deep_merge(merged, yaml.safe_load(FULL_VALUES.read_text()))
    return merged


def deep_merge(base: Doc, override: Doc) -> Doc:
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# --- manifest helpers -------------------------------------------------------------------------------------------


def of_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def by_name(docs: tuple[Doc, ...], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in of_kind(docs, kind)}


def component(doc: Doc) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def workloads(docs: tuple[Doc, ...]) -> Iterator[Doc]:
    """Every object with a pod template (Deployments and the migration Job)."""
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"}:
            yield doc


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def only_container(doc: Doc) -> Doc:
    containers = pod_spec(doc)["containers"]
    assert len(containers) == 1, doc["metadata"]["name"]
    container: Doc = containers[0]
    return container


def env_of(doc: Doc) -> dict[str, Doc]:
    env = only_container(doc).get("env", [])
    names = [item["name"] for item in env]
    assert len(names) == len(set(names)), f"{doc['metadata']['name']}: duplicate env {names}"
    return {item["name"]: item for item in env}


def workload_by_component(docs: tuple[Doc, ...]) -> dict[str, list[Doc]]:
    out: dict[str, list[Doc]] = {}
    for doc in workloads(docs):
        out.setdefault(component(doc), []).append(doc)
    return out


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- README / settings ------------------------------------------------------------------------------------------


@cache
def readme_variables() -> dict[str, set[str]]:
    """README's configuration table: variable -> the components of its "used by" column."""
    section = README.read_text().split("## Configuration", 1)[1]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        used_by = {part.strip() for part in cells[2].split(",")}
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
            table[name] = used_by
    assert {"DATABASE_URL", "WORKER_CONCURRENCY"} <= set(table), "README configuration table not found"
    return table


def settings_aliases(settings: type[BaseSettings]) -> set[str]:
    return {field.alias for field in settings.model_fields.values() if field.alias}


def needed_by(name: str) -> set[str]:
    """What a component needs, from the README's table (`all` = the long-running components)."""
    readme_name = README_COMPONENT[name]
    needed = {var for var, used_by in readme_variables().items()
              if readme_name in used_by or ("all" in used_by and name != "migrate")}
    if name == "backend":
        needed |= settings_aliases(BackendSettings)
    return needed - set(NOT_SET[name])


# --- tests: helm ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VALUES_FILES))
def test_helm_lint(variant: str) -> None:
    proc = helm("lint", "--strict", str(CHART), "--kube-version", f"{KUBE_VERSION}.0", *VALUES_FILES[variant])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_renders_with_helms_default_kube_version() -> None:
    proc = helm("template", RELEASE, str(CHART))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("variant", list(VALUES_FILES))
def test_every_object_is_valid_for_kubernetes(variant: str) -> None:
    docs = render(variant)
    assert docs
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in CUSTOM_KINDS:
            assert doc["metadata"]["name"]
            assert doc["spec"]
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_default_values_render_the_expected_objects() -> None:
    docs = render("default")
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for doc in docs)
    assert kinds == sorted([
        ("Deployment", "ci-prgate-backend"), ("Deployment", "ci-prgate-receiver"),
        ("Deployment", "ci-prgate-worker-actions"),
        ("Service", "ci-prgate-backend"), ("Service", "ci-prgate-receiver"), ("Service", "ci-prgate-worker-actions"),
        ("PodDisruptionBudget", "ci-prgate-backend"), ("PodDisruptionBudget", "ci-prgate-receiver"),
        ("PodDisruptionBudget", "ci-prgate-worker-actions"),
        ("Job", "ci-prgate-migrate"), ("ServiceAccount", "ci-prgate"), ("NetworkPolicy", "ci-prgate-backend"),
    ])
    # The chart runs no database and creates no Secret: those are the operator's.
    assert not of_kind(docs, "Secret")
    assert not of_kind(docs, "StatefulSet")


def test_full_values_render_every_optional_object() -> None:
    docs = render("full")
    counts: dict[str, int] = {}
    for doc in docs:
        counts[doc["kind"]] = counts.get(doc["kind"], 0) + 1
    assert counts == {
        "Deployment": 4, "Service": 4, "PodDisruptionBudget": 3, "HorizontalPodAutoscaler": 1, "Ingress": 1,
        "ServiceMonitor": 3, "Job": 1, "ServiceAccount": 1, "NetworkPolicy": 1,
    }


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert str(chart["appVersion"]) == project["version"]
    for doc in workloads(render("default")):
        assert only_container(doc)["image"] == f"prgate:{chart['appVersion']}"
    for doc in workloads(render("full")):
        assert only_container(doc)["image"] == "registry.example.com/prgate/prgate:0.1.0-rc1"
        assert pod_spec(doc)["imagePullSecrets"] == [{"name": "registry-credentials"}]


def test_standard_labels_everywhere() -> None:
    for doc in render("full"):
        labels = doc["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                    "app.kubernetes.io/managed-by", "app.kubernetes.io/component", "helm.sh/chart"):
            assert labels.get(key), f"{doc['kind']}/{doc['metadata']['name']} lacks {key}"
        assert labels["app.kubernetes.io/instance"] == RELEASE


# --- tests: pods ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VALUES_FILES))
def test_every_pod_runs_non_root_read_only_without_capabilities(variant: str) -> None:
    for doc in workloads(render(variant)):
        name = doc["metadata"]["name"]
        spec = pod_spec(doc)
        pod_ctx = spec["securityContext"]
        assert pod_ctx["runAsNonRoot"] is True, name
        assert pod_ctx["runAsUser"] == 10001, name
        assert pod_ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["runAsNonRoot"] is True, name
            assert ctx["runAsUser"] == 10001, name
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"]["drop"] == ["ALL"], name
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp must be an emptyDir"


@pytest.mark.parametrize("variant", list(VALUES_FILES))
def test_components_run_their_prgate_subcommand(variant: str) -> None:
    subcommands = {name for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)
                   for name in action.choices}
    by_component = workload_by_component(render(variant))
    assert set(by_component) == set(SUBCOMMANDS)
    for name, docs in by_component.items():
        for doc in docs:
            container = only_container(doc)
            assert "command" not in container, "the image's ENTRYPOINT is prgate"
            assert container["args"] == [SUBCOMMANDS[name]]
            assert SUBCOMMANDS[name] in subcommands


@pytest.mark.parametrize("variant", list(VALUES_FILES))
def test_probes(variant: str) -> None:
    assert values("default")["workers"]["readinessPath"] == "/healthz"
    worker_ready = values(variant)["workers"]["readinessPath"]  # /healthz unless set (full values: /readyz)
    expected = {"backend": ("/healthz", "/readyz", "http"), "receiver": ("/healthz", "/readyz", "http"),
                "worker": ("/healthz", worker_ready, "metrics")}
    for doc in of_kind(render(variant), "Deployment"):
        live, ready, port = expected[component(doc)]
        container = only_container(doc)
        assert container["livenessProbe"]["httpGet"] == {"path": live, "port": port}
        assert container["readinessProbe"]["httpGet"] == {"path": ready, "port": port}
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = env_of(doc)
        listen = {"backend": "BACKEND_PORT", "receiver": "BOT_PORT", "worker": "WORKER_METRICS_PORT"}[component(doc)]
        assert str(ports[port]) == env[listen]["value"], "the probed port is the one the process listens on"
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook() -> None:
    for variant in VALUES_FILES:
        (job,) = of_kind(render(variant), "Job")
        annotations = job["metadata"]["annotations"]
        assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        assert pod_spec(job)["restartPolicy"] == "Never"
        # A pre-install hook runs before the chart's ServiceAccount exists.
        sa_names = {sa["metadata"]["name"] for sa in of_kind(render(variant), "ServiceAccount")}
        assert pod_spec(job)["serviceAccountName"] not in sa_names
        # No other hook: the rest is ordinary release content.
        for doc in render(variant):
            if doc is not job:
                assert "helm.sh/hook" not in doc["metadata"].get("annotations", {})


def test_settings_are_documented_in_the_readme() -> None:
    table = readme_variables()
    for settings, users in ((BackendSettings, {"backend", "all"}), (BotSettings, {"bot", "worker", "all"})):
        for alias in settings_aliases(settings):
            assert alias in table, f"{settings.__name__}.{alias} is missing from README's configuration table"
            assert table[alias] & users, f"README says {alias} is used by {table[alias]}"


@pytest.mark.parametrize("variant", list(VALUES_FILES))
def test_every_component_gets_every_variable_it_needs(variant: str) -> None:
    for name, docs in workload_by_component(render(variant)).items():
        for doc in docs:
            env = env_of(doc)
            missing = needed_by(name) - set(env)
            assert not missing, f"{doc['metadata']['name']} lacks {sorted(missing)}"
            if variant == "full":  # everything configured: nothing needed is empty
                empty = [var for var in needed_by(name) if env[var].get("value") == ""]
                assert not empty, f"{doc['metadata']['name']}: {empty} rendered empty"


def test_plain_configuration_values() -> None:
    docs = render("full")
    by_component = workload_by_component(docs)
    (backend,) = by_component["backend"]
    env = {k: v.get("value") for k, v in env_of(backend).items()}
    assert env["GITHUB_APP_ID"] == "123456"
    assert env["GITHUB_API_URL"] == "https://ghe.example.com/api/v3"
    assert env["GITHUB_WEB_URL"] == "https://ghe.example.com"
    assert env["BACKEND_PUBLIC_URL"] == "https://prgate.example.com"
    assert env["BOT_PUBLIC_URL"] == "https://prgate.example.com"  # the ingress routes /webhooks/github there
    assert env["PRGATE_OPERATORS"] == "alice:1001,bob:1002"
    assert env["LOG_LEVEL"] == "DEBUG"
    assert env["LOG_FORMAT"] == "json"  # a cluster's collectors parse JSON, TTY or not
    assert env["SWEEP_INTERVAL_SECONDS"] == "2.5"
    for doc in by_component["worker"] + by_component["receiver"]:
        assert env_of(doc)["ARQ_QUEUE_NAME"]["value"] == "prgate:parked"
    # extraEnv: global on every workload, per component where given.
    for doc in workloads(docs):
        assert env_of(doc)["PYTHONFAULTHANDLER"]["value"] == "1"
    assert "ACTION_MAX_ATTEMPTS_NOTE" in env_of(backend)


@pytest.mark.parametrize("variant", list(VALUES_FILES))
def test_backend_url_is_the_backend_service(variant: str) -> None:
    docs = render(variant)
    services = {component(s): s for s in of_kind(docs, "Service")}
    backend = services["backend"]
    ports = {p["name"]: p for p in backend["spec"]["ports"]}
    # The receiver and workers talk to the internal listener, the only port serving /internal/*.
    url = f"http://{backend['metadata']['name']}:{ports['internal']['port']}"
    for name in ("receiver", "worker"):
        for doc in workload_by_component(docs)[name]:
            assert env_of(doc)["BACKEND_URL"] == {"name": "BACKEND_URL", "value": url}
    (deployment,) = workload_by_component(docs)["backend"]
    env = env_of(deployment)
    container_ports = {p["name"]: p["containerPort"] for p in only_container(deployment)["ports"]}
    assert env["BACKEND_INTERNAL_PORT"]["value"] == str(container_ports["internal"])
    assert env["BACKEND_PORT"]["value"] == str(container_ports["http"])
    assert container_ports["internal"] != container_ports["http"]


@pytest.mark.parametrize("variant", list(VALUES_FILES))
def test_each_component_holds_only_its_own_internal_key(variant: str) -> None:
    by_component = workload_by_component(render(variant))
    expected = {"backend": KEY_VARS, "receiver": {"PRGATE_RECEIVER_SECRETS"}, "worker": {"PRGATE_WORKER_SECRETS"},
                "migrate": set()}
    for name, docs in by_component.items():
        for doc in docs:
            env = env_of(doc)
            assert KEY_VARS & set(env) == expected[name], doc["metadata"]["name"]
            assert "PRGATE_INTERNAL_SECRETS" not in env
    (backend,) = by_component["backend"]
    assert "SESSION_SECRET" in env_of(backend)
    assert "optional" not in env_of(backend)["SESSION_SECRET"]["valueFrom"]["secretKeyRef"]


@pytest.mark.parametrize("variant", list(VALUES_FILES))
def test_network_policy_lets_only_receiver_and_workers_reach_the_internal_port(variant: str) -> None:
    docs = render(variant)
    (policy,) = of_kind(docs, "NetworkPolicy")
    (backend,) = workload_by_component(docs)["backend"]
    backend_labels = backend["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["spec"]["podSelector"]["matchLabels"], backend_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = policy["spec"]["ingress"]
    internal = [rule for rule in rules if any(p["port"] == "internal" for p in rule["ports"])]
    public = [rule for rule in rules if any(p["port"] == "http" for p in rule["ports"])]
    assert len(internal) == 1
    assert all(p["port"] == "internal" for p in internal[0]["ports"])  # not mixed with the public port
    allowed = internal[0]["from"]
    assert allowed, "the internal port must not be open to every pod"
    reach = {component(doc) for doc in workloads(docs)
             if any(selects(peer["podSelector"]["matchLabels"], doc["spec"]["template"]["metadata"]["labels"])
                    for peer in allowed)}
    assert reach == {"receiver", "worker"}
    assert all(set(peer) == {"podSelector"} for peer in allowed)  # no namespaceSelector / ipBlock widening it
    # The public port (ingress controller, probes, scrapes) stays open.
    assert len(public) == 1
    assert "from" not in public[0]
    disabled = template("--set", "networkPolicy.enabled=false")
    assert disabled.returncode == 0, disabled.stderr
    assert not [d for d in yaml.safe_load_all(disabled.stdout) if d and d["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize("path", ["/internal", "/internal/v2", "/"])
def test_ingress_refuses_to_route_internal_paths(path: str) -> None:
    proc = template("--set", "ingress.enabled=true", "--set-json",
                    f'ingress.paths=[{{"path":"{path}","component":"backend"}}]')
    assert proc.returncode != 0, f"an ingress path {path} rendered"
    assert "would expose /internal" in proc.stderr, proc.stderr


@pytest.mark.parametrize("variant", list(VALUES_FILES))
def test_secrets_only_come_from_secret_key_refs(variant: str) -> None:
    docs = render(variant)
    settings = values(variant)["secrets"]
    for doc in workloads(docs):
        env = env_of(doc)
        assert "GITHUB_PRIVATE_KEY" not in env, "the private key is a mounted file, never an env value"
        for var in SECRET_VARS & set(env):
            assert "value" not in env[var], f"{doc['metadata']['name']}: {var} is a plain value"
            ref = env[var]["valueFrom"]["secretKeyRef"]
            configured = settings[SECRET_VALUE_KEYS[var]]
            assert ref["name"] == (configured["name"] or settings["existingSecret"])
            assert ref["key"] == configured["key"]
            assert ref.get("optional", False) == configured.get("optional", False)
        # Whatever else comes from valueFrom is a secretKeyRef or the downward API (WORKER_ID).
        for item in env.values():
            if "valueFrom" in item:
                assert set(item["valueFrom"]) <= {"secretKeyRef", "fieldRef"}, item
    assert {"GITHUB_WEBHOOK_SECRET", "GITHUB_CLIENT_SECRET", "SESSION_SECRET", "GITHUB_PRIVATE_KEY"} <= SECRET_VARS


@pytest.mark.parametrize("variant", list(VALUES_FILES))
def test_private_key_is_a_file_from_the_secret(variant: str) -> None:
    ref = values(variant)["secrets"]["githubPrivateKey"]
    for doc in workloads(render(variant)):
        env = env_of(doc)
        if component(doc) == "migrate":
            assert "GITHUB_PRIVATE_KEY_PATH" not in env
            continue
        path = Path(env["GITHUB_PRIVATE_KEY_PATH"]["value"])
        container = only_container(doc)
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
        assert mount["readOnly"] is True
        (volume,) = [v for v in pod_spec(doc)["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == (ref["name"] or values(variant)["secrets"]["existingSecret"])
        assert volume["secret"]["items"] == [{"key": ref["key"], "path": path.name}]
        # Readable by the pod's group (fsGroup), not by others.
        assert volume["secret"]["defaultMode"] & 0o007 == 0
        assert pod_spec(doc)["securityContext"]["fsGroup"] == 10001


# --- tests: workers, services, autoscaling, ingress, monitoring -------------------------------------------------


def test_one_worker_deployment_per_queue() -> None:
    for variant in VALUES_FILES:
        docs = render(variant)
        queues = values(variant)["workers"]["queues"]
        workers = {d["metadata"]["labels"]["prgate/queue"]: d for d in workload_by_component(docs)["worker"]}
        assert list(workers) == [q["name"] for q in queues]
        hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")}
        for queue in queues:
            deployment = workers[queue["name"]]
            fullname = "prgate" if variant == "full" else f"{RELEASE}-prgate"  # full values: fullnameOverride
            assert deployment["metadata"]["name"] == f"{fullname}-worker-{queue['name']}"
            env = env_of(deployment)
            assert env["WORKER_CONCURRENCY"]["value"] == str(queue["concurrency"])
            assert env["WORKER_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
            grace = int(env["WORKER_SHUTDOWN_GRACE_SECONDS"]["value"])
            assert pod_spec(deployment)["terminationGracePeriodSeconds"] > grace
            assert only_container(deployment)["resources"] == queue["resources"]
            hpa = hpas.get(deployment["metadata"]["name"])
            if queue["hpa"]["enabled"]:
                assert hpa is not None
                assert hpa["apiVersion"] == "autoscaling/v2"
                assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
                assert hpa["spec"]["minReplicas"] == queue["hpa"]["minReplicas"]
                assert hpa["spec"]["maxReplicas"] == queue["hpa"]["maxReplicas"]
                assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
                metrics = {m["resource"]["name"] for m in hpa["spec"]["metrics"]}
                assert "cpu" in metrics
            else:
                assert hpa is None
                assert deployment["spec"]["replicas"] == queue["replicas"]


@pytest.mark.parametrize("variant", list(VALUES_FILES))
def test_selectors_match_their_pods(variant: str) -> None:
    docs = render(variant)
    deployments = of_kind(docs, "Deployment")
    for doc in deployments:
        assert selects(doc["spec"]["selector"]["matchLabels"], doc["spec"]["template"]["metadata"]["labels"])
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments]
    for service in of_kind(docs, "Service"):
        matched = [labels for labels in pod_labels if selects(service["spec"]["selector"], labels)]
        assert len(matched) == 1, service["metadata"]["name"]
        (deployment,) = [d for d in deployments if d["spec"]["template"]["metadata"]["labels"] is matched[0]]
        ports = {p["name"] for p in only_container(deployment)["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        matched = [labels for labels in pod_labels if selects(pdb["spec"]["selector"]["matchLabels"], labels)]
        assert len(matched) == 1, pdb["metadata"]["name"]


def test_ingress_routes_only_public_paths() -> None:
    docs = render("full")
    (ingress,) = of_kind(docs, "Ingress")
    services = by_name(docs, "Service")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "prgate-tls", "hosts": ["prgate.example.com",
                                                                             "hooks.example.com"]}]
    routes: dict[str, dict[str, str]] = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            service = path["backend"]["service"]
            assert service["name"] in services
            assert service["port"]["name"] in {p["name"] for p in services[service["name"]]["spec"]["ports"]}
            routes.setdefault(rule["host"], {})[path["path"]] = component(services[service["name"]])
    assert routes["prgate.example.com"] == {
        "/webhooks/github": "receiver", "/webhooks/bitbucket": "receiver",
        "/verify": "backend", "/auth": "backend", "/dashboard": "backend",
        "/api/v1": "backend", "/github-app": "backend", "/openapi.json": "backend", "/api/docs": "backend",
    }
    assert routes["hooks.example.com"] == {"/webhooks/github": "receiver", "/webhooks/bitbucket": "receiver"}
    assert not any(p.startswith("/internal") for paths in routes.values() for p in paths)
    assert not of_kind(render("default"), "Ingress")


def test_service_monitors_scrape_metrics_ports() -> None:
    docs = render("full")
    services = of_kind(docs, "Service")
    monitors = of_kind(docs, "ServiceMonitor")
    assert {(m["apiVersion"], m["kind"]) for m in monitors} == CUSTOM_KINDS
    assert {component(m) for m in monitors} == {"backend", "receiver", "worker"}
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        selected = [s for s in services if selects(monitor["spec"]["selector"]["matchLabels"],
                                                   s["metadata"]["labels"])]
        assert selected, monitor["metadata"]["name"]
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["path"] == "/metrics"
            for service in selected:
                assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert not of_kind(render("default"), "ServiceMonitor")


def test_notes_render() -> None:
    proc = helm("install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE,
                "-f", str(FULL_VALUES))
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "https://prgate.example.com/webhooks/github" in notes
    assert "prgate-postgres/url" in notes


# --- tests: values.schema.json ----------------------------------------------------------------------------------


def test_values_schema_is_draft_07_and_accepts_the_shipped_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    for variant in VALUES_FILES:
        jsonschema.Draft7Validator(schema).validate(values(variant))


@pytest.mark.parametrize("args", [
    ["--set", "replicas=abc"],
    ["--set", "backend.replicas=abc"],
    ["--set", "receiver.replica=3"],
    ["--set", "image.pullPolicy=Sometimes"],
    ["--set", "config.logLevel=LOUD"],
    ["--set", "config.logFormat=pretty"],
    ["--set", "secrets.databaseUrl.key="],
    ["--set", "secrets.sessionSecret.optional=true"],  # the backend refuses to start without it
    ["--set", "secrets.workerSecrets.optional=true"],
    ["--set", "secrets.internalSecrets.key=internal-secrets"],  # retired
    ["--set", "networkPolicy.enabled=maybe"],
    ["--set-json", 'workers.queues=[{"name":"actions","replicas":2,"concurrency":0}]'],
    ["--set-json", 'workers.queues=[{"name":"Actions_Queue","replicas":2,"concurrency":4}]'],
    ["--set-json", "workers.queues=[]"],
    ["--set-json", 'ingress.paths=[{"path":"/internal","component":"database"}]'],
    ["--set", "backend.podDisruptionBudget.minAvailable=1,backend.podDisruptionBudget.maxUnavailable=1"],
])
def test_values_schema_rejects_bad_values(args: list[str]) -> None:
    proc = template(*args)
    assert proc.returncode != 0, f"helm template {' '.join(args)} rendered"
    assert "schema" in proc.stderr, proc.stderr


def test_values_schema_rejects_a_bad_values_file(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("backend:\n  replica: 3\nworkers:\n  queues:\n    - name: actions\n      replicas: two\n"
                   "      concurrency: 8\n")
    proc = template("-f", str(bad))
    assert proc.returncode != 0
    assert "'replica' not allowed" in proc.stderr, proc.stderr
    assert "/workers/queues/0/replicas" in proc.stderr, proc.stderr
