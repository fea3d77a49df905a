"""PII stays out of logs; secrets stay out of the logged settings."""

from __future__ import annotations

import json

import pytest
import structlog
from pydantic import SecretStr, ValidationError

from switchboard.common.logging import RedactPII, configure_logging, get_logger, scrub
from switchboard.common.settings import KafkaSettings, ServiceSettings


def test_scrub_masks_addresses_and_phone_numbers() -> None:
    line = "from jane.doe+vip@example.co.uk call +1 (415) 555-0134 or 020 7946 0958, order 12345"
    out = scrub(line)
    assert "jane" not in out
    assert "555" not in out
    assert "7946" not in out
    assert "[email]" in out
    assert out.count("[phone]") == 2
    assert "order 12345" in out  # short numbers are not phone numbers


def test_processor_redacts_content_and_identity_fields() -> None:
    event = RedactPII()(
        None,
        "info",
        {
            "event": "mail from bob@example.com",
            "text": "my card is 4111",
            "subject": "Refund",
            "email": "x@y.z",
            "meta": {"phone": "+4912345678", "channel": "sms"},
            "count": 3,
        },
    )
    assert event["event"] == "mail from [email]"
    assert event["text"] == "[15 chars redacted]"
    assert event["subject"] == "[6 chars redacted]"
    assert event["email"] == "[redacted]"
    assert event["meta"] == {"phone": "[redacted]", "channel": "sms"}
    assert event["count"] == 3


def test_configured_logger_writes_json_without_pii(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json", service="test")
    try:
        get_logger("t").info("delivered", recipient="ann@example.org", body="secret words", tenant_id="acme")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        payload = json.loads(line)
        assert payload["service"] == "test"
        assert payload["tenant_id"] == "acme"
        assert "ann@example.org" not in line
        assert "secret words" not in line
    finally:
        structlog.reset_defaults()


def test_settings_from_environment_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_KAFKA_BOOTSTRAP", "kafka-0:9093,kafka-1:9093")
    monkeypatch.setenv("SWITCHBOARD_KAFKA_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("SWITCHBOARD_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SWITCHBOARD_LOG_LEVEL", "DEBUG")
    settings = ServiceSettings()
    assert settings.kafka.bootstrap == "kafka-0:9093,kafka-1:9093"
    assert settings.log_level == "debug"
    assert isinstance(settings.kafka.sasl_password, SecretStr)
    masked = json.dumps(settings.masked())
    assert "hunter2" not in masked
    assert '"sasl_password": "**********"' in masked
    assert settings.kafka.client_options()["sasl_plain_password"] == "hunter2"


def test_settings_are_frozen_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = KafkaSettings()
    with pytest.raises(ValidationError):
        settings.bootstrap = "elsewhere:9092"  # type: ignore[misc]
    monkeypatch.setenv("SWITCHBOARD_KAFKA_SECURITY_PROTOCOL", "CARRIER_PIGEON")
    with pytest.raises(ValidationError, match="security_protocol"):
        KafkaSettings()
