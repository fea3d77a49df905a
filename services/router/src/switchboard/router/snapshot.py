"""Changelog records: each agent, contact and conversation as a small JSON model.

The router writes one record per changed entity to ``router-state.v1`` (compacted, keyed
by :func:`state_key`) and a tombstone (``None``) when an entity is gone; on a partition
assignment it rebuilds its state from those records
(:meth:`switchboard.router.engine.RouterEngine.restore`). No message body is held: only a
preview of at most :data:`~switchboard.router.state.PREVIEW_CHARS` characters and the
subject, which follow-up dispatches need. Contact handles are stored as keyed hashes.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Annotated, Any, Literal, overload

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

from switchboard.common.events import Channel, DeliveryEndpoint, Presence
from switchboard.router.rules import SlaTarget
from switchboard.router.state import (
    NO_ATTRIBUTES,
    NO_CLOCKS,
    NO_IDS,
    PREVIEW_CHARS,
    ZERO,
    Agent,
    Contact,
    Conversation,
    ConversationStatus,
    SlaClock,
    SlaClocks,
    handle_from_text,
    handle_text,
)

__all__ = [
    "STATE_SCHEMA",
    "AgentRecord",
    "ClockRecord",
    "ContactRecord",
    "ConversationRecord",
    "StateRecord",
    "decode_state",
    "decode_states",
    "encode_entity",
    "encode_state",
    "state_key",
    "state_record",
]

STATE_SCHEMA = "router-state/v1"


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: datetime | None) -> datetime | None: ...
def _utc(value: datetime | None) -> datetime | None:
    """A UTC time with the shared ``UTC`` zone instead of a zone object of its own (a parsed
    time carries one, 40 bytes, on each of the hundred thousand conversations)."""
    if value is None or value.tzinfo is UTC or value.utcoffset() != timedelta(0):
        return value
    return value.replace(tzinfo=UTC)


@overload
def _shared(times: dict[datetime, datetime], value: datetime) -> datetime: ...
@overload
def _shared(times: dict[datetime, datetime], value: datetime | None) -> datetime | None: ...
def _shared(times: dict[datetime, datetime], value: datetime | None) -> datetime | None:
    """:func:`_utc`, and one object for equal UTC times of one entity (a conversation opened,
    queued and assigned in one step, and its SLA clocks started then, hold one time, not
    five copies of 48 bytes each)."""
    value = _utc(value)
    if value is None or value.tzinfo is not UTC:
        return value
    return times.setdefault(value, value)


_AGENT_FIELDS = (
    "id",
    "skills",
    "capacity",
    "presence",
    "idle_since",
    "offline_since",
    "display_name",
    "endpoints",
    "attributes",
)
_CONTACT_FIELDS = ("id", "display_name", "attributes", "last_agent_id", "last_agent_at")
_CONVERSATION_FIELDS = (
    "id",
    "channel",
    "provider",
    "contact_id",
    "thread_key",
    "queue_id",
    "route_rule",
    "status",
    "priority",
    "step",
    "agent_id",
    "offer_id",
    "last_agent_id",
    "agent_replied",
    "subject",
    "language",
    "inbox",
    "customer_name",
    "sequence",
    "sla_policy",
)
"""Fields copied as they are between the entity and its record (the others are converted)."""
_CONVERSATION_TIMES = ("opened_at", "enqueued_at", "offer_expires_at", "assigned_at", "resolved_at")


def _same(source: object, names: tuple[str, ...]) -> dict[str, Any]:
    """The named attributes of ``source``, as keyword arguments for the other form."""
    return dict(zip(names, attrgetter(*names)(source), strict=True))


class _StateModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    schema_: Literal["router-state/v1"] = Field(default="router-state/v1", alias="schema")
    tenant_id: str
    id: str

    def key(self) -> str:
        return state_key(self.tenant_id, self.kind, self.id)  # type: ignore[attr-defined]


def state_key(tenant_id: str, kind: str, entity_id: str) -> str:
    """The changelog key of an entity: ``tenant/kind/id``."""
    return f"{tenant_id}/{kind}/{entity_id}"


class AgentRecord(_StateModel):
    kind: Literal["agent"] = "agent"
    skills: dict[str, int] = {}
    capacity: dict[Channel, int] = {}
    presence: Presence = Presence.OFFLINE
    idle_since: AwareDatetime | None = None
    offline_since: AwareDatetime | None = None
    display_name: str | None = None
    endpoints: tuple[DeliveryEndpoint, ...] = ()
    attributes: dict[str, JsonValue] = {}

    @classmethod
    def of(cls, tenant_id: str, agent: Agent) -> AgentRecord:
        return cls(tenant_id=tenant_id, **_same(agent, _AGENT_FIELDS))

    def to_agent(self) -> Agent:
        """The agent with zero load: load is recomputed from the conversations it holds."""
        fields = _same(self, _AGENT_FIELDS)
        for name in ("skills", "capacity", "attributes"):
            fields[name] = dict(fields[name])
        return Agent(**fields)


class ContactRecord(_StateModel):
    kind: Literal["contact"] = "contact"
    handles: tuple[str, ...] = ()
    display_name: str | None = None
    attributes: dict[str, JsonValue] = {}
    last_agent_id: str | None = None
    last_agent_at: AwareDatetime | None = None

    @classmethod
    def of(cls, tenant_id: str, contact: Contact) -> ContactRecord:
        handles = tuple(sorted(map(handle_text, contact.handles)))
        return cls(tenant_id=tenant_id, handles=handles, **_same(contact, _CONTACT_FIELDS))

    def to_contact(self) -> Contact:
        fields = _same(self, _CONTACT_FIELDS)
        fields["attributes"] = dict(fields["attributes"]) if fields["attributes"] else NO_ATTRIBUTES
        fields["last_agent_at"] = _utc(fields["last_agent_at"])
        return Contact(handles=tuple(map(handle_from_text, self.handles)), **fields)


class ClockRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    started_at: AwareDatetime
    consumed_s: float = 0.0
    running_since: AwareDatetime | None = None

    def to_clock(self, times: dict[datetime, datetime]) -> SlaClock:
        """The clock, sharing what it can: the zero duration, and the conversation's equal
        times (see :func:`_shared`)."""
        return SlaClock(
            started_at=_shared(times, self.started_at),
            consumed=timedelta(seconds=self.consumed_s) if self.consumed_s else ZERO,
            running_since=_shared(times, self.running_since),
        )


class ConversationRecord(_StateModel):
    kind: Literal["conversation"] = "conversation"
    channel: Channel
    provider: str
    contact_id: str
    opened_at: AwareDatetime
    thread_key: str | None = None
    queue_id: str | None = None
    route_rule: str | None = None
    status: ConversationStatus
    priority: int = 0
    enqueued_at: AwareDatetime | None = None
    step: int = 0
    agent_id: str | None = None
    offer_id: str | None = None
    offer_expires_at: AwareDatetime | None = None
    assigned_at: AwareDatetime | None = None
    declined_by: tuple[str, ...] = ()
    last_agent_id: str | None = None
    agent_replied: bool = False
    subject: str | None = None
    preview: str = Field(default="", max_length=PREVIEW_CHARS)
    language: str | None = None
    inbox: str | None = None
    customer_name: str | None = None
    message_ids: tuple[str, ...] = ()
    sequence: int = 0
    sla_policy: str | None = None
    clocks: dict[SlaTarget, ClockRecord] = {}
    fired: tuple[str, ...] = ()
    breaches: tuple[str, ...] = ()
    resolved_at: AwareDatetime | None = None

    @classmethod
    def of(cls, tenant_id: str, conv: Conversation) -> ConversationRecord:
        return cls(**_conversation_fields(tenant_id, conv))

    def to_conversation(self) -> Conversation:
        times: dict[datetime, datetime] = {}
        return Conversation(
            **_same(self, _CONVERSATION_FIELDS),
            **{name: _shared(times, value) for name, value in _same(self, _CONVERSATION_TIMES).items()},
            declined_by=frozenset(self.declined_by) if self.declined_by else NO_IDS,
            preview=self.preview,
            message_ids=self.message_ids,
            clocks=self._clocks(times) if self.clocks else NO_CLOCKS,
            fired=frozenset(self.fired) if self.fired else NO_IDS,
            breaches=self.breaches,
        )

    def _clocks(self, times: dict[datetime, datetime]) -> SlaClocks:
        """The clocks, equal ones (started together, none paused yet) as one object."""
        equal: dict[SlaClock, SlaClock] = {}
        built = {target: clock.to_clock(times) for target, clock in self.clocks.items()}
        return SlaClocks({target: equal.setdefault(clock, clock) for target, clock in built.items()})


StateEntity = Agent | Contact | Conversation
"""An entity the changelog holds a record of."""


def state_record(key: str, entity: StateEntity | None) -> AgentRecord | ContactRecord | ConversationRecord | None:
    """The changelog record of ``entity`` as it is now, under ``key`` (:func:`state_key`);
    ``None`` (a tombstone) stays ``None``."""
    if entity is None:
        return None
    tenant_id = key.split("/", 1)[0]
    if isinstance(entity, Conversation):
        return ConversationRecord.of(tenant_id, entity)
    if isinstance(entity, Contact):
        return ContactRecord.of(tenant_id, entity)
    return AgentRecord.of(tenant_id, entity)


StateRecord = Annotated[AgentRecord | ContactRecord | ConversationRecord, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[AgentRecord | ContactRecord | ConversationRecord] = TypeAdapter(StateRecord)


def encode_state(record: AgentRecord | ContactRecord | ConversationRecord) -> bytes:
    return record.__pydantic_serializer__.to_json(record, by_alias=True)


def encode_entity(key: str, entity: StateEntity | None) -> bytes | None:
    """``encode_state(state_record(key, entity))``, the very same bytes, without the model
    for the common conversation and contact: the service writes one per changed entity
    per batch, and building the model was most of the cost. Anything out of the common
    (a time not in UTC, a contact with attributes, an agent) goes through the model."""
    if entity is None:
        return None
    raw: bytes | None = None
    try:
        if isinstance(entity, Conversation):
            raw = _conversation_json(key.split("/", 1)[0], entity)
        elif isinstance(entity, Contact):
            raw = _contact_json(key.split("/", 1)[0], entity)
    except orjson.JSONEncodeError:
        raw = None  # a value orjson does not write (an integer beyond 64 bits): the model does
    if raw is None:
        record = state_record(key, entity)
        assert record is not None
        raw = encode_state(record)
    return raw


def _utc_or_none(*times: datetime | None) -> bool:
    return all(value is None or value.tzinfo is UTC for value in times)


def _conversation_fields(tenant_id: str, conv: Conversation) -> dict[str, Any]:
    """A conversation's changelog record as plain values, in the record's field order: what
    :meth:`ConversationRecord.of` validates and :func:`_conversation_json` writes as it is."""
    (
        id_,
        channel,
        provider,
        contact_id,
        thread_key,
        queue_id,
        route_rule,
        status,
        priority,
        step,
        agent_id,
        offer_id,
        last_agent_id,
        agent_replied,
        subject,
        language,
        inbox,
        customer_name,
        sequence,
        sla_policy,
    ) = attrgetter(*_CONVERSATION_FIELDS)(conv)
    opened_at, enqueued_at, offer_expires_at, assigned_at, resolved_at = attrgetter(*_CONVERSATION_TIMES)(conv)
    return {
        "schema": STATE_SCHEMA,
        "tenant_id": tenant_id,
        "id": id_,
        "kind": "conversation",
        "channel": channel,
        "provider": provider,
        "contact_id": contact_id,
        "opened_at": opened_at,
        "thread_key": thread_key,
        "queue_id": queue_id,
        "route_rule": route_rule,
        "status": status,
        "priority": priority,
        "enqueued_at": enqueued_at,
        "step": step,
        "agent_id": agent_id,
        "offer_id": offer_id,
        "offer_expires_at": offer_expires_at,
        "assigned_at": assigned_at,
        "declined_by": sorted(conv.declined_by),
        "last_agent_id": last_agent_id,
        "agent_replied": agent_replied,
        "subject": subject,
        "preview": conv.preview[:PREVIEW_CHARS],
        "language": language,
        "inbox": inbox,
        "customer_name": customer_name,
        "message_ids": list(conv.message_ids),
        "sequence": sequence,
        "sla_policy": sla_policy,
        "clocks": {
            target.value: {
                "started_at": clock.started_at,
                "consumed_s": clock.consumed.total_seconds(),
                "running_since": clock.running_since,
            }
            for target, clock in conv.clocks.items()
        },
        "fired": sorted(conv.fired),
        "breaches": list(conv.breaches),
        "resolved_at": resolved_at,
    }


def _conversation_json(tenant_id: str, conv: Conversation) -> bytes | None:
    """What :meth:`ConversationRecord.of` then :func:`encode_state` give (the same fields,
    times as pydantic writes them), or None when the model must do it."""
    fields = _conversation_fields(tenant_id, conv)  # times read once: each read unpacks one
    if not _utc_or_none(
        fields["opened_at"],
        fields["enqueued_at"],
        fields["offer_expires_at"],
        fields["assigned_at"],
        fields["resolved_at"],
    ):
        return None
    for clock in fields["clocks"].values():
        if not _utc_or_none(clock["started_at"], clock["running_since"]):
            return None
    return orjson.dumps(fields, option=orjson.OPT_UTC_Z)


def _contact_json(tenant_id: str, contact: Contact) -> bytes | None:
    """What :meth:`ContactRecord.of` then :func:`encode_state` give, for a contact without
    attributes (any JSON value, which the model writes its own way), else None."""
    if contact.attributes or not _utc_or_none(contact.last_agent_at):
        return None
    return orjson.dumps(
        {
            "schema": STATE_SCHEMA,
            "tenant_id": tenant_id,
            "id": contact.id,
            "kind": "contact",
            "handles": sorted(map(handle_text, contact.handles)),
            "display_name": contact.display_name,
            "attributes": {},
            "last_agent_id": contact.last_agent_id,
            "last_agent_at": contact.last_agent_at,
        },
        option=orjson.OPT_UTC_Z,
    )


def decode_state(raw: bytes | str) -> AgentRecord | ContactRecord | ConversationRecord:
    """Read a changelog record; raises :class:`pydantic.ValidationError` for anything else."""
    return _ADAPTER.validate_json(raw)


def decode_states(raws: Iterable[bytes | str]) -> list[AgentRecord | ContactRecord | ConversationRecord]:
    """:func:`decode_state` of many records (a partition read at assignment), with the cyclic
    garbage collector paused meanwhile: none of the objects built is garbage, and full
    collections over the growing heap would otherwise cost more than the decoding."""
    paused = gc.isenabled()
    gc.disable()
    try:
        return [_ADAPTER.validate_json(raw) for raw in raws]
    finally:
        if paused:
            gc.enable()
