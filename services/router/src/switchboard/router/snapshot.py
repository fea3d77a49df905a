"""Changelog records: each agent, contact and conversation as a small JSON model.

The router writes one record per changed entity to ``router-state.v1`` (compacted, keyed
by :func:`state_key`) and a tombstone (``None``) when an entity is gone; on a partition
assignment it rebuilds its state from those records
(:meth:`switchboard.router.engine.RouterEngine.restore`). No message body is held: only a
preview of at most :data:`~switchboard.router.state.PREVIEW_CHARS` characters and the
subject, which follow-up dispatches need. Contact handles are stored as keyed hashes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

from switchboard.common.events import Channel, DeliveryEndpoint, Presence
from switchboard.router.rules import SlaTarget
from switchboard.router.state import (
    PREVIEW_CHARS,
    Agent,
    Contact,
    Conversation,
    ConversationStatus,
    SlaClock,
)

__all__ = [
    "STATE_SCHEMA",
    "AgentRecord",
    "ClockRecord",
    "ContactRecord",
    "ConversationRecord",
    "StateRecord",
    "decode_state",
    "encode_state",
    "state_key",
]

STATE_SCHEMA = "router-state/v1"


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
        return cls(
            tenant_id=tenant_id,
            id=agent.id,
            skills=agent.skills,
            capacity=agent.capacity,
            presence=agent.presence,
            idle_since=agent.idle_since,
            offline_since=agent.offline_since,
            display_name=agent.display_name,
            endpoints=agent.endpoints,
            attributes=agent.attributes,
        )

    def to_agent(self) -> Agent:
        """The agent with zero load: load is recomputed from the conversations it holds."""
        return Agent(
            id=self.id,
            skills=dict(self.skills),
            capacity=dict(self.capacity),
            presence=self.presence,
            idle_since=self.idle_since,
            offline_since=self.offline_since,
            display_name=self.display_name,
            endpoints=self.endpoints,
            attributes=dict(self.attributes),
        )


class ContactRecord(_StateModel):
    kind: Literal["contact"] = "contact"
    handles: tuple[str, ...] = ()
    display_name: str | None = None
    attributes: dict[str, JsonValue] = {}
    last_agent_id: str | None = None
    last_agent_at: AwareDatetime | None = None

    @classmethod
    def of(cls, tenant_id: str, contact: Contact) -> ContactRecord:
        return cls(
            tenant_id=tenant_id,
            id=contact.id,
            handles=tuple(sorted(contact.handles)),
            display_name=contact.display_name,
            attributes=contact.attributes,
            last_agent_id=contact.last_agent_id,
            last_agent_at=contact.last_agent_at,
        )

    def to_contact(self) -> Contact:
        return Contact(
            id=self.id,
            handles=set(self.handles),
            display_name=self.display_name,
            attributes=dict(self.attributes),
            last_agent_id=self.last_agent_id,
            last_agent_at=self.last_agent_at,
        )


class ClockRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    started_at: AwareDatetime
    consumed_s: float = 0.0
    running_since: AwareDatetime | None = None


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
        return cls(
            tenant_id=tenant_id,
            id=conv.id,
            channel=conv.channel,
            provider=conv.provider,
            contact_id=conv.contact_id,
            opened_at=conv.opened_at,
            thread_key=conv.thread_key,
            queue_id=conv.queue_id,
            route_rule=conv.route_rule,
            status=conv.status,
            priority=conv.priority,
            enqueued_at=conv.enqueued_at,
            step=conv.step,
            agent_id=conv.agent_id,
            offer_id=conv.offer_id,
            offer_expires_at=conv.offer_expires_at,
            assigned_at=conv.assigned_at,
            declined_by=tuple(sorted(conv.declined_by)),
            last_agent_id=conv.last_agent_id,
            agent_replied=conv.agent_replied,
            subject=conv.subject,
            preview=conv.preview[:PREVIEW_CHARS],
            language=conv.language,
            inbox=conv.inbox,
            customer_name=conv.customer_name,
            message_ids=tuple(conv.message_ids),
            sequence=conv.sequence,
            sla_policy=conv.sla_policy,
            clocks={
                target: ClockRecord(
                    started_at=clock.started_at,
                    consumed_s=clock.consumed.total_seconds(),
                    running_since=clock.running_since,
                )
                for target, clock in conv.clocks.items()
            },
            fired=tuple(sorted(conv.fired)),
            breaches=tuple(conv.breaches),
            resolved_at=conv.resolved_at,
        )

    def to_conversation(self) -> Conversation:
        return Conversation(
            id=self.id,
            channel=self.channel,
            provider=self.provider,
            contact_id=self.contact_id,
            opened_at=self.opened_at,
            thread_key=self.thread_key,
            queue_id=self.queue_id,
            route_rule=self.route_rule,
            status=self.status,
            priority=self.priority,
            enqueued_at=self.enqueued_at,
            step=self.step,
            agent_id=self.agent_id,
            offer_id=self.offer_id,
            offer_expires_at=self.offer_expires_at,
            assigned_at=self.assigned_at,
            declined_by=set(self.declined_by),
            last_agent_id=self.last_agent_id,
            agent_replied=self.agent_replied,
            subject=self.subject,
            preview=self.preview,
            language=self.language,
            inbox=self.inbox,
            customer_name=self.customer_name,
            message_ids=list(self.message_ids),
            sequence=self.sequence,
            sla_policy=self.sla_policy,
            clocks={
                target: SlaClock(
                    started_at=clock.started_at,
                    consumed=timedelta(seconds=clock.consumed_s),
                    running_since=clock.running_since,
                )
                for target, clock in self.clocks.items()
            },
            fired=set(self.fired),
            breaches=list(self.breaches),
            resolved_at=self.resolved_at,
        )


StateRecord = Annotated[AgentRecord | ContactRecord | ConversationRecord, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[AgentRecord | ContactRecord | ConversationRecord] = TypeAdapter(StateRecord)


def encode_state(record: AgentRecord | ContactRecord | ConversationRecord) -> bytes:
    return record.__pydantic_serializer__.to_json(record, by_alias=True)


def decode_state(raw: bytes | str) -> AgentRecord | ContactRecord | ConversationRecord:
    """Read a changelog record; raises :class:`pydantic.ValidationError` for anything else."""
    return _ADAPTER.validate_json(raw)
