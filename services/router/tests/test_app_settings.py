"""The router's producer does not linger unless the operator set a linger."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.common.runtime import KAFKA, SETTINGS
from switchboard.common.settings import KafkaSettings
from switchboard.router.app import build_app, producer_settings
from switchboard.router.rules import parse_rules
from switchboard.router.settings import RouterSettings

RULES = "tenants:\n  acme:\n    queues:\n      - id: general\n        match: {}\n"


def test_no_linger_by_default_and_the_operators_linger_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWITCHBOARD_KAFKA_LINGER_MS", raising=False)
    assert producer_settings(KafkaSettings()).linger_ms == 0
    assert producer_settings(KafkaSettings(linger_ms=7)).linger_ms == 7
    monkeypatch.setenv("SWITCHBOARD_KAFKA_LINGER_MS", "3")
    assert producer_settings(KafkaSettings()).linger_ms == 3


def test_the_router_app_and_its_producer_use_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SWITCHBOARD_KAFKA_LINGER_MS", raising=False)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    app = build_app(RouterSettings(rules_file=rules, http_port=0), rules=parse_rules(RULES))
    assert app[SETTINGS].kafka.linger_ms == 0
    assert app[KAFKA].producer._kafka.linger_ms == 0
