"""Event schema v1: JSON round trips (property-based) and clear errors for unknown records."""

from __future__ import annotations

import os
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, get_origin

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from switchboard.common.events import (
    ALL_RECORD_TYPES,
    AgentUpserted,
    Attachment,
    Candidate,
    Channel,
    ContactHandle,
    ContactIdentity,
    ConversationSummary,
    ConversationTransferred,
    DeadLetter,
    DeliveryEndpoint,
    Dispatch,
    DispatchKind,
    EscalationInfo,
    InboundMessage,
    Record,
    RecordCodec,
    SchemaError,
    UnknownSchema,
    UnsupportedSchemaVersion,
    decode,
    encode,
    new_id,
)

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
# Fields Hypothesis cannot infer from pydantic annotations (regex patterns, default factories).
OVERRIDES: dict[str, st.SearchStrategy[Any]] = {
    "tenant_id": st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z"),
    "sha256": st.none() | st.from_regex(r"\A[0-9a-f]{64}\Z"),
    "skills": st.dictionaries(st.text(min_size=1, max_size=8), st.integers(1, 10), max_size=3),
    "capacity": st.dictionaries(st.sampled_from(Channel), st.integers(0, 1000), max_size=3),
    "created_at": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    "id": st.uuids().map(lambda u: u.hex),
    "dispatch_id": st.uuids().map(lambda u: u.hex),
    # Optional fields that cross-field rules depend on: draw them too, so every variant is reached.
    "to_agent_id": st.none() | st.text(min_size=1, max_size=8),
    "to_queue": st.none() | st.text(min_size=1, max_size=8),
    "offer_id": st.none() | st.text(min_size=1, max_size=8),
}


def builds(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in model.model_fields.items():
        if name in OVERRIDES:
            kwargs[name] = OVERRIDES[name]
        elif field.default_factory is not None:
            if get_origin(field.annotation) is dict:
                kwargs[name] = st.dictionaries(st.text(max_size=6), JSON, max_size=3)
            else:
                kwargs[name] = st.just(field.default_factory())  # type: ignore[call-arg]
    return st.builds(model, **kwargs)


for nested in (
    ContactHandle,
    ContactIdentity,
    Attachment,
    DeliveryEndpoint,
    ConversationSummary,
    EscalationInfo,
    Candidate,
):
    st.register_type_strategy(nested, builds(nested))
st.register_type_strategy(datetime, OVERRIDES["created_at"])


@pytest.mark.parametrize("model", ALL_RECORD_TYPES, ids=lambda m: m.schema_id())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_record_survives_a_json_round_trip(model: type[Record], data: st.DataObject) -> None:
    strategy = builds(model)
    if model is DeadLetter:
        strategy = st.builds(
            lambda r, t: r.model_copy(update={"tenant_id": t}), strategy, st.none() | OVERRIDES["tenant_id"]
        )
    try:
        record = data.draw(strategy)
    except ValidationError:
        assume(False)  # cross-field rules (an offer needs its expiry...) reject some draws
        raise
    raw = encode(record)
    assert orjson.loads(raw)["schema"] == model.schema_id()
    back = decode(raw)
    assert type(back) is model
    assert back == record
    assert encode(back) == raw


def _inbound(**extra: object) -> InboundMessage:
    return InboundMessage(
        tenant_id="acme",
        channel=Channel.EMAIL,
        provider="smtp",
        provider_message_id="<m1@example.com>",
        contact=ContactIdentity(handles=(ContactHandle(kind="email", value="a@example.com"),)),
        text="hello",
        **extra,  # type: ignore[arg-type]
    )


def test_schema_field_names_type_and_version() -> None:
    assert orjson.loads(encode(_inbound()))["schema"] == "inbound-message/v1"


def test_future_version_is_refused_with_a_clear_error() -> None:
    data = orjson.loads(encode(_inbound()))
    data["schema"] = "inbound-message/v2"
    with pytest.raises(UnsupportedSchemaVersion, match=r"version 2.*reads 'inbound-message' up to version 1"):
        decode(orjson.dumps(data))


def test_unknown_type_and_missing_schema_are_refused() -> None:
    with pytest.raises(UnknownSchema, match="not one of"):
        decode(b'{"schema": "parcel/v1", "tenant_id": "acme"}')
    with pytest.raises(UnknownSchema, match="no 'schema' field"):
        decode(b'{"tenant_id": "acme"}')
    with pytest.raises(SchemaError, match="not JSON"):
        decode(b"\xff\xfe garbage")
    with pytest.raises(SchemaError, match="JSON list"):
        decode(b"[1, 2]")


def test_model_refuses_a_record_of_another_schema() -> None:
    data = orjson.loads(encode(_inbound()))
    with pytest.raises(ValidationError, match="record schema 'inbound-message/v1' is not 'agent-upserted/v1'"):
        AgentUpserted.model_validate(data)


def test_the_schema_may_be_given_by_either_name_filled_in_when_missing_and_is_checked_when_given() -> None:
    agent = {"tenant_id": "acme", "agent_id": "a1"}
    for spelled in ({}, {"schema": ""}, {"schema_": ""}, {"schema": None, "schema_": "agent-upserted/v1"}):
        assert AgentUpserted.model_validate({**agent, **spelled}).schema_ == "agent-upserted/v1"
    assert AgentUpserted(schema_="agent-upserted/v1", **agent).schema_ == "agent-upserted/v1"
    for wrong in ({"schema": "inbound-message/v1"}, {"schema_": "inbound-message/v1"}):
        with pytest.raises(ValidationError, match="is not 'agent-upserted/v1'"):
            AgentUpserted.model_validate({**agent, **wrong})
    with pytest.raises(ValidationError, match="version 2"):
        AgentUpserted.model_validate({**agent, "schema": "agent-upserted/v2"})


def test_unknown_fields_are_tolerated_and_provider_extras_live_in_metadata() -> None:
    data = orjson.loads(encode(_inbound(provider_metadata={"x-mailer": "Thunderbird", "spam_score": 0.1})))
    data["added_in_a_later_minor_release"] = True
    record = decode(orjson.dumps(data))
    assert isinstance(record, InboundMessage)
    assert record.provider_metadata == {"x-mailer": "Thunderbird", "spam_score": 0.1}


def test_records_are_keyed_by_tenant() -> None:
    assert _inbound().key() == b"acme"


def test_tenant_ids_are_validated() -> None:
    with pytest.raises(ValidationError, match="tenant_id"):
        _inbound().model_copy(update={}).model_validate(
            {**_inbound().model_dump(by_alias=True), "tenant_id": "Bad Tenant!"}
        )


def test_codec_restricted_to_a_topic_types() -> None:
    codec = RecordCodec(InboundMessage)
    assert isinstance(codec.decode(encode(_inbound())), InboundMessage)
    agent = AgentUpserted(tenant_id="acme", agent_id="a1", skills={"billing": 7}, capacity={Channel.CHAT: 3})
    with pytest.raises(UnknownSchema):
        codec.decode(encode(agent))


def test_proficiency_is_one_to_ten() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 10"):
        AgentUpserted(tenant_id="acme", agent_id="a1", skills={"billing": 11})


def test_dispatch_kind_rules() -> None:
    from switchboard.common.events import ConversationSummary, DeliveryEndpoint, EndpointKind

    summary = ConversationSummary(conversation_id="c1", channel=Channel.CHAT)
    endpoint = DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target="https://helpdesk.example/hook")
    with pytest.raises(ValidationError, match="offer_id and offer_expires_at"):
        Dispatch(tenant_id="acme", kind=DispatchKind.OFFER, conversation=summary, endpoints=(endpoint,))
    with pytest.raises(ValidationError, match="needs escalation"):
        Dispatch(tenant_id="acme", kind=DispatchKind.SLA_WARNING, conversation=summary, endpoints=(endpoint,))


def test_transfer_names_exactly_one_target() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        ConversationTransferred(tenant_id="acme", agent_id="a1", conversation_id="c1")


def test_dead_letter_keeps_non_utf8_bytes() -> None:
    letter = DeadLetter(
        source_topic="switchboard.inbound.v1",
        source_partition=2,
        source_offset=41,
        source_key=b"acme",
        source_value=b"\xff\x00not json",
        source_headers=(("trace", b"\x01\x02"),),
        error_type="SchemaError",
        error="record is not JSON",
    )
    back = decode(encode(letter))
    assert isinstance(back, DeadLetter)
    assert back.source_value == b"\xff\x00not json"
    assert back.source_headers == (("trace", b"\x01\x02"),)
    assert back.key() == b"acme"
    assert back.tenant_id is None


def test_new_id_is_a_random_uuid4_in_hex() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value  # 32 lower-case hex digits, no dashes
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


def test_new_id_from_many_threads_never_repeats() -> None:
    # Ids are drawn 128 at a time: threads sharing a draw must each get their own.
    with ThreadPoolExecutor(max_workers=8) as pool:
        batches = list(pool.map(lambda _: [new_id() for _ in range(1000)], range(8)))
    ids = [value for batch in batches for value in batch]
    assert len(set(ids)) == len(ids) == 8000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_hand_out_its_parent_s_next_ids() -> None:
    new_id()  # a draw in progress, whose remaining ids the child must not reuse
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns of fork() beside threads; the child only writes and exits
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: its next ids, then exit without running the parent's cleanup
        os.write(write, "".join(new_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(4)]
    assert len(child) == 128
    assert not {child[i : i + 32] for i in range(0, 128, 32)} & set(parent)
