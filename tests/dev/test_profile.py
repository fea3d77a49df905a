"""The dev profile of ``switchboard-dev run``: what each service gets, and never over the user's settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.common.demo_profile import (
    DevPaths,
    ProfileError,
    child_env,
    dev_profile,
    find_dev_paths,
    load_email_profile,
    service_url,
)
from switchboard.ingest_email.settings import IngestEmailSettings
from switchboard.ingest_social.sdk import load_channels_config
from switchboard.notifier.settings import NotifierSettings
from switchboard.router.settings import RouterSettings

REPO = Path(__file__).resolve().parents[2]

names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=12)
envs = st.dictionaries(names, st.text(max_size=8), max_size=8)


@given(base=envs, defaults=envs)
def test_child_env_never_replaces_what_the_user_set(base: dict[str, str], defaults: dict[str, str]) -> None:
    env = child_env(base, defaults)
    assert {k: env[k] for k in base} == base  # every user value kept, even an empty one
    assert {k: env[k] for k in defaults if k not in base} == {k: v for k, v in defaults.items() if k not in base}
    assert set(env) == set(base) | set(defaults)


def test_the_checkout_is_found_from_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # not in the checkout: found through this package's own location
    paths = find_dev_paths()
    assert paths.dev_dir == REPO / "examples" / "dev"
    assert paths.rules_file == REPO / "services" / "router" / "examples" / "rules.yaml"
    assert paths.roster_file is not None
    assert paths.channels_file is not None
    assert paths.email_file is not None


def test_user_settings_win_over_the_profile() -> None:
    profile = dev_profile(find_dev_paths([REPO]))
    user = {"SWITCHBOARD_RULES_FILE": "/srv/my-rules.yaml", "SWITCHBOARD_HTTP_HOST": "", "PATH": "/bin"}
    router = child_env(user, profile["router"])
    assert router["SWITCHBOARD_RULES_FILE"] == "/srv/my-rules.yaml"
    assert router["SWITCHBOARD_HTTP_HOST"] == ""
    assert router["SWITCHBOARD_ADVERTISED_URL"] == "http://127.0.0.1:8083"
    notifier = child_env(user, profile["notifier"])
    assert notifier["SWITCHBOARD_INBOX_ENABLED"] == "true"
    assert "SWITCHBOARD_RULES_FILE" in notifier  # the user's own variable reaches every child
    assert "SWITCHBOARD_INBOX_ENABLED" not in router  # each service gets only its own profile


def test_each_profile_is_read_by_the_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = find_dev_paths([REPO])
    profile = dev_profile(paths, {"router": 9183})

    def settings_of(service: str) -> dict[str, str]:
        for key in [k for k in os.environ if k.startswith("SWITCHBOARD_")]:
            monkeypatch.delenv(key)
        for key, value in profile[service].items():
            monkeypatch.setenv(key, value)
        return profile[service]

    settings_of("ingest_email")
    email = IngestEmailSettings()
    assert email.recipient_map().resolve("support@acme.example") is not None
    route = email.recipient_map().resolve("billing@globex.example")
    assert route is not None
    assert route.tenant_id == "globex"
    assert set(email.mailgun_signing_keys) == {"acme", "globex"}
    assert email.smtp_host == email.http_host == "127.0.0.1"

    settings_of("ingest_social")
    channels = load_channels_config(profile["ingest_social"]["SWITCHBOARD_INGEST_SOCIAL_CHANNELS_FILE"])
    for adapter in ("messenger", "whatsapp", "telegram", "twilio-sms", "twilio-voice", "webchat"):
        assert set(channels.adapters[adapter].tenants) == {"acme", "globex"}, adapter

    settings_of("router")
    router = RouterSettings()
    assert router.rules_file == paths.rules_file
    assert router.base_url() == "http://127.0.0.1:9183"

    settings_of("notifier")
    notifier = NotifierSettings()
    assert notifier.inbox_enabled is True
    assert notifier.router_url == "http://127.0.0.1:9183"


def test_missing_files_leave_the_services_unconfigured_not_broken() -> None:
    profile = dev_profile(DevPaths(dev_dir=None, rules_file=None))
    assert "SWITCHBOARD_RULES_FILE" not in profile["router"]
    assert "SWITCHBOARD_INGEST_SOCIAL_CHANNELS_FILE" not in profile["ingest_social"]
    assert "SWITCHBOARD_RECIPIENTS" not in profile["ingest_email"]


def test_a_bad_email_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "email.yaml"
    bad.write_text("recipients: {a@b.example: acme}\nsmtp_password: x\n")
    with pytest.raises(ProfileError, match="unknown keys"):
        load_email_profile(bad)
    bad.write_text("recipients: [a, b]\n")
    with pytest.raises(ProfileError, match="recipients must be a mapping"):
        load_email_profile(bad)


def test_service_url_follows_the_port_setting() -> None:
    assert service_url("notifier", {}) == "http://127.0.0.1:8084"
    assert service_url("notifier", {"SWITCHBOARD_HTTP_PORT": "9000"}) == "http://127.0.0.1:9000"


def test_the_dev_secrets_are_marked_dev_only() -> None:
    paths = find_dev_paths([REPO])
    assert paths.channels_file is not None
    assert paths.email_file is not None
    for path in (paths.channels_file, paths.email_file):
        assert "DEV ONLY" in path.read_text()
    recipients = json.loads(dev_profile(paths)["ingest_email"]["SWITCHBOARD_RECIPIENTS"])
    assert all(key.endswith(".example") for key in recipients)  # reserved names, never a real mailbox
