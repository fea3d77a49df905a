"""The compact in-memory forms of the state (issue #5): records written before them still
restore to the same state and encode back to the same bytes, and each compact form reads
back exactly what was put in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from switchboard.common.events import Channel
from switchboard.router import state
from switchboard.router.engine import RouterEngine
from switchboard.router.rules import parse_rules
from switchboard.router.snapshot import decode_state, encode_state
from switchboard.router.state import (
    NO_IDS,
    Contact,
    Conversation,
    ConversationStatus,
    SlaClock,
    handle_from_text,
    handle_key,
    handle_text,
    pack_time,
    unpack_time,
)
from switchboard.router.testing import FakeClock, inbound

RULES = """
tenants:
  bench:
    default_queue: general
    sla_policies:
      std: {first_response: 1h, resolution: 8h}
    queues:
      - id: general
        skills: {support: 1}
        sla_policy: std
"""

# Written by the router before the compact forms (ids, handles and times held as strings and
# datetimes): an agent, two contacts and two conversations, one with a breach.
OLD_RECORDS = [
    b'{"schema":"router-state/v1","tenant_id":"bench","id":"a1","kind":"agent","skills":{"support":3},"capacity":{"email":5},"presence":"available","idle_since":"2026-11-23T11:00:00Z","offline_since":null,"display_name":null,"endpoints":[{"kind":"slack","target":"U-a1-0","options":{}}],"attributes":{}}',
    b'{"schema":"router-state/v1","tenant_id":"bench","id":"8ed9acf89e674ce183a7b32d582dc5a3","kind":"contact","handles":["8cb6b4423c7ea3f0e1bfc000de0c813b"],"display_name":"Customer","attributes":{},"last_agent_id":"a1","last_agent_at":"2026-11-23T09:00:00Z"}',
    b'{"schema":"router-state/v1","tenant_id":"bench","id":"6eae7d7b345d48e18b8c57b5660bdcc1","kind":"contact","handles":["0830104825db51f96570822ddfa5f4f3"],"display_name":"Customer","attributes":{},"last_agent_id":"a1","last_agent_at":"2026-11-23T11:00:00Z"}',
    b'{"schema":"router-state/v1","tenant_id":"bench","id":"d508acfea029421b97f768e0c73f5c0e","kind":"conversation","channel":"email","provider":"test","contact_id":"8ed9acf89e674ce183a7b32d582dc5a3","opened_at":"2026-11-23T09:00:00Z","thread_key":null,"queue_id":"general","route_rule":"match: queue general","status":"assigned","priority":0,"enqueued_at":"2026-11-23T09:00:00Z","step":0,"agent_id":"a1","offer_id":null,"offer_expires_at":null,"assigned_at":"2026-11-23T09:00:00Z","declined_by":[],"last_agent_id":"a1","agent_replied":false,"subject":null,"preview":"hello there","language":null,"inbox":null,"customer_name":"Customer","message_ids":["test:697b47b26f97435b9e608224a3ebf89e"],"sequence":1,"sla_policy":"std","clocks":{"first_response":{"started_at":"2026-11-23T09:00:00Z","consumed_s":0.0,"running_since":"2026-11-23T09:00:00Z"},"resolution":{"started_at":"2026-11-23T09:00:00Z","consumed_s":0.0,"running_since":"2026-11-23T09:00:00Z"}},"fired":["first_response:breach"],"breaches":["first_response"],"resolved_at":null}',  # noqa: E501
    b'{"schema":"router-state/v1","tenant_id":"bench","id":"bd9ca2fb2f3d485aba02be954ba4f4e8","kind":"conversation","channel":"email","provider":"test","contact_id":"6eae7d7b345d48e18b8c57b5660bdcc1","opened_at":"2026-11-23T11:00:00Z","thread_key":null,"queue_id":"general","route_rule":"match: queue general","status":"assigned","priority":0,"enqueued_at":"2026-11-23T11:00:00Z","step":0,"agent_id":"a1","offer_id":null,"offer_expires_at":null,"assigned_at":"2026-11-23T11:00:00Z","declined_by":[],"last_agent_id":"a1","agent_replied":false,"subject":null,"preview":"second","language":null,"inbox":null,"customer_name":"Customer","message_ids":["test:abf469194fc44648bdd50e214fc88601"],"sequence":1,"sla_policy":"std","clocks":{"first_response":{"started_at":"2026-11-23T11:00:00Z","consumed_s":0.0,"running_since":"2026-11-23T11:00:00Z"},"resolution":{"started_at":"2026-11-23T11:00:00Z","consumed_s":0.0,"running_since":"2026-11-23T11:00:00Z"}},"fired":[],"breaches":[],"resolved_at":null}',  # noqa: E501
]
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def restored() -> RouterEngine:
    engine = RouterEngine(parse_rules(RULES), FakeClock(T0 + timedelta(hours=2)))
    engine.restore(decode_state(raw) for raw in OLD_RECORDS)
    return engine


def test_records_written_before_the_compact_forms_restore_and_encode_back_the_same() -> None:
    engine = restored()
    assert sorted(encode_state(r) for r in engine.snapshot()) == sorted(OLD_RECORDS)
    conv = engine.conversation("bench", "d508acfea029421b97f768e0c73f5c0e")
    assert conv is not None
    assert conv.opened_at == conv.assigned_at == T0
    assert conv.opened_at.tzinfo is UTC
    assert conv.message_ids == ("test:697b47b26f97435b9e608224a3ebf89e",)
    assert conv.breaches == ("first_response",)
    assert conv.fired == frozenset({"first_response:breach"})
    assert conv.clocks[next(iter(conv.clocks))].started_at == T0
    contact = engine._tenants["bench"].contacts.get(conv.contact_id)
    assert contact is not None
    assert contact.last_agent_at == T0


def test_a_restored_contact_is_still_found_by_its_handle() -> None:
    """The hashed handle kept in memory as 16 bytes is the one old records hold in hex, so a
    customer who writes again after an upgrade joins their contact, not a new one."""
    assert handle_key("email", "customer-1").hex() == "8cb6b4423c7ea3f0e1bfc000de0c813b"
    engine = restored()
    engine.handle(inbound(tenant="bench", handle="Customer-1 ", text="again"))
    t = engine._tenants["bench"]
    assert len(t.contacts.contacts) == 2
    (conv,) = [c for c in t.conversations.values() if c.preview == "again"]
    assert conv.contact_id == "8ed9acf89e674ce183a7b32d582dc5a3"


@pytest.mark.parametrize(
    "text", ["8cb6b4423c7ea3f0e1bfc000de0c813b", "gone-handle", "8CB6B4423C7EA3F0E1BFC000DE0C813B"]
)
def test_handle_text_round_trips(text: str) -> None:
    key = handle_from_text(text)
    assert handle_text(key) == text
    assert isinstance(key, bytes) == (text == text.lower() and len(text) == 32)


@pytest.mark.parametrize(
    "value",
    [
        T0,
        T0 + timedelta(microseconds=999_999),
        datetime(2199, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1901, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    ],
)
def test_packed_utc_times_are_floats_that_give_the_time_back_exactly(value: datetime) -> None:
    packed = pack_time(value)
    assert isinstance(packed, float)
    back = unpack_time(packed)
    assert back == value
    assert back is not None
    assert back.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [None, datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=1))), datetime(9999, 1, 1, tzinfo=UTC)],
)
def test_times_a_float_cannot_hold_exactly_are_kept_as_they_are(value: datetime | None) -> None:
    assert pack_time(value) is value
    assert unpack_time(pack_time(value)) is value


def test_equal_times_packed_in_a_row_are_one_object() -> None:
    first = pack_time(T0 + timedelta(seconds=1))
    assert pack_time(T0 + timedelta(seconds=1)) is first


def test_rare_fields_share_one_default_until_set() -> None:
    a = Conversation(id="a", channel=Channel.EMAIL, provider="p", contact_id="k", opened_at=T0)
    b = Conversation(id="b", channel=Channel.EMAIL, provider="p", contact_id="k", opened_at=T0)
    assert a._rare is b._rare
    a.declined_by = NO_IDS  # the default: still no side object of its own
    assert a._rare is b._rare
    a.offer_id = "o1"
    a.offer_expires_at = T0 + timedelta(seconds=30)
    assert (a.offer_id, a.offer_expires_at) == ("o1", T0 + timedelta(seconds=30))
    assert (b.offer_id, b.offer_expires_at, b.declined_by, b.breaches) == (None, None, NO_IDS, ())
    a.offer_id = None
    assert a.offer_id is None
    assert a != b
    b.offer_expires_at = T0 + timedelta(seconds=30)
    b.id = "a"
    assert a == b


def test_one_message_id_is_held_bare_and_read_as_a_tuple() -> None:
    conv = Conversation(id="a", channel=Channel.CHAT, provider="p", contact_id="k", opened_at=T0)
    assert conv.message_ids == ()
    conv.remember_message("p:m1")
    assert conv._messages == "p:m1"
    assert conv.message_ids == ("p:m1",)
    conv.remember_message("p:m2")
    assert conv.message_ids == ("p:m1", "p:m2")


def test_a_contact_with_one_handle_holds_it_bare() -> None:
    key = handle_key("email", "someone@example.com")
    contact = Contact(id="k", handles=(key,))
    assert contact._handles is key
    assert contact.handles == (key,)
    contact.handles = (key, b"x" * 16)
    assert contact.handles == (key, b"x" * 16)


def test_sla_clocks_stay_immutable_and_compare_by_value() -> None:
    clock = SlaClock(started_at=T0, running_since=T0)
    with pytest.raises(AttributeError):
        clock.running_since = None  # type: ignore[misc]
    same = SlaClock(started_at=T0, consumed=timedelta(0), running_since=T0)
    assert clock == same
    assert hash(clock) == hash(same)
    assert clock != SlaClock(started_at=T0)


def test_conversations_with_equal_shape_fields_share_one_shape_and_change_apart() -> None:
    a = Conversation(id="a", channel=Channel.EMAIL, provider="p", contact_id="k", opened_at=T0, queue_id="q1")
    b = Conversation(id="b", channel=Channel.EMAIL, provider="p", contact_id="k", opened_at=T0, queue_id="q1")
    assert a._shape is b._shape
    a.status = ConversationStatus.ASSIGNED
    a.priority = 5
    a.tallied = ("q1", ConversationStatus.ASSIGNED)
    assert (a.status, a.priority, a.tallied) == (ConversationStatus.ASSIGNED, 5, ("q1", ConversationStatus.ASSIGNED))
    assert (b.status, b.priority, b.tallied, b.queue_id) == (ConversationStatus.QUEUED, 0, None, "q1")
    b.status, b.priority = ConversationStatus.ASSIGNED, 5
    assert a._shape is not b._shape  # a is also counted in the tally, b not yet
    b.tallied = ("q1", ConversationStatus.ASSIGNED)
    assert a._shape is b._shape
    b.id = "a"
    assert a == b
    b.step = 1
    assert a != b
    assert (a.step, b.step) == (0, 1)


def test_a_shape_field_holds_its_own_type_whatever_equal_value_is_set() -> None:
    """A plain ``"assigned"`` equals the enum member; a shared shape must not hand one back
    for the other, since the engine compares statuses and channels by identity."""
    conv = Conversation(id="a", channel="chat", provider="p", contact_id="k", opened_at=T0, status="queued")  # type: ignore[arg-type]
    assert conv.channel is Channel.CHAT
    assert conv.status is ConversationStatus.QUEUED
    conv.status = "assigned"  # type: ignore[assignment]
    assert conv.status is ConversationStatus.ASSIGNED
    conv.agent_replied = 1  # type: ignore[assignment]
    assert conv.agent_replied is True
    conv.priority = True
    assert conv.priority == 1
    assert conv.priority.__class__ is int
    with pytest.raises(ValueError, match="nonsense"):
        conv.status = "nonsense"  # type: ignore[assignment]
    assert conv.status is ConversationStatus.ASSIGNED


def test_shapes_past_the_table_limit_stay_correct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "_SHAPE_LIMIT", 3)
    monkeypatch.setattr(state, "_shapes", {})
    convs = [
        Conversation(id=f"c{i}", channel=Channel.EMAIL, provider=f"p{i}", contact_id="k", opened_at=T0)
        for i in range(10)
    ]
    assert len(state._shapes) <= 3
    assert [c.provider for c in convs] == [f"p{i}" for i in range(10)]
    convs[0].provider = "p9"
    assert convs[0].provider == "p9"
    assert convs[9].provider == "p9"


@pytest.mark.parametrize("text", ["hello there", "", "grüße, 你好", "x" * 300])
def test_a_preview_reads_back_as_set(text: str) -> None:
    conv = Conversation(id="a", channel=Channel.EMAIL, provider="p", contact_id="k", opened_at=T0, preview=text)
    assert conv.preview == text
    assert conv.preview.__class__ is str
    assert isinstance(conv._preview, bytes) == text.isascii()  # ASCII held as bytes, 16 bytes less


def test_a_restored_conversation_shares_its_shape_with_its_peers() -> None:
    engine = restored()
    t = engine._tenants["bench"]
    a, b = t.conversations.values()
    assert a._shape is b._shape  # same queue, rule, status, policy and tally entry
    assert a.route_rule == "match: queue general"
    assert a.tallied == ("general", ConversationStatus.ASSIGNED)
