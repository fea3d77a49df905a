"""Contact attributes: the SDK's bounds, and the ``contact_attributes`` of ``ChannelAdapter.message``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import pytest
from pydantic import JsonValue

from switchboard.common.events import Channel, ContactHandle, InboundMessage, decode, encode
from switchboard.ingest_social.adapters import BUILTIN_ADAPTERS
from switchboard.ingest_social.sdk import (
    ALLOWED_ATTRIBUTES_OPTION,
    AdapterRegistry,
    AttributeLimits,
    ChannelAdapter,
    ChannelsConfig,
    ConfigError,
    InvalidContactAttributes,
    Tenant,
    TenantConfig,
    WebhookRequest,
    validate_contact_attributes,
)
from switchboard.ingest_social.sdk.attributes import allowed_attribute_keys

REQUEST = WebhookRequest(
    adapter="probe",
    tenant_id="acme",
    method="POST",
    public_url="",
    headers={},
    query={},
    content_type="application/json",
    received_at=datetime(2026, 3, 1, tzinfo=UTC),
)
TENANT = Tenant("acme", TenantConfig())
HANDLES = [ContactHandle(kind="probe", value="v-1")]


class ProbeAdapter(ChannelAdapter):
    name: ClassVar[str] = "probe"
    channel: ClassVar[Channel] = Channel.CHAT


class TightAdapter(ProbeAdapter):
    attribute_limits: ClassVar[AttributeLimits] = AttributeLimits(max_keys=2, max_string_length=8)


def test_valid_attributes_are_copied_as_plain_json() -> None:
    given = {"tier": "gold", "seats": 25, "score": 4.5, "beta": False, "note": None, "regions": ("eu", "us")}
    assert validate_contact_attributes(given) == {
        "tier": "gold",
        "seats": 25,
        "score": 4.5,
        "beta": False,
        "note": None,
        "regions": ["eu", "us"],
    }
    assert validate_contact_attributes(None) == {}
    assert validate_contact_attributes({}) == {}


def test_limits_are_inclusive() -> None:
    limits = AttributeLimits()
    at_limit: dict[str, object] = {f"k{i}": "v" * limits.max_string_length for i in range(10)}
    at_limit["k" * limits.max_key_length] = ["x"] * limits.max_list_items
    assert validate_contact_attributes(at_limit) == at_limit
    one_key_too_many = {f"k{i}": 1 for i in range(limits.max_keys + 1)}
    with pytest.raises(InvalidContactAttributes, match=r"33 keys, at most 32"):
        validate_contact_attributes(one_key_too_many)


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"tier": {"level": "gold"}}, r"'tier' is a JSON object"),
        ({"tags": [["a"]]}, r"an item of 'tags' is a list"),
        ({"tags": [{"a": 1}]}, r"an item of 'tags' is a JSON object"),
        ({"tags": ["a"] * 33}, r"'tags' is a list of 33 items"),
        ({"note": "x" * 257}, r"'note' is a string of 257 characters"),
        ({"big": 2**63}, r"'big' is an integer outside 64 bits"),
        ({"ratio": float("nan")}, r"'ratio' is not a finite number"),
        ({"ratio": float("inf")}, r"'ratio' is not a finite number"),
        ({"when": datetime(2026, 1, 1, tzinfo=UTC)}, r"'when' is not a JSON value"),
        ({"": "x"}, r"key #1 is not a valid name"),
        ({"ok": 1, "two words": "x"}, r"key #2 is not a valid name"),
        ({"9lives": "x"}, r"key #1 is not a valid name"),
        ({"k" * 65: "x"}, r"key #1 is not a valid name"),
        ({f"k{i}": "x" * 240 for i in range(20)}, r"bytes as JSON, at most 4096"),
    ],
)
def test_invalid_attributes_are_refused_with_a_reason(attributes: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidContactAttributes, match=reason) as exc:
        validate_contact_attributes(attributes)
    assert exc.value.status == 422
    assert exc.value.code == "invalid_contact_attributes"


def test_a_refused_value_is_never_repeated_in_the_reason() -> None:
    secret = "jane.doe@example.com"
    for attributes in ({"email": secret * 20}, {"email": {"v": secret}}, {secret: "x"}, {"e": [[secret]]}):
        with pytest.raises(InvalidContactAttributes) as exc:
            validate_contact_attributes(attributes)
        assert secret not in exc.value.reason


def test_a_mapping_is_required() -> None:
    with pytest.raises(InvalidContactAttributes, match="must be a JSON object"):
        validate_contact_attributes(["tier", "gold"])  # type: ignore[arg-type]


def test_message_helper_attaches_attributes_that_survive_the_wire() -> None:
    msg = ProbeAdapter().message(
        REQUEST, TENANT, provider_message_id="1", handles=HANDLES, contact_attributes={"tier": "vip", "teams": ("a",)}
    )
    assert msg.contact.attributes == {"tier": "vip", "teams": ["a"]}
    back = decode(encode(msg))
    assert isinstance(back, InboundMessage)
    assert back.contact.attributes == {"tier": "vip", "teams": ["a"]}
    plain = ProbeAdapter().message(REQUEST, TENANT, provider_message_id="2", handles=HANDLES)
    assert plain.contact.attributes == {}


def test_an_adapter_may_tighten_the_limits() -> None:
    adapter = TightAdapter()

    def build(attributes: dict[str, object]) -> InboundMessage:
        return adapter.message(REQUEST, TENANT, provider_message_id="1", handles=HANDLES, contact_attributes=attributes)

    assert build({"a": "12345678"}).contact.attributes == {"a": "12345678"}
    with pytest.raises(InvalidContactAttributes, match="at most 2"):
        build(dict.fromkeys("abc", 1))
    with pytest.raises(InvalidContactAttributes, match="at most 8"):
        build({"a": "123456789"})
    # the base limits are untouched
    assert ProbeAdapter.attribute_limits == AttributeLimits()


def test_a_tenant_allow_list_refuses_other_keys() -> None:
    assert validate_contact_attributes({"tier": "gold"}, allowed={"tier", "plan"}) == {"tier": "gold"}
    reason = r"'vip' is not allowed for this tenant \(allowed: \['plan', 'tier'\]\)"
    with pytest.raises(InvalidContactAttributes, match=reason):
        validate_contact_attributes({"tier": "gold", "vip": True}, allowed={"tier", "plan"})
    tenant = Tenant("acme", TenantConfig(options={ALLOWED_ATTRIBUTES_OPTION: ["plan"]}))
    adapter = ProbeAdapter()
    ok = adapter.message(REQUEST, tenant, provider_message_id="1", handles=HANDLES, contact_attributes={"plan": "pro"})
    assert ok.contact.attributes == {"plan": "pro"}
    assert adapter.message(REQUEST, tenant, provider_message_id="2", handles=HANDLES).contact.attributes == {}
    with pytest.raises(InvalidContactAttributes, match="'tier' is not allowed"):
        adapter.message(REQUEST, tenant, provider_message_id="3", handles=HANDLES, contact_attributes={"tier": "gold"})
    # an empty list allows no attribute at all
    closed = Tenant("acme", TenantConfig(options={ALLOWED_ATTRIBUTES_OPTION: []}))
    with pytest.raises(InvalidContactAttributes, match="'plan' is not allowed"):
        adapter.message(REQUEST, closed, provider_message_id="4", handles=HANDLES, contact_attributes={"plan": "pro"})


@pytest.mark.parametrize("option", ["tier", [1], ["two words"], [None], {"tier": True}])
def test_a_malformed_allow_list_stops_the_start(option: JsonValue) -> None:
    tenant = {"secrets": {"site_key": "k"}, "options": {ALLOWED_ATTRIBUTES_OPTION: option}}
    config = ChannelsConfig.model_validate({"adapters": {"webchat": {"tenants": {"acme": tenant}}}})
    with pytest.raises(ConfigError, match=r"adapter 'webchat', tenant 'acme': option 'allowed_contact_attributes'"):
        AdapterRegistry(BUILTIN_ADAPTERS).create_enabled(config)
    assert allowed_attribute_keys({}) is None
    assert allowed_attribute_keys({ALLOWED_ATTRIBUTES_OPTION: ["tier", "plan"]}) == frozenset({"tier", "plan"})
