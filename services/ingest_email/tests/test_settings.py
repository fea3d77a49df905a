"""Settings from the environment, and the composition root built from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from switchboard.ingest_email.app import INGEST_EMAIL, build_app
from switchboard.ingest_email.routing import Route
from switchboard.ingest_email.settings import IngestEmailSettings


def test_defaults() -> None:
    settings = IngestEmailSettings()
    assert settings.http_port == 8081
    assert settings.smtp_port == 2525
    assert settings.smtp_max_message_bytes == 25 * 1024 * 1024
    assert settings.service_name == "ingest-email"


def test_from_environment_with_secrets_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SWITCHBOARD_RECIPIENTS",
        json.dumps({"support@acme.example": {"tenant": "acme", "inbox": "support"}, "@globex.example": "globex"}),
    )
    monkeypatch.setenv("SWITCHBOARD_MAILGUN_SIGNING_KEYS", json.dumps({"acme": "mg-very-secret"}))
    monkeypatch.setenv(
        "SWITCHBOARD_IMAP_MAILBOXES",
        json.dumps(
            [{"name": "acme", "host": "imap.acme.example", "username": "u", "password": "imap-pw", "tenant": "acme"}]
        ),
    )
    settings = IngestEmailSettings()
    recipients = settings.recipient_map()
    assert recipients.resolve("support+t@acme.example") == Route("acme", "support")
    assert recipients.resolve("x@globex.example") == Route("globex")
    assert settings.mailgun_signing_keys["acme"].get_secret_value() == "mg-very-secret"
    masked = json.dumps(settings.masked())
    assert "mg-very-secret" not in masked
    assert "imap-pw" not in masked
    assert settings.imap_mailboxes[0].mailbox().password == "imap-pw"


def test_invalid_tenant_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_RECIPIENTS", json.dumps({"a@b.example": "Not A Tenant"}))
    with pytest.raises(ValidationError):
        IngestEmailSettings()


def test_build_app_composes_smtp_webhooks_and_imap() -> None:
    settings = IngestEmailSettings(
        smtp_port=0,
        recipients={"support@acme.example": "acme"},
        imap_mailboxes=[
            {"name": "acme", "host": "imap.acme.example", "username": "u", "password": "p", "tenant": "acme"}
        ],
    )
    app = build_app(settings)
    parts = app[INGEST_EMAIL]
    assert parts.smtp is not None
    assert parts.smtp.options.max_message_bytes == 25 * 1024 * 1024
    assert [p.mailbox.name for p in parts.imap] == ["acme"]
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/inbound/mailgun/{tenant}", "/inbound/postmark/{tenant}", "/healthz", "/readyz", "/metrics"} <= paths


def test_blob_store_and_sender_verification_settings(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        IngestEmailSettings(blob_dir=tmp_path, blob_s3_bucket="b")
    with pytest.raises(ValidationError):
        IngestEmailSettings(blob_s3_bucket="b", blob_s3_access_key_id="k")
    s = IngestEmailSettings(
        blob_s3_bucket="b",
        blob_s3_access_key_id="AKIA-EXAMPLE",
        blob_s3_secret_access_key="very-secret",
        sender_trusted_authserv_ids=frozenset({"MX.Help.Example"}),
    )
    options = s.s3_options()
    assert options is not None
    assert options.secret_access_key == "very-secret"
    assert "very-secret" not in repr(s.masked())
    policy = s.verification_policy()
    assert policy.trusted_authserv_ids == frozenset({"mx.help.example"})
    assert policy.dkim
    assert IngestEmailSettings().verification_policy().trusted_authserv_ids == frozenset()
