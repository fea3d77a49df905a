"""The manifests against the services' real settings: every ``SWITCHBOARD_*`` name is a field.

Every overlay (and the base with each component) is rendered; for each container, every
environment variable it gets (``env``, the keys of ConfigMaps and Secrets given with
``envFrom``, as documented in ``deploy/k8s/secret.example.yaml``) is checked against the
pydantic settings class of that service: the env names are derived from the model's
``env_prefix`` and its field names and aliases, so a renamed or removed setting fails here.
Every secret setting (a ``SecretStr`` anywhere in its type) must come from a Secret, and the
values the manifests and the example Secrets give must validate with the settings class.
KEDA triggers must name the services' real consumer groups and topics.
"""

from __future__ import annotations

import importlib
import os
import re
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices, AliasPath, BaseModel, Field, SecretBytes, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from switchboard.common.settings import ServiceSettings
from switchboard.common.topics import CONTRACT_TOPICS

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
SECRET_EXAMPLE = K8S / "secret.example.yaml"

Resource = dict[str, Any]

OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
COMPONENTS = sorted(p.name for p in (K8S / "components").iterdir() if (p / "kustomization.yaml").is_file())
TARGETS = [f"overlay:{name}" for name in OVERLAYS] + ["base"] + [f"base+{name}" for name in COMPONENTS]

# Deployment -> the module holding its settings class (the one ServiceSettings subclass there).
SETTINGS_MODULES = {
    "switchboard-ingest-email": "switchboard.ingest_email.settings",
    "switchboard-ingest-social": "switchboard.ingest_social.settings",
    "switchboard-router": "switchboard.router.settings",
    "switchboard-notifier": "switchboard.notifier.settings",
}
# The topics Job runs `switchboard-admin`, which reads the shared ServiceSettings.
JOB_SETTINGS: dict[str, type[BaseSettings]] = {"switchboard-create-topics": ServiceSettings}
HTTP_PORTS = {"switchboard-router": 8083}
# The topics each Kafka consumer reads in its consumer group (the contract, docs/architecture.md).
CONSUMED_TOPICS = {
    "switchboard-router": ("inbound.v1", "agent-events.v1", "delivery.v1"),
    "switchboard-notifier": ("dispatch.v1",),
}
ENV_PREFIX = "SWITCHBOARD_"
REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


# --------------------------------------------------------------------------- settings classes


@dataclass(frozen=True)
class Setting:
    env: str
    model: type[BaseSettings]
    field: str
    secret: bool


def _settings_class(deployment: str) -> type[BaseSettings]:
    if deployment in JOB_SETTINGS:
        return JOB_SETTINGS[deployment]
    assert deployment in SETTINGS_MODULES, f"no settings class is known for {deployment}"
    module = importlib.import_module(SETTINGS_MODULES[deployment])
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, ServiceSettings) and obj.__module__ == module.__name__
    ]
    assert len(found) == 1, f"{module.__name__}: expected one ServiceSettings subclass, found {found}"
    return found[0]


def _nested_settings(annotation: Any) -> type[BaseSettings] | None:
    """A field typed as another settings class (``kafka: KafkaSettings``) reads its own prefix."""
    if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
        return annotation
    return None


def _holds_secret(annotation: Any, seen: frozenset[type] = frozenset()) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in seen:
        return any(_holds_secret(f.annotation, seen | {annotation}) for f in annotation.model_fields.values())
    return any(_holds_secret(arg, seen) for arg in typing.get_args(annotation))


def _field_env_names(prefix: str, name: str, info: FieldInfo, case_sensitive: bool) -> list[str]:
    alias = info.validation_alias if info.validation_alias is not None else info.alias
    if alias is None:
        names = [f"{prefix}{name}"]
    elif isinstance(alias, str):
        names = [alias]
    else:
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        names = [c if isinstance(c, str) else str(c.path[0]) for c in choices if isinstance(c, str | AliasPath)]
    return names if case_sensitive else [n.upper() for n in names]


def settings_env(model: type[BaseSettings]) -> dict[str, Setting]:
    """Every env name ``model`` reads, as pydantic-settings derives it."""
    config = model.model_config
    assert not config.get("env_nested_delimiter"), f"{model.__name__}: nested delimiters are not derived here"
    prefix = config.get("env_prefix", "")
    case_sensitive = bool(config.get("case_sensitive", False))
    found: dict[str, Setting] = {}
    for name, info in model.model_fields.items():
        if nested := _nested_settings(info.annotation):
            found.update(settings_env(nested))
            continue
        for env in _field_env_names(prefix, name, info, case_sensitive):
            found[env] = Setting(env, model, name, _holds_secret(info.annotation))
    return found


def test_env_names_are_derived_from_prefix_fields_and_aliases() -> None:
    class Inner(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="X_INNER_")
        token: SecretStr | None = None

    class Mailbox(BaseModel):
        password: SecretStr

    class Outer(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="X_")
        port: int = 1
        renamed: str = Field(default="", validation_alias="OTHER_NAME")
        either: str = Field(default="", validation_alias=AliasChoices("first", "X_SECOND"))
        boxes: list[Mailbox] = Field(default_factory=list)
        keys: dict[str, SecretStr] = Field(default_factory=dict)
        inner: Inner = Field(default_factory=Inner)

    env = settings_env(Outer)
    assert set(env) == {"X_PORT", "OTHER_NAME", "FIRST", "X_SECOND", "X_BOXES", "X_KEYS", "X_INNER_TOKEN"}
    assert {name for name, s in env.items() if s.secret} == {"X_BOXES", "X_KEYS", "X_INNER_TOKEN"}
    assert env["X_INNER_TOKEN"].model is Inner


def test_the_real_settings_classes_are_found() -> None:
    router = settings_env(_settings_class("switchboard-router"))
    assert {"SWITCHBOARD_RULES_FILE", "SWITCHBOARD_CONSUMER_GROUP", "SWITCHBOARD_ADVERTISED_URL"} <= set(router)
    assert "SWITCHBOARD_KAFKA_BOOTSTRAP" in router
    assert router["SWITCHBOARD_KAFKA_SASL_PASSWORD"].secret
    assert not router["SWITCHBOARD_KAFKA_SASL_USERNAME"].secret
    assert "SWITCHBOARD_KAFKA" not in router, "a nested settings class is read by its own prefix"


# --------------------------------------------------------------------------- what a container gets


@dataclass(frozen=True)
class Provided:
    """One environment variable a container gets, and where it comes from."""

    env: str
    source: str  # value | fieldRef | configMap | secret (envFrom) | secretKeyRef | ...
    origin: str  # the ConfigMap or Secret (and key), or "" for a literal value
    value: str | None  # the literal, ConfigMap or example-Secret value; None for fieldRef and the like


def _documented_secrets() -> dict[str, dict[str, str]]:
    docs = [doc for doc in yaml.safe_load_all(SECRET_EXAMPLE.read_text()) if doc]
    return {doc["metadata"]["name"]: {**doc.get("stringData", {})} for doc in docs}


def _config_map(resources: list[Resource], name: str) -> dict[str, str]:
    matches = [r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"ConfigMap {name} is referenced but not rendered"
    data: dict[str, str] = matches[0].get("data", {})
    return data


def _provided(resources: list[Resource], container: Resource) -> list[Provided]:
    secrets = _documented_secrets()
    out: list[Provided] = []
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            data = _config_map(resources, name)
            out += [Provided(prefix + key, "configMap", name, value) for key, value in data.items()]
        else:
            name = source["secretRef"]["name"]
            assert name in secrets, f"Secret {name} is not documented in secret.example.yaml"
            out += [Provided(prefix + key, "secret", name, value) for key, value in secrets[name].items()]
    # env entries come after envFrom and win over it
    for entry in container.get("env", []):
        if "value" in entry:
            out.append(Provided(entry["name"], "value", "", entry["value"]))
            continue
        ((kind, ref),) = entry["valueFrom"].items()
        if kind == "secretKeyRef":
            value = secrets.get(ref["name"], {}).get(ref["key"])
            out.append(Provided(entry["name"], kind, f"{ref['name']}/{ref['key']}", value))
        elif kind == "configMapKeyRef":
            out.append(Provided(entry["name"], kind, ref["name"], _config_map(resources, ref["name"]).get(ref["key"])))
        else:
            out.append(Provided(entry["name"], kind, "", None))
    return out


def _containers(resources: list[Resource]) -> Iterator[tuple[str, Resource]]:
    for resource in resources:
        if resource["kind"] in ("Deployment", "Job"):
            for container in resource["spec"]["template"]["spec"]["containers"]:
                yield resource["metadata"]["name"], container


def _effective(provided: list[Provided]) -> dict[str, Provided]:
    """What the container sees: later sources win (env over envFrom), as in Kubernetes."""
    return {p.env: p for p in provided}


# --------------------------------------------------------------------------- the checks


@pytest.mark.parametrize("target", TARGETS)
def test_every_switchboard_env_name_is_a_setting_of_its_service(
    render: Callable[[str], list[Resource]], target: str
) -> None:
    resources = render(target)
    checked = 0
    for owner, container in _containers(resources):
        known = settings_env(_settings_class(owner))
        provided = _provided(resources, container)
        referenced = {m for p in provided if p.source == "value" and p.value for m in REFERENCE.findall(p.value)}
        for item in provided:
            where = f"{target}: {owner}: {item.env} ({item.source} {item.origin})".rstrip()
            if item.env.startswith(ENV_PREFIX):
                assert item.env in known, f"{where} is not a setting of {_settings_class(owner).__name__}"
                checked += 1
            else:
                assert item.source not in ("configMap", "secret"), f"{where}: a shared key that no setting reads"
                assert item.env in referenced, f"{where}: neither a setting nor used by one"
    assert checked, f"{target}: no SWITCHBOARD_* variables found"


@pytest.mark.parametrize("target", TARGETS)
def test_every_secret_setting_comes_from_a_secret(render: Callable[[str], list[Resource]], target: str) -> None:
    resources = render(target)
    for owner, container in _containers(resources):
        model = _settings_class(owner)
        secret_settings = {env for env, setting in settings_env(model).items() if setting.secret}
        provided = _effective(_provided(resources, container))
        for env in sorted(secret_settings):
            where = f"{target}: {owner}: {env} ({model.__name__})"
            assert env in provided, f"{where} is a secret setting that no Secret provides"
            assert provided[env].source in ("secret", "secretKeyRef"), (
                f"{where} must come from a Secret, not {provided[env].source} {provided[env].origin}"
            )


@pytest.mark.parametrize("target", TARGETS)
def test_the_given_values_validate_with_the_settings_class(
    render: Callable[[str], list[Resource]], target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = render(target)
    for owner, container in _containers(resources):
        model = _settings_class(owner)
        provided = _effective(_provided(resources, container))
        with monkeypatch.context() as env:
            for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
                env.delenv(name)
            for item in provided.values():
                if item.value is not None and item.env.startswith(ENV_PREFIX):
                    # the kubelet expands $(VAR); a placeholder stands in for a downward-API value
                    env.setenv(item.env, REFERENCE.sub("10.0.0.7", item.value))
            settings = model()
        if port := HTTP_PORTS.get(owner):
            assert getattr(settings, "http_port", None) == port, owner


@pytest.mark.parametrize("target", TARGETS)
def test_router_advertises_its_own_pod_address(render: Callable[[str], list[Resource]], target: str) -> None:
    resources = render(target)
    (container,) = [c for owner, c in _containers(resources) if owner == "switchboard-router"]
    names = [e["name"] for e in container["env"]]
    env = {e["name"]: e for e in container["env"]}
    url = env["SWITCHBOARD_ADVERTISED_URL"]["value"]
    assert url == f"http://$(POD_IP):{HTTP_PORTS['switchboard-router']}"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert names.index("POD_IP") < names.index("SWITCHBOARD_ADVERTISED_URL"), "$(POD_IP) must be defined first"
    assert (
        env["SWITCHBOARD_CONSUMER_GROUP"]["value"]
        == _settings_class("switchboard-router").model_fields["consumer_group"].default
    ), "the router's group id is part of its identity (changelog, KEDA): keep the default"


@pytest.mark.parametrize("target", TARGETS)
def test_social_channels_file_is_a_mounted_secret(render: Callable[[str], list[Resource]], target: str) -> None:
    resources = render(target)
    (deployment,) = [
        r for r in resources if r["kind"] == "Deployment" and r["metadata"]["name"] == "switchboard-ingest-social"
    ]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = PurePosixPath(
        next(e["value"] for e in container["env"] if e["name"] == "SWITCHBOARD_INGEST_SOCIAL_CHANNELS_FILE")
    )
    (mount,) = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == path.parent]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    secret = volume["secret"]
    assert {item["path"]: item["key"] for item in secret["items"]}[path.name] in _documented_secrets()[
        secret["secretName"]
    ]


def test_the_example_channels_file_loads_with_the_adapters(tmp_path: Path) -> None:
    from switchboard.ingest_social.sdk.config import load_channels_config
    from switchboard.ingest_social.service import default_registry

    path = tmp_path / "channels.yaml"
    path.write_text(_documented_secrets()["switchboard-ingest-social"]["channels.yaml"])
    adapters = default_registry(discover=False).create_enabled(load_channels_config(path))
    assert adapters, "the example enables at least one adapter"
    path.write_text("adapters: {}\n")  # what docs/operations.md suggests to enable none
    assert default_registry(discover=False).create_enabled(load_channels_config(path)) == []


@pytest.mark.parametrize("target", [t for t in TARGETS if t in ("overlay:production-keda", "base+keda")])
def test_keda_scales_on_the_real_consumer_groups_and_topics(
    render: Callable[[str], list[Resource]], target: str
) -> None:
    resources = render(target)
    containers = dict(_containers(resources))
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in resources if t["kind"] == "KafkaTopic"}
    scaled = [r for r in resources if r["kind"] == "ScaledObject"]
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == set(CONSUMED_TOPICS)
    for scaled_object in scaled:
        owner = scaled_object["spec"]["scaleTargetRef"]["name"]
        model = _settings_class(owner)
        provided = _effective(_provided(resources, containers[owner]))
        group = provided["SWITCHBOARD_CONSUMER_GROUP"].value if "SWITCHBOARD_CONSUMER_GROUP" in provided else None
        group = group or model.model_fields["consumer_group"].default
        prefix = provided["SWITCHBOARD_TOPIC_PREFIX"].value if "SWITCHBOARD_TOPIC_PREFIX" in provided else None
        prefix = prefix if prefix is not None else ServiceSettings.model_fields["topic_prefix"].default
        kafka = [t for t in scaled_object["spec"]["triggers"] if t["type"] == "kafka"]
        assert kafka, f"{owner}: no lag trigger"
        for trigger in kafka:
            meta = trigger["metadata"]
            assert meta["consumerGroup"] == group, (
                f"{owner}: KEDA watches {meta['consumerGroup']}, the service uses {group}"
            )
            assert meta["bootstrapServersFromEnv"] in provided, f"{owner}: {meta['bootstrapServersFromEnv']} not set"
        topics = sorted(t["metadata"].get("topic", "") for t in kafka)
        assert topics == sorted(f"{prefix}{name}" for name in CONSUMED_TOPICS[owner]), owner
        assert all(name.removeprefix(prefix) in CONTRACT_TOPICS for name in topics)
        for topic in topics:
            if topic in partitions:
                assert scaled_object["spec"]["maxReplicaCount"] <= partitions[topic], f"{owner}: idle replicas"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_resource_has_a_namespace(render: Callable[[str], list[Resource]], overlay: str) -> None:
    resources = render(f"overlay:{overlay}")
    namespaces = {r["metadata"].get("namespace") for r in resources}
    assert len(namespaces) == 1, f"{overlay}: resources in {namespaces}"
    assert None not in namespaces, f"{overlay}: some resources have no namespace"
