"""Event schema v1: every record that crosses a Switchboard topic.

Each record is a frozen pydantic model that serialises to JSON with a ``schema`` field
naming its type and major version, for example ``"inbound-message/v1"``. Readers are
tolerant within a major version (unknown fields are ignored) and strict across major
versions: a record of a version this build does not know is refused with
:class:`UnsupportedSchemaVersion`, never misread.

Use :func:`encode` and :func:`decode` (or :class:`RecordCodec` for a topic that carries
a known set of types) rather than calling pydantic directly, so that the error for an
unknown or future record is always the same clear one.
"""

from __future__ import annotations

import base64
import binascii
import enum
import itertools
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    model_validator,
)

__all__ = [
    "AgentEvent",
    "AgentRemoved",
    "AgentUpserted",
    "Attachment",
    "AuthorRole",
    "AutomatedKind",
    "Candidate",
    "Channel",
    "ContactHandle",
    "ContactIdentity",
    "ContactsLinked",
    "ConversationResolved",
    "ConversationSummary",
    "ConversationTransferred",
    "DeadLetter",
    "DeliveryEndpoint",
    "DeliveryResult",
    "DeliveryStatus",
    "Dispatch",
    "DispatchKind",
    "EndpointKind",
    "EscalationInfo",
    "InboundMessage",
    "OfferAccepted",
    "OfferDeclined",
    "Presence",
    "PresenceChanged",
    "Record",
    "RecordCodec",
    "ReplySent",
    "RoutingDecision",
    "RoutingLogEntry",
    "SchemaError",
    "UnknownSchema",
    "UnsupportedSchemaVersion",
    "decode",
    "encode",
    "new_id",
    "utcnow",
]

TenantId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
"""A tenant id: lower-case letters, digits, ``-`` and ``_``, at most 63 characters."""

EntityId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Proficiency = Annotated[int, Field(ge=1, le=10)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]
"""A non-negative 64-bit count, offset or size (what Kafka and JSON readers agree on)."""


def _from_base64(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"not valid base64: {exc}") from None
    return value


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json"),
]
"""Raw bytes, as base64 in JSON (raw records need not be UTF-8)."""

_SCHEMA_RE = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)/v(?P<version>[0-9]+)$")


_IDS_PER_DRAW = 128
"""Ids made from one read of the system's random source (one system call for 128 ids)."""


def _draw_ids() -> tuple[str, Iterator[int]]:
    """``_IDS_PER_DRAW`` random UUID4s as one string of hex digits, and a counter over them."""
    raw = bytearray(os.urandom(16 * _IDS_PER_DRAW))
    for at in range(0, len(raw), 16):
        raw[at + 6] = (raw[at + 6] & 0x0F) | 0x40  # version 4
        raw[at + 8] = (raw[at + 8] & 0x3F) | 0x80  # the RFC 4122 variant
    return raw.hex(), itertools.count()


_SPENT: tuple[str, Iterator[int]] = ("", itertools.count(_IDS_PER_DRAW))
_ids = _SPENT


def _forget_ids() -> None:
    """In a forked child: draw afresh, or parent and child would hand out the same ids."""
    global _ids
    _ids = (_SPENT[0], itertools.count(_IDS_PER_DRAW))


os.register_at_fork(after_in_child=_forget_ids)


def new_id() -> str:
    """A new random record id: a UUID4 as 32 hex digits, what ``uuid.uuid4().hex`` gives.

    Built from random bytes directly (version and variant bits set as RFC 4122 says), without
    the ``UUID`` object, and 128 at a time from one read of ``os.urandom``: every record gets
    an id, and the object, then the system call per id, were most of the cost. The counter
    is taken with one call (``next``), so two threads never get the same id; a thread that
    finds the draw used up makes a new one of its own.
    """
    global _ids
    hexes, counter = _ids
    i = next(counter)
    if i >= _IDS_PER_DRAW:
        hexes, counter = _ids = _draw_ids()
        i = next(counter)
    return hexes[32 * i : 32 * i + 32]


def utcnow() -> datetime:
    return datetime.now(UTC)


class SchemaError(ValueError):
    """A record that cannot be read as any known schema."""


class UnknownSchema(SchemaError):
    """The ``schema`` field is missing or names a type this build does not know."""


class UnsupportedSchemaVersion(SchemaError):
    """The record is of a known type but of a major version this build does not read."""


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    X = "x"
    CHAT = "chat"
    VOICE = "voice"
    CUSTOM = "custom"


class Presence(enum.StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    AWAY = "away"
    OFFLINE = "offline"


class AutomatedKind(enum.StrEnum):
    """Why an inbound message is machine-generated (the router never opens a conversation for it)."""

    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    BULK = "bulk"


class AuthorRole(enum.StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"


class EndpointKind(enum.StrEnum):
    SLACK = "slack"
    TEAMS = "teams"
    EMAIL = "email"
    WEBHOOK = "webhook"
    INBOX = "inbox"


class DispatchKind(enum.StrEnum):
    OFFER = "offer"
    ASSIGNMENT = "assignment"
    FOLLOW_UP = "follow_up"
    OFFER_WITHDRAWN = "offer_withdrawn"
    ESCALATION = "escalation"
    SLA_WARNING = "sla_warning"


class DeliveryStatus(enum.StrEnum):
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    FAILED = "failed"


class RoutingDecision(enum.StrEnum):
    ASSIGNED = "assigned"
    OFFERED = "offered"
    QUEUED = "queued"
    FOLLOW_UP = "follow_up"
    RELAXED = "relaxed"
    REROUTED = "rerouted"
    WITHDRAWN = "withdrawn"
    ESCALATED = "escalated"
    SLA_BREACHED = "sla_breached"
    IGNORED = "ignored"
    RESOLVED = "resolved"
    REOPENED = "reopened"


class _Model(BaseModel):
    """Base of every nested value: frozen, tolerant of unknown fields."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_enum_values=False)


class Record(_Model):
    """Base of every top-level record on a topic.

    Subclasses set ``SCHEMA_NAME`` (and ``SCHEMA_VERSION`` when a major version changes);
    the ``schema`` field is filled in and checked automatically.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    SCHEMA_NAME: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1

    schema_: str = Field(default="", alias="schema")
    id: EntityId = Field(default_factory=new_id, description="Unique id of this record")
    tenant_id: TenantId
    created_at: AwareDatetime = Field(default_factory=utcnow)

    @classmethod
    def schema_id(cls) -> str:
        return f"{cls.SCHEMA_NAME}/v{cls.SCHEMA_VERSION}"

    @model_validator(mode="before")
    @classmethod
    def _check_schema(cls, data: Any) -> Any:
        # Runs in Python for every record built or read: the common case (the right schema
        # given) is one look-up of the type's id and one comparison.
        if isinstance(data, dict):
            expected = _SCHEMA_IDS.get(cls) or _SCHEMA_IDS.setdefault(cls, cls.schema_id())
            declared = data.get("schema")
            if declared == expected:
                return data
            if declared is None and "schema" not in data:
                declared = data.get("schema_")
            if declared in (None, ""):
                data = {**data, "schema": expected}
            elif declared != expected:
                _raise_schema_mismatch(declared, expected)
        return data

    def key(self) -> bytes:
        """The Kafka key: the tenant id, so all of one tenant's records share a partition."""
        return self.tenant_id.encode()


_SCHEMA_IDS: dict[type[Record], str] = {}
"""Each record type's ``schema_id()``, worked out once."""


def _raise_schema_mismatch(declared: object, expected: str) -> None:
    match = _SCHEMA_RE.match(declared) if isinstance(declared, str) else None
    want = _SCHEMA_RE.match(expected)
    assert want is not None
    if match and match["name"] == want["name"]:
        raise UnsupportedSchemaVersion(
            f"record schema {declared!r} is version {match['version']}, "
            f"this build reads version {want['version']} of {want['name']!r}"
        )
    raise UnknownSchema(f"record schema {declared!r} is not {expected!r}")


# --------------------------------------------------------------------------- inbound


class ContactHandle(_Model):
    """One way to reach a customer: an email address, a phone number, a platform user id."""

    kind: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="email, phone, messenger, instagram, whatsapp, telegram, x, chat, or an adapter's own kind"
    )
    value: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    verified: bool = Field(
        default=False,
        description="True when the provider vouches for the handle (a DKIM-aligned sender, a carrier phone number)",
    )


class ContactIdentity(_Model):
    display_name: str | None = None
    handles: tuple[ContactHandle, ...] = Field(min_length=1)
    attributes: dict[str, JsonValue] = Field(default_factory=dict)

    def handle(self, kind: str) -> str | None:
        return next((h.value for h in self.handles if h.kind == kind), None)


class Attachment(_Model):
    filename: str | None = None
    content_type: str = "application/octet-stream"
    size: Count
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None
    content_id: str | None = None
    inline: bool = False
    blob_ref: str | None = Field(default=None, description="Where ingest stored the content, if it did")
    url: str | None = Field(default=None, description="The provider's media reference, never fetched by ingest")


class InboundMessage(Record):
    """A customer's (or an agent's) message as it arrived on any channel, normalized."""

    SCHEMA_NAME: ClassVar[str] = "inbound-message"

    channel: Channel
    provider: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    provider_message_id: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        description="Stable id from the provider; a retried delivery carries the same one"
    )
    thread_ref: str | None = Field(default=None, description="The provider's thread or conversation reference")
    references: tuple[str, ...] = Field(default=(), description="Earlier message ids this one replies to")
    reply_token: str | None = Field(default=None, description="A conversation reply token found in the recipient")
    recipient: str | None = Field(default=None, description="The inbox, page, bot or number written to")
    inbox: str | None = Field(default=None, description="Routing hint from the ingest endpoint")
    author_role: AuthorRole = AuthorRole.CUSTOMER
    contact: ContactIdentity
    subject: str | None = None
    text: str = ""
    text_quoted: str | None = Field(default=None, description="Quoted history and signature split off the new text")
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    sent_at: AwareDatetime | None = None
    received_at: AwareDatetime = Field(default_factory=utcnow)
    language: str | None = None
    automated: AutomatedKind | None = None
    parser_defects: tuple[str, ...] = ()
    provider_metadata: dict[str, JsonValue] = Field(
        default_factory=dict, description="Provider fields the schema has no place for"
    )


# --------------------------------------------------------------------------- agent events


class DeliveryEndpoint(_Model):
    kind: EndpointKind
    target: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="Slack user or channel id, Teams workflow URL, email address, webhook URL, or inbox name"
    )
    options: dict[str, JsonValue] = Field(default_factory=dict)


class _AgentEvent(Record):
    agent_id: EntityId
    source: str = Field(default="api", description="api, slack, teams, email, inbox, ...")


class AgentUpserted(_AgentEvent):
    SCHEMA_NAME: ClassVar[str] = "agent-upserted"

    display_name: str | None = None
    skills: dict[str, Proficiency] = Field(default_factory=dict)
    capacity: dict[Channel, Annotated[int, Field(ge=0, le=1000)]] = Field(default_factory=dict)
    presence: Presence | None = None
    endpoints: tuple[DeliveryEndpoint, ...] = ()
    attributes: dict[str, JsonValue] = Field(default_factory=dict)


class AgentRemoved(_AgentEvent):
    SCHEMA_NAME: ClassVar[str] = "agent-removed"


class PresenceChanged(_AgentEvent):
    SCHEMA_NAME: ClassVar[str] = "presence-changed"

    presence: Presence


class OfferAccepted(_AgentEvent):
    SCHEMA_NAME: ClassVar[str] = "offer-accepted"

    conversation_id: EntityId
    offer_id: EntityId | None = None


class OfferDeclined(_AgentEvent):
    SCHEMA_NAME: ClassVar[str] = "offer-declined"

    conversation_id: EntityId
    offer_id: EntityId | None = None
    reason: str | None = None


class ReplySent(_AgentEvent):
    SCHEMA_NAME: ClassVar[str] = "reply-sent"

    conversation_id: EntityId
    waiting_for_customer: bool = True


class ConversationResolved(_AgentEvent):
    SCHEMA_NAME: ClassVar[str] = "conversation-resolved"

    conversation_id: EntityId


class ConversationTransferred(_AgentEvent):
    SCHEMA_NAME: ClassVar[str] = "conversation-transferred"

    conversation_id: EntityId
    to_agent_id: EntityId | None = None
    to_queue: EntityId | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ConversationTransferred:
        if (self.to_agent_id is None) == (self.to_queue is None):
            raise ValueError("a transfer names exactly one of to_agent_id or to_queue")
        return self


class ContactsLinked(Record):
    """An explicit statement that these handles belong to one customer."""

    SCHEMA_NAME: ClassVar[str] = "contacts-linked"

    handles: tuple[ContactHandle, ...] = Field(min_length=2)
    source: str = "api"


AgentEvent = (
    AgentUpserted
    | AgentRemoved
    | PresenceChanged
    | OfferAccepted
    | OfferDeclined
    | ReplySent
    | ConversationResolved
    | ConversationTransferred
    | ContactsLinked
)

# --------------------------------------------------------------------------- dispatch


class ConversationSummary(_Model):
    """What an agent needs to see to take the work, rendered by the notifier."""

    conversation_id: EntityId
    channel: Channel
    queue_id: str | None = None
    customer_name: str | None = None
    subject: str | None = None
    preview: str = Field(default="", max_length=4000, description="The first lines of the newest message")
    priority: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] = 0
    sla_due_at: AwareDatetime | None = None
    link: str | None = None
    reply_token: str | None = None


class EscalationInfo(_Model):
    policy: str
    target: str = Field(description="first_response, next_response or resolution")
    step: str
    due_at: AwareDatetime | None = None
    breached: bool = False


class Dispatch(Record):
    """Something the notifier must deliver to an agent (or a supervisor channel)."""

    SCHEMA_NAME: ClassVar[str] = "dispatch"

    dispatch_id: EntityId = Field(default_factory=new_id, description="Idempotency key at every receiver")
    kind: DispatchKind
    agent_id: EntityId | None = None
    conversation: ConversationSummary
    endpoints: tuple[DeliveryEndpoint, ...] = Field(min_length=1)
    offer_id: EntityId | None = None
    offer_expires_at: AwareDatetime | None = None
    escalation: EscalationInfo | None = None
    sequence: Count = Field(default=0, description="Order within the conversation")

    @model_validator(mode="after")
    def _kind_fields(self) -> Dispatch:
        if self.kind is DispatchKind.OFFER and (self.offer_id is None or self.offer_expires_at is None):
            raise ValueError("an offer dispatch needs offer_id and offer_expires_at")
        if self.kind in (DispatchKind.ESCALATION, DispatchKind.SLA_WARNING) and self.escalation is None:
            raise ValueError(f"a {self.kind.value} dispatch needs escalation")
        return self


class DeliveryResult(Record):
    SCHEMA_NAME: ClassVar[str] = "delivery-result"

    dispatch_id: EntityId
    dispatch_kind: DispatchKind
    conversation_id: EntityId
    agent_id: EntityId | None = None
    endpoint: DeliveryEndpoint
    status: DeliveryStatus
    attempts: Count = 1
    error: str | None = None
    external_ref: str | None = Field(default=None, description="The receiver's id for the delivery (a Slack ts)")


# --------------------------------------------------------------------------- routing log


class Candidate(_Model):
    agent_id: EntityId
    eligible: bool
    reason: str
    score: float | None = None


class RoutingLogEntry(Record):
    """Why the router did what it did; one per decision."""

    SCHEMA_NAME: ClassVar[str] = "routing-log"

    conversation_id: EntityId
    decision: RoutingDecision
    queue_id: str | None = None
    rule: str | None = Field(default=None, description="The rule or policy that applied")
    step: str | None = Field(default=None, description="The relaxation or escalation step in force")
    candidates: tuple[Candidate, ...] = ()
    agent_id: EntityId | None = None
    reason: str = ""


# --------------------------------------------------------------------------- dead letters


class DeadLetter(Record):
    """A record a consumer gave up on, kept with everything needed to inspect and replay it.

    Keyed by the source record's key. ``tenant_id`` is set when the source key names a valid
    tenant and left empty when the record was unreadable.
    """

    SCHEMA_NAME: ClassVar[str] = "dead-letter"

    tenant_id: TenantId | None = None  # type: ignore[assignment]
    source_topic: str
    source_partition: Annotated[int, Field(ge=0, le=2**31 - 1)]
    source_offset: Count
    consumer_group: str | None = None
    source_key: Base64Bytes | None = None
    source_value: Base64Bytes | None = None
    source_headers: tuple[tuple[str, Base64Bytes], ...] = ()
    error_type: str
    error: str
    attempts: Annotated[int, Field(ge=1, le=2**31 - 1)] = 1

    def key(self) -> bytes:
        return self.source_key or b""


# --------------------------------------------------------------------------- codec

RecordT = TypeVar("RecordT", bound=Record)

ALL_RECORD_TYPES: tuple[type[Record], ...] = (
    InboundMessage,
    AgentUpserted,
    AgentRemoved,
    PresenceChanged,
    OfferAccepted,
    OfferDeclined,
    ReplySent,
    ConversationResolved,
    ConversationTransferred,
    ContactsLinked,
    Dispatch,
    DeliveryResult,
    RoutingLogEntry,
    DeadLetter,
)


class RecordCodec:
    """Encodes and decodes the records of a set of types, by their ``schema`` field."""

    def __init__(self, *types: type[Record]) -> None:
        self._by_schema: dict[str, type[Record]] = {}
        self._latest: dict[str, int] = {}
        for t in types or ALL_RECORD_TYPES:
            self.register(t)

    def register(self, t: type[Record]) -> None:
        if not t.SCHEMA_NAME:
            raise TypeError(f"{t.__name__} has no SCHEMA_NAME")
        self._by_schema[t.schema_id()] = t
        self._latest[t.SCHEMA_NAME] = max(self._latest.get(t.SCHEMA_NAME, 0), t.SCHEMA_VERSION)

    @staticmethod
    def encode(record: Record) -> bytes:
        return encode(record)

    def decode(self, raw: bytes | str) -> Record:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SchemaError(f"record is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise SchemaError(f"record is a JSON {type(data).__name__}, not an object")
        declared = data.get("schema")
        if not isinstance(declared, str) or not declared:
            raise UnknownSchema("record has no 'schema' field")
        model = self._by_schema.get(declared)
        if model is None:
            match = _SCHEMA_RE.match(declared)
            if match and match["name"] in self._latest:
                raise UnsupportedSchemaVersion(
                    f"record schema {declared!r} is version {match['version']}, this build reads "
                    f"{match['name']!r} up to version {self._latest[match['name']]}"
                )
            raise UnknownSchema(f"record schema {declared!r} is not one of {sorted(self._by_schema)}")
        return model.model_validate(data)

    def decode_as(self, raw: bytes | str, model: type[RecordT]) -> RecordT:
        record = self.decode(raw)
        if not isinstance(record, model):
            raise UnknownSchema(f"expected {model.schema_id()!r}, got {record.schema_id()!r}")
        return record


_DEFAULT_CODEC = RecordCodec()


def encode(record: Record) -> bytes:
    """Serialise a record to JSON bytes, ``schema`` field included."""
    return record.__pydantic_serializer__.to_json(record, by_alias=True, exclude_none=False)


def decode(raw: bytes | str) -> Record:
    """Read any known record; raises :class:`SchemaError` (with a reason) for anything else."""
    return _DEFAULT_CODEC.decode(raw)


__all__ += ["ALL_RECORD_TYPES", "ValidationError"]
