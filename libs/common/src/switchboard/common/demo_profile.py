"""The dev profile ``switchboard-dev run`` applies to each service it starts.

Each service gets a few ``SWITCHBOARD_*`` variables so that a fresh checkout routes live:
the example rules for the router, the dev tenants' secrets (``examples/dev/``, DEV ONLY)
for the two ingest services, the inbox page for the notifier, and loopback-only listeners.
A variable already in the environment is never replaced: the user's settings win.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_PORTS",
    "DevPaths",
    "ProfileError",
    "child_env",
    "dev_profile",
    "find_dev_paths",
    "load_email_profile",
    "load_yaml",
    "service_url",
]

DEFAULT_PORTS: dict[str, int] = {"ingest_email": 8081, "ingest_social": 8082, "router": 8083, "notifier": 8084}
DEFAULT_SMTP_PORT = 2525
LOOPBACK = "127.0.0.1"

_DEV_DIR = Path("examples") / "dev"
_RULES = Path("services") / "router" / "examples" / "rules.yaml"
_EMAIL_SETTINGS = ("recipients", "mailgun_signing_keys", "sendgrid_secrets", "postmark_basic_auth")


class ProfileError(Exception):
    """A dev profile file is missing or unreadable (the message names the file and the problem)."""


@dataclass(frozen=True, slots=True)
class DevPaths:
    """Where the dev profile's files are; ``None`` for what could not be found."""

    dev_dir: Path | None
    rules_file: Path | None

    @property
    def channels_file(self) -> Path | None:
        return self._in_dev_dir("channels.yaml")

    @property
    def email_file(self) -> Path | None:
        return self._in_dev_dir("email.yaml")

    @property
    def roster_file(self) -> Path | None:
        return self._in_dev_dir("roster.yaml")

    def _in_dev_dir(self, name: str) -> Path | None:
        if self.dev_dir is None:
            return None
        path = self.dev_dir / name
        return path if path.is_file() else None


def _repo_roots(extra: Sequence[Path] = ()) -> list[Path]:
    """Where a checkout may be: given roots, the working directory and its parents, this file's checkout."""
    here = Path(__file__).resolve()
    candidates = [*extra, Path.cwd(), *Path.cwd().parents]
    if len(here.parents) > 5:  # <repo>/libs/common/src/switchboard/common/demo_profile.py in a checkout
        candidates.append(here.parents[5])
    roots: list[Path] = []
    for root in candidates:
        if root not in roots:
            roots.append(root)
    return roots


def _router_checkout() -> Path | None:
    """``services/router`` of the installed router package when it is installed from a checkout (editable)."""
    try:
        spec = importlib.util.find_spec("switchboard.router")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    origin = Path(spec.origin).resolve()  # services/router/src/switchboard/router/__init__.py
    return origin.parents[3] if len(origin.parents) > 3 else None


def find_dev_paths(roots: Sequence[Path] = ()) -> DevPaths:
    """The dev directory and the example rules, looked for in ``roots`` first, then as :func:`_repo_roots`."""
    search = _repo_roots(roots)
    dev_dir = next((root / _DEV_DIR for root in search if (root / _DEV_DIR / "roster.yaml").is_file()), None)
    rules = next((root / _RULES for root in search if (root / _RULES).is_file()), None)
    if rules is None:
        router = _router_checkout()
        if router is not None and (router / "examples" / "rules.yaml").is_file():
            rules = router / "examples" / "rules.yaml"
    return DevPaths(dev_dir=dev_dir.resolve() if dev_dir else None, rules_file=rules.resolve() if rules else None)


def load_yaml(path: Path) -> Any:
    """A YAML file's content, or :class:`ProfileError` naming the file."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML comes with the router and ingest_social
        raise ProfileError(f"reading {path} needs PyYAML (pip install pyyaml)") from None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"cannot read {path}: {exc}") from None


def load_email_profile(path: Path) -> dict[str, dict[str, Any]]:
    """The ingest_email settings of ``examples/dev/email.yaml``: recipients and webhook secrets."""
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(data) - set(_EMAIL_SETTINGS))
    if unknown:
        raise ProfileError(f"{path}: unknown keys {unknown}; known: {list(_EMAIL_SETTINGS)}")
    out: dict[str, dict[str, Any]] = {}
    for key in _EMAIL_SETTINGS:
        value = data.get(key) or {}
        if not isinstance(value, dict):
            raise ProfileError(f"{path}: {key} must be a mapping")
        out[key] = value
    return out


def service_url(name: str, env: Mapping[str, str]) -> str:
    """The loopback URL a service started with ``env`` listens on."""
    port = env.get("SWITCHBOARD_HTTP_PORT") or str(DEFAULT_PORTS[name])
    return f"http://{LOOPBACK}:{port}"


def dev_profile(paths: DevPaths, ports: Mapping[str, int] | None = None) -> dict[str, dict[str, str]]:
    """The variables for each service (by service name); raises :class:`ProfileError` for a bad file."""
    ports = {**DEFAULT_PORTS, **(ports or {})}
    common = {"SWITCHBOARD_HTTP_HOST": LOOPBACK, "SWITCHBOARD_LOG_FORMAT": "console"}
    router_url = f"http://{LOOPBACK}:{ports['router']}"
    email: dict[str, str] = {**common, "SWITCHBOARD_SMTP_HOST": LOOPBACK}
    if paths.email_file is not None:
        for key, value in load_email_profile(paths.email_file).items():
            email[f"SWITCHBOARD_{key.upper()}"] = json.dumps(value, separators=(",", ":"))
    social = dict(common)
    if paths.channels_file is not None:
        social["SWITCHBOARD_INGEST_SOCIAL_CHANNELS_FILE"] = str(paths.channels_file)
    router = {**common, "SWITCHBOARD_ADVERTISED_URL": router_url}
    if paths.rules_file is not None:
        router["SWITCHBOARD_RULES_FILE"] = str(paths.rules_file)
    notifier = {
        **common,
        "SWITCHBOARD_INBOX_ENABLED": "true",
        "SWITCHBOARD_ROUTER_URL": router_url,
    }
    return {"ingest_email": email, "ingest_social": social, "router": router, "notifier": notifier}


def child_env(base: Mapping[str, str], defaults: Mapping[str, str]) -> dict[str, str]:
    """``base`` plus each of ``defaults`` that ``base`` does not set (set, even to empty, means the user's)."""
    env = dict(base)
    for key, value in defaults.items():
        env.setdefault(key, value)
    return env
