"""The routing engine: events and timers in, effects out, no I/O.

The service feeds every record of its partitions to :meth:`RouterEngine.handle`, sleeps
until :meth:`RouterEngine.next_deadline` and then calls :meth:`RouterEngine.advance`.
Each call returns :class:`Effects`: dispatches for the notifier, routing-log entries, and
every entity that changed (``None`` is a tombstone), whose changelog record is built when
it is written. Write the changelog records first, then the dispatches and log entries,
then commit the input.
"""

from __future__ import annotations

import functools
import gc
import heapq
import itertools
import re
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from switchboard.common.events import (
    AgentRemoved,
    AgentUpserted,
    AuthorRole,
    Candidate,
    Channel,
    ContactIdentity,
    ContactsLinked,
    ConversationResolved,
    ConversationSummary,
    ConversationTransferred,
    DeliveryEndpoint,
    DeliveryResult,
    DeliveryStatus,
    Dispatch,
    DispatchKind,
    EscalationInfo,
    InboundMessage,
    OfferAccepted,
    OfferDeclined,
    Presence,
    PresenceChanged,
    Record,
    ReplySent,
    RoutingDecision,
    RoutingLogEntry,
    new_id,
)
from switchboard.router.assignment import (
    Requirement,
    Selection,
    check_agent,
    compile_requirements,
    index_needs,
    select_agent,
)
from switchboard.router.calendar import AlwaysOpen, BusinessCalendar, Calendar
from switchboard.router.rules import (
    EscalationAction,
    EscalationStep,
    Mode,
    Queue,
    RouterOptions,
    Rules,
    SlaPolicy,
    SlaTarget,
    TenantRules,
)
from switchboard.router.snapshot import (
    AgentRecord,
    ContactRecord,
    ConversationRecord,
    StateEntity,
    state_key,
    state_record,
)
from switchboard.router.state import (
    HOLDING,
    NO_IDS,
    PREVIEW_CHARS,
    Agent,
    AgentIndex,
    Contact,
    ContactDirectory,
    Conversation,
    ConversationStatus,
    SlaClock,
    WaitingIndex,
    handle_key,
)
from switchboard.router.timers import TimerHeap, TimerKey, TimerKind
from switchboard.router.views import QueueStats, SlaStatus

__all__ = ["Effects", "RouterEngine", "RoutingError", "UnknownAgent", "UnknownConversation", "UnknownTenant"]

StateRecord = AgentRecord | ContactRecord | ConversationRecord
Clock = Callable[[], datetime]
_ZERO = timedelta(0)
_VERIFIED_KINDS = frozenset({"email", "phone"})
"""Handle kinds that link contacts only when the provider vouches for them."""


class RoutingError(ValueError):
    """A record the engine cannot apply (the service dead-letters it)."""


class UnknownTenant(RoutingError):
    pass


class UnknownAgent(RoutingError):
    pass


class UnknownConversation(RoutingError):
    pass


@dataclass(slots=True)
class Effects:
    """What the service must do after a call: write ``state`` (changelog), then the rest.

    ``state`` maps the changelog key (:func:`~switchboard.router.snapshot.state_key`) of
    every entity the call changed to the entity itself, or to ``None`` (a tombstone). Its
    record is built when it is written (:func:`~switchboard.router.snapshot.encode_entity`;
    :meth:`records` builds them now), from the entity as it is then. Every call that
    changes an entity names it in its own ``state``, so a writer that keeps the latest
    entry per key may build the records after any number of further calls, and an entity
    changed by every record of a batch (a conversation and its follow-ups, an agent taking
    work) is built once per batch, not once per record.
    """

    dispatches: list[Dispatch] = field(default_factory=list)
    log: list[RoutingLogEntry] = field(default_factory=list)
    state: dict[str, StateEntity | None] = field(default_factory=dict)

    def records(self) -> dict[str, StateRecord | None]:
        """The changelog records of ``state``, built now."""
        return {key: state_record(key, entity) for key, entity in self.state.items()}

    def extend(self, other: Effects) -> None:
        self.dispatches.extend(other.dispatches)
        self.log.extend(other.log)
        self.state.update(other.state)

    def __bool__(self) -> bool:
        return bool(self.dispatches or self.log or self.state)


@dataclass(slots=True)
class _Call:
    """Effects being collected during one call, with the entities it touched."""

    now: datetime
    effects: Effects = field(default_factory=Effects)
    dirty: set[tuple[str, str, str]] = field(default_factory=set)
    freed: dict[tuple[str, str], None] = field(default_factory=dict)


@functools.lru_cache(maxsize=4096)
def _keywords(words: tuple[str, ...]) -> re.Pattern[str]:
    """Any of ``words`` as a whole word (not inside a longer word), case-insensitively: one
    search that finds a match exactly when one search per word would (the lookarounds sit
    outside the alternation)."""
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)", re.IGNORECASE)


@dataclass(slots=True)
class _Facts:
    """What queue matching looks at, from an inbound message or a stored conversation."""

    channel: Channel
    provider: str
    language: str | None
    inbox: str | None
    recipient: str | None
    subject: str | None
    text: str
    attributes: Mapping[str, Any]


class _Tenant:
    """One tenant's rules, state and indexes."""

    def __init__(self, tenant_id: str, rules: TenantRules, options: RouterOptions) -> None:
        self.id = tenant_id
        self.agents: dict[str, Agent] = {}
        self.conversations: dict[str, Conversation] = {}
        self.contacts = ContactDirectory()
        self.waiting = WaitingIndex()
        self.threads: dict[str, str] = {}
        self.messages: dict[str, str] = {}
        self.latest: dict[Channel, dict[str, str]] = {}
        """Per channel, per contact id: the contact's most recently opened conversation."""
        self.held: dict[str, list[str]] = {}
        """Per agent id: the ids of the conversations the agent holds (offered, assigned or
        waiting for the customer). A list: an agent holds a handful, and a small set costs
        several times the memory."""
        self.tally: dict[tuple[str | None, ConversationStatus], int] = {}
        self._tally_keys: dict[tuple[str | None, ConversationStatus], tuple[str | None, ConversationStatus]] = {}
        self._sets: dict[frozenset[str], frozenset[str]] = {}
        self._tuples: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.apply_rules(rules, options)

    def shared_set(self, labels: frozenset[str]) -> frozenset[str]:
        """One frozenset object per distinct set of SLA labels (they come from the rules, so
        there are few; each costs 216 bytes or more)."""
        if not labels:
            return NO_IDS
        if len(self._sets) > 4096:  # labels outlived by rules reloads: start over
            self._sets.clear()
        return self._sets.setdefault(labels, labels)

    def shared_tuple(self, labels: tuple[str, ...]) -> tuple[str, ...]:
        """One tuple object (of interned labels) per distinct sequence of SLA breaches, for
        the same reason as :meth:`shared_set`."""
        if not labels:
            return ()
        if len(self._tuples) > 4096:
            self._tuples.clear()
        found = self._tuples.get(labels)
        if found is None:
            found = self._tuples[labels] = tuple(sys.intern(label) for label in labels)
        return found

    def apply_rules(self, rules: TenantRules, options: RouterOptions) -> None:
        self.rules = rules
        self.options = options
        self.queues: dict[str, Queue] = {queue.id: queue for queue in rules.queues}
        """The queues by id (a plain dict: the rules' own lookup is a pydantic private
        attribute, several times slower to reach, and routing looks a queue up per decision)."""
        self.requirements: dict[str, tuple[Requirement, ...]] = compile_requirements(rules)
        self.calendars: dict[str, Calendar] = {name: BusinessCalendar(hours) for name, hours in rules.calendars.items()}
        self.index = AgentIndex(index_needs(rules, self.requirements))
        for agent in self.agents.values():
            self.index.update(agent)

    def hold(self, agent_id: str, conversation_id: str) -> None:
        held = self.held.get(agent_id)
        if held is None:
            self.held[agent_id] = [conversation_id]
        elif conversation_id not in held:
            held.append(conversation_id)

    def unhold(self, agent_id: str, conversation_id: str) -> None:
        held = self.held.get(agent_id)
        if held is not None and conversation_id in held:
            held.remove(conversation_id)

    def recount(self, conversation_id: str) -> None:
        """Keep the (queue, status) tally of conversations in step with one conversation.

        The (queue, status) a conversation is counted under is held on the conversation
        (``tallied``, one slot, where a dict of a hundred thousand entries costs 37 bytes
        each); take a conversation out of :attr:`conversations` with :meth:`uncount` first.
        """
        conv = self.conversations.get(conversation_id)
        if conv is None:
            return
        old = conv.tallied
        if old is not None and old[0] == conv.queue_id and old[1] is conv.status:
            return
        if old is not None:
            self.tally[old] -= 1
        key = (conv.queue_id, conv.status)
        key = self._tally_keys.setdefault(key, key)  # one shared tuple per (queue, status)
        conv.tallied = key
        self.tally[key] = self.tally.get(key, 0) + 1

    def uncount(self, conv: Conversation) -> None:
        """Take a conversation out of the (queue, status) tally (it is being dropped or replaced)."""
        if conv.tallied is not None:
            self.tally[conv.tallied] -= 1
            conv.tallied = None

    def calendar(self, policy: SlaPolicy) -> Calendar:
        if policy.calendar is None:
            return AlwaysOpen()
        return self.calendars[policy.calendar]

    def requirement(self, conv: Conversation) -> Requirement | None:
        if conv.queue_id is None:
            return None
        steps = self.requirements.get(conv.queue_id)
        if not steps:
            return None
        return steps[min(conv.step, len(steps) - 1)]


class RouterEngine:
    """Pure routing state machine for the tenants of the partitions this instance owns."""

    def __init__(self, rules: Rules, clock: Clock) -> None:
        self._rules = rules
        self._clock = clock
        self._tenants: dict[str, _Tenant] = {}
        self._timers = TimerHeap()

    # ------------------------------------------------------------------ public API

    @property
    def rules(self) -> Rules:
        return self._rules

    def handle(self, record: Record) -> Effects:
        """Apply one input record (inbound message, agent event or delivery result)."""
        call = _Call(self._clock())
        self._fire_due(call)
        t = self._tenant(record.tenant_id)
        if isinstance(record, InboundMessage):
            self._inbound(t, record, call)
        elif isinstance(record, AgentUpserted):
            self._agent_upserted(t, record, call)
        elif isinstance(record, AgentRemoved):
            self._agent_removed(t, record, call)
        elif isinstance(record, PresenceChanged):
            self._presence(t, self._agent(t, record.agent_id), record.presence, call)
        elif isinstance(record, OfferAccepted):
            self._offer_accepted(t, record, call)
        elif isinstance(record, OfferDeclined):
            self._offer_declined(t, record, call)
        elif isinstance(record, ReplySent):
            self._reply_sent(t, record, call)
        elif isinstance(record, ConversationResolved):
            self._resolved(t, record, call)
        elif isinstance(record, ConversationTransferred):
            self._transferred(t, record, call)
        elif isinstance(record, ContactsLinked):
            self._contacts_linked(t, record, call)
        elif isinstance(record, DeliveryResult):
            self._delivery_result(t, record, call)
        else:
            raise RoutingError(f"the router does not consume {record.schema_id()!r} records")
        return self._finish(call)

    def next_deadline(self) -> datetime | None:
        """When the earliest pending timer is due (the service sleeps until then)."""
        return self._timers.next_deadline()

    def advance(self, now: datetime | None = None) -> Effects:
        """Fire every timer due at ``now`` (default: the clock)."""
        call = _Call(now if now is not None else self._clock())
        self._fire_due(call)
        return self._finish(call)

    def replace_rules(self, rules: Rules) -> Effects:
        """Put new (already validated) rules in force and re-evaluate queued conversations."""
        call = _Call(self._clock())
        self._rules = rules
        for tenant_id, t in list(self._tenants.items()):
            tenant_rules = rules.tenant(tenant_id)
            if tenant_rules is None:
                continue  # records of a tenant no longer in the rules are refused; state is kept
            t.apply_rules(tenant_rules, rules.options_for(tenant_id))
            for conv in list(t.conversations.values()):
                if conv.status is ConversationStatus.QUEUED:
                    self._place(t, conv, call)
                self._schedule_timers(t, conv, call.now)
            for conv_id in t.waiting.all_ids():
                conv = t.conversations[conv_id]
                if conv_id in t.waiting:
                    self._route(t, conv, call, RoutingDecision.QUEUED, "rules reloaded")
        return self._finish(call)

    def restore(self, records: Iterable[StateRecord]) -> None:
        """Rebuild state (and pending timers) from changelog records, latest record per key wins.

        The cyclic garbage collector is paused meanwhile: building a hundred thousand
        objects would otherwise trigger full collections over the growing heap again and
        again (none of what is built here is garbage). Afterwards everything alive is
        frozen (:func:`gc.freeze`): the restored state lives as long as the partition is
        owned, and left in the collected generations it would be scanned by every full
        collection, which the objects decisions keep set off as the heap grows (a quarter
        of a second each with 100,000 conversations, a pause in the middle of a batch).
        Restored entities hold no reference cycles, so what a later revocation drops is
        still freed (by reference counting); only a cycle among other objects alive at this
        moment that later becomes garbage stays, a one-off of a few objects per restore.
        """
        paused = gc.isenabled()
        gc.disable()
        try:
            self._restore(records)
            gc.freeze()
        finally:
            if paused:
                gc.enable()

    def _restore(self, records: Iterable[StateRecord]) -> None:
        """Build each entity as its record arrives (a later record of the same key replaces
        it), so a lazily decoded stream never holds every record at once; then index."""
        touched: set[str] = set()
        known = {c for t in self._tenants.values() for c in t.conversations}
        for record in records:
            t = self._tenant(record.tenant_id)
            touched.add(t.id)
            if isinstance(record, AgentRecord):
                t.agents[record.id] = record.to_agent()
            elif isinstance(record, ContactRecord):
                t.contacts.add(record.to_contact())
            else:
                if (replaced := t.conversations.get(record.id)) is not None:
                    t.uncount(replaced)
                t.conversations[record.id] = record.to_conversation()
        now = self._clock()
        for tenant_id in touched:
            t = self._tenants[tenant_id]
            for conv in t.conversations.values():
                self._share_strings(t, conv)
                self._index_conversation(t, conv)
                if conv.agent_id is not None and conv.status in HOLDING:
                    agent = t.agents.get(conv.agent_id)
                    if agent is not None:
                        agent.load[conv.channel] = agent.load.get(conv.channel, 0) + 1
                        t.hold(agent.id, conv.id)
                if conv.status is ConversationStatus.QUEUED:
                    t.waiting.add(conv)
                t.recount(conv.id)
                self._schedule_timers(t, conv, now, fresh=conv.id not in known)
            for agent in t.agents.values():
                t.index.update(agent)
                self._schedule_grace(t, agent)
            for contact in t.contacts.contacts.values():
                if contact.last_agent_id is not None and (agent := t.agents.get(contact.last_agent_id)) is not None:
                    contact.last_agent_id = agent.id

    @staticmethod
    def _share_strings(t: _Tenant, conv: Conversation) -> None:
        """Point a restored conversation's repeated strings at one shared copy.

        Decoding gives every record its own copy of the agent ids, queue id, provider and so
        on; a hundred thousand conversations would hold as many copies of a few hundred
        distinct values. Agent ids are shared with the agent, the rest are interned.
        """
        if conv.agent_id is not None and (agent := t.agents.get(conv.agent_id)) is not None:
            conv.agent_id = agent.id
        if conv.last_agent_id is not None and (agent := t.agents.get(conv.last_agent_id)) is not None:
            conv.last_agent_id = agent.id
        conv.provider = sys.intern(conv.provider)
        if conv.queue_id is not None:
            conv.queue_id = sys.intern(conv.queue_id)
        if conv.route_rule is not None:
            conv.route_rule = sys.intern(conv.route_rule)
        if conv.sla_policy is not None:
            conv.sla_policy = sys.intern(conv.sla_policy)
        if conv.language is not None:
            conv.language = sys.intern(conv.language)
        if (contact := t.contacts.get(conv.contact_id)) is not None:
            conv.contact_id = contact.id
            if conv.customer_name is not None and conv.customer_name == contact.display_name:
                conv.customer_name = contact.display_name
            contact.share_last_agent_at(conv)
        conv.fired = t.shared_set(conv.fired)
        conv.breaches = t.shared_tuple(conv.breaches)

    def forget_tenants(self, tenant_ids: Iterable[str]) -> None:
        """Drop the state and timers of tenants whose partition was revoked."""
        for tenant_id in tenant_ids:
            if self._tenants.pop(tenant_id, None) is not None:
                self._timers.cancel_tenant(tenant_id)

    def snapshot(self, tenant_id: str | None = None) -> list[StateRecord]:
        """Every entity as a changelog record (of one tenant, or of all)."""
        out: list[StateRecord] = []
        for t in self._tenants.values():
            if tenant_id is not None and t.id != tenant_id:
                continue
            out.extend(AgentRecord.of(t.id, a) for a in t.agents.values())
            out.extend(ContactRecord.of(t.id, c) for c in t.contacts.contacts.values())
            out.extend(ConversationRecord.of(t.id, c) for c in t.conversations.values())
        return out

    # read views for the HTTP API ----------------------------------------------

    def conversation(self, tenant_id: str, conversation_id: str) -> Conversation | None:
        t = self._tenants.get(tenant_id)
        return t.conversations.get(conversation_id) if t is not None else None

    def agent(self, tenant_id: str, agent_id: str) -> Agent | None:
        t = self._tenants.get(tenant_id)
        return t.agents.get(agent_id) if t is not None else None

    def waiting(self, tenant_id: str, queue_id: str, limit: int | None = None) -> list[Conversation]:
        """A queue's waiting conversations in service order (priority, then age), the first
        ``limit`` of them (all when None).

        The waiting index keeps each (step, channel) group of the queue ordered, so the first
        ``limit`` cost O(groups + limit log groups), however many wait.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative (got {limit})")
        t = self._tenants.get(tenant_id)
        if t is None:
            return []
        return [t.conversations[c] for c in itertools.islice(t.waiting.in_queue(queue_id), limit)]

    def held_by(self, tenant_id: str, agent_id: str) -> list[Conversation]:
        """The conversations an agent holds (offered to them, assigned, or waiting for the
        customer), newest opened first; empty for an agent the tenant does not know.

        Read from the per-agent index the engine keeps for load and presence changes: it
        costs O(what the agent holds), not a walk of the tenant's conversations.
        """
        t = self._view_tenant(tenant_id)
        if t is None:
            return []
        held = (t.conversations.get(c) for c in t.held.get(agent_id, ()))
        found = [c for c in held if c is not None and c.agent_id == agent_id and c.status in HOLDING]
        return sorted(found, key=lambda c: (c.opened_ts, c.id), reverse=True)

    def tenants(self) -> list[str]:
        return sorted(self._tenants)

    def queue_stats(self, tenant_id: str) -> list[QueueStats]:
        """Every queue of the tenant's rules, in rules order: waiting depth and age, offers, assignments.

        Costs O(queues) plus a few bisections per waiting group: the counts are kept up to
        date as conversations change, not recounted.
        """
        t = self._view_tenant(tenant_id)
        rules = t.rules if t is not None else self._rules.tenant(tenant_id)
        assert rules is not None
        waiting = t.waiting.summary() if t is not None else {}
        tally = t.tally if t is not None else {}
        out: list[QueueStats] = []
        for queue in rules.queues:
            depth, oldest_id = waiting.get(queue.id, (0, None))
            oldest = t.conversations.get(oldest_id) if t is not None and oldest_id is not None else None
            out.append(
                QueueStats(
                    queue_id=queue.id,
                    depth=depth,
                    oldest_enqueued_at=oldest.enqueued_at if oldest is not None else None,
                    offered=tally.get((queue.id, ConversationStatus.OFFERED), 0),
                    assigned=tally.get((queue.id, ConversationStatus.ASSIGNED), 0)
                    + tally.get((queue.id, ConversationStatus.WAITING_FOR_CUSTOMER), 0),
                )
            )
        return out

    def agents(self, tenant_id: str) -> list[Agent]:
        """The tenant's agents, sorted by id."""
        t = self._view_tenant(tenant_id)
        return [t.agents[a] for a in sorted(t.agents)] if t is not None else []

    def conversations(
        self,
        tenant_id: str,
        *,
        statuses: Collection[ConversationStatus] | None = None,
        limit: int = 200,
    ) -> list[Conversation]:
        """The tenant's conversations (optionally only those in ``statuses``), newest opened first."""
        if limit < 0:
            raise ValueError(f"limit must not be negative (got {limit})")
        t = self._view_tenant(tenant_id)
        if t is None or limit == 0:
            return []
        wanted = frozenset(ConversationStatus(s) for s in statuses) if statuses is not None else None
        found = (c for c in t.conversations.values() if wanted is None or c.status in wanted)
        return heapq.nlargest(limit, found, key=lambda c: (c.opened_ts, c.id))

    def sla_status(self, tenant_id: str, conversation_id: str) -> list[SlaStatus]:
        """The conversation's running and paused SLA clocks (none without an SLA policy).

        Raises :class:`UnknownConversation` for a conversation the tenant does not hold.
        """
        t = self._view_tenant(tenant_id)
        conv = t.conversations.get(conversation_id) if t is not None else None
        if t is None or conv is None:
            raise UnknownConversation(f"conversation {conversation_id!r} of tenant {tenant_id!r} is not known")
        if conv.sla_policy is None:
            return []
        return [
            SlaStatus(
                target=target.value,
                policy=conv.sla_policy,
                due_at=self._due_at(t, conv, target),
                breached=target.value in conv.breaches,
                paused=conv.clocks[target].running_since is None,
            )
            for target in SlaTarget
            if target in conv.clocks
        ]

    # ------------------------------------------------------------------ plumbing

    def _tenant(self, tenant_id: str) -> _Tenant:
        t = self._tenants.get(tenant_id)
        if t is None:
            tenant_rules = self._rules.tenant(tenant_id)
            if tenant_rules is None:
                raise UnknownTenant(f"tenant {tenant_id!r} is not in the routing rules")
            t = self._tenants[tenant_id] = _Tenant(tenant_id, tenant_rules, self._rules.options_for(tenant_id))
        return t

    def _view_tenant(self, tenant_id: str) -> _Tenant | None:
        """The tenant's state (None while it has none); UnknownTenant when it is in neither state nor rules."""
        t = self._tenants.get(tenant_id)
        if t is None and self._rules.tenant(tenant_id) is None:
            raise UnknownTenant(f"tenant {tenant_id!r} is not in the routing rules")
        return t

    @staticmethod
    def _agent(t: _Tenant, agent_id: str) -> Agent:
        agent = t.agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(f"agent {agent_id!r} of tenant {t.id!r} is not known (upsert it first)")
        return agent

    def _finish(self, call: _Call) -> Effects:
        self._drain_freed(call)
        for tenant_id, kind, entity_id in sorted(call.dirty):
            key = state_key(tenant_id, kind, entity_id)
            t = self._tenants.get(tenant_id)
            entity: StateEntity | None = None
            if t is not None:
                if kind == "agent":
                    entity = t.agents.get(entity_id)
                elif kind == "contact":
                    entity = t.contacts.get(entity_id)
                elif kind == "conversation":
                    t.recount(entity_id)
                    entity = t.conversations.get(entity_id)
            call.effects.state[key] = entity
        return call.effects

    @staticmethod
    def _touch(call: _Call, t: _Tenant, kind: str, entity_id: str) -> None:
        call.dirty.add((t.id, kind, entity_id))

    def _log(
        self,
        t: _Tenant,
        conv: Conversation | None,
        call: _Call,
        decision: RoutingDecision,
        reason: str,
        *,
        conversation_id: str | None = None,
        candidates: Iterable[Candidate] = (),
        agent_id: str | None = None,
        rule: str | None = None,
        step: str | None = None,
    ) -> None:
        step_label = step
        if step_label is None and conv is not None:
            requirement = t.requirement(conv)
            step_label = requirement.label if requirement is not None else None
        call.effects.log.append(
            RoutingLogEntry(
                tenant_id=t.id,
                created_at=call.now,
                conversation_id=conversation_id or (conv.id if conv is not None else "-"),
                decision=decision,
                queue_id=conv.queue_id if conv is not None else None,
                rule=rule if rule is not None else (conv.route_rule if conv is not None else None),
                step=step_label,
                candidates=tuple(candidates),
                agent_id=agent_id,
                reason=reason,
            )
        )

    def _ignore(
        self,
        t: _Tenant,
        conv: Conversation | None,
        call: _Call,
        reason: str,
        *,
        conversation_id: str | None = None,
        agent_id: str | None = None,
    ) -> None:
        """Log a record that changes nothing (a duplicate, a stale answer, an unknown target)."""
        self._log(t, conv, call, RoutingDecision.IGNORED, reason, conversation_id=conversation_id, agent_id=agent_id)

    # ------------------------------------------------------------------ timers

    def _fire_due(self, call: _Call) -> None:
        while (key := self._timers.pop_due(call.now)) is not None:
            t = self._tenants.get(key.tenant_id)
            if t is None:
                continue
            if key.kind is TimerKind.GRACE:
                agent = t.agents.get(key.entity_id)
                if agent is not None:
                    self._grace_expired(t, agent, call)
                continue
            conv = t.conversations.get(key.entity_id)
            if conv is None:
                continue
            if key.kind is TimerKind.OFFER:
                self._offer_expired(t, conv, call)
            elif key.kind is TimerKind.RELAX:
                self._relax_due(t, conv, call)
            elif key.kind is TimerKind.SLA:
                self._sla_due(t, conv, call)
            else:
                self._purge(t, conv, call)
            self._drain_freed(call)

    def _schedule_timers(self, t: _Tenant, conv: Conversation, now: datetime, *, fresh: bool = False) -> None:
        """(Re)schedule every timer a conversation needs in its current state.

        ``fresh`` (a conversation just restored) has no timers yet, so nothing is cancelled.
        """
        offer_due = conv.offer_expires_at if conv.status is ConversationStatus.OFFERED else None
        purge_due = (
            conv.resolved_at + t.options.reopen_window
            if conv.status is ConversationStatus.RESOLVED and conv.resolved_at is not None
            else None
        )
        for kind, due in (
            (TimerKind.OFFER, offer_due),
            (TimerKind.RELAX, self._next_relax(t, conv)),
            (TimerKind.SLA, self._next_sla(t, conv)),
            (TimerKind.PURGE, purge_due),
        ):
            if due is not None:
                self._timers.schedule(TimerKey(kind, t.id, conv.id), due)
            elif not fresh:
                self._timers.cancel(TimerKey(kind, t.id, conv.id))

    def _schedule_grace(self, t: _Tenant, agent: Agent) -> None:
        key = TimerKey(TimerKind.GRACE, t.id, agent.id)
        if agent.presence is Presence.OFFLINE and agent.offline_since is not None and t.held.get(agent.id):
            self._timers.schedule(key, agent.offline_since + t.options.offline_grace)
        else:
            self._timers.cancel(key)

    # ------------------------------------------------------------------ contacts

    def _resolve_contact(self, t: _Tenant, identity: ContactIdentity, call: _Call) -> Contact:
        keys = [handle_key(h.kind, h.value) for h in identity.handles]
        linking = [
            key
            for h, key in zip(identity.handles, keys, strict=True)
            if h.kind.lower() not in _VERIFIED_KINDS or h.verified
        ]
        found = t.contacts.find(linking)
        if len(found) == 1:
            contact = found[0]
            before = (contact.handles, contact.display_name, contact.attributes)
        else:
            # several found are merged (and written); none found is a new contact
            contact = self._merge_contacts(t, found, call) if found else Contact(id=new_id())
            if not found:
                t.contacts.add(contact)
            before = None
        t.contacts.attach(contact, keys)
        if identity.display_name:
            contact.display_name = identity.display_name
        if identity.attributes:
            merged = {**contact.attributes, **identity.attributes}
            if merged != contact.attributes:
                contact.attributes = merged
        # A known contact that wrote the same again (every follow-up message) is not rewritten
        # to the changelog: that was a record per inbound message for nothing.
        if before is None or before != (contact.handles, contact.display_name, contact.attributes):
            self._touch(call, t, "contact", contact.id)
        return contact

    def _merge_contacts(self, t: _Tenant, contacts: list[Contact], call: _Call) -> Contact:
        keep = min(contacts, key=lambda c: c.id)
        gone = {c.id for c in contacts if c is not keep}
        for contact in contacts:
            if contact is not keep:
                t.contacts.merge(keep, contact)
                self._touch(call, t, "contact", contact.id)
        if gone:
            for conv in t.conversations.values():
                if conv.contact_id in gone:
                    conv.contact_id = keep.id
                    self._touch(call, t, "conversation", conv.id)
            for by_contact in t.latest.values():
                moved = [by_contact.pop(contact_id) for contact_id in sorted(gone) if contact_id in by_contact]
                for conv_id in moved:
                    self._remember_latest(t, t.conversations[conv_id])
        self._touch(call, t, "contact", keep.id)
        return keep

    def _contacts_linked(self, t: _Tenant, event: ContactsLinked, call: _Call) -> None:
        keys = [handle_key(h.kind, h.value) for h in event.handles]
        found = t.contacts.find(keys)
        if found:
            contact = self._merge_contacts(t, found, call)
        else:
            contact = Contact(id=new_id())
            t.contacts.add(contact)
        t.contacts.attach(contact, keys)
        self._touch(call, t, "contact", contact.id)

    # ------------------------------------------------------------------ conversations

    def _remember_latest(self, t: _Tenant, conv: Conversation) -> None:
        by_contact = t.latest.get(conv.channel)
        if by_contact is None:
            by_contact = t.latest[conv.channel] = {}
        current = t.conversations.get(by_contact.get(conv.contact_id, ""))
        if current is None or current.opened_ts <= conv.opened_ts:
            by_contact[conv.contact_id] = conv.id

    def _index_conversation(self, t: _Tenant, conv: Conversation) -> None:
        if conv.thread_key is not None:
            t.threads[conv.thread_key] = conv.id
        for message_id in conv.message_ids:
            t.messages[message_id] = conv.id
        self._remember_latest(t, conv)

    @staticmethod
    def _thread_key(msg: InboundMessage) -> str | None:
        if msg.thread_ref is None:
            return None
        return f"{msg.channel.value}:{msg.provider}:{msg.thread_ref}"

    def _find_conversation(self, t: _Tenant, msg: InboundMessage, contact: Contact) -> Conversation | None:
        if msg.reply_token and (conv := t.conversations.get(msg.reply_token)) is not None:
            return conv
        for ref in msg.references:
            conv_id = t.messages.get(f"{msg.provider}:{ref}")
            if conv_id is not None and (conv := t.conversations.get(conv_id)) is not None:
                return conv
        thread = self._thread_key(msg)
        if thread is not None:
            conv_id = t.threads.get(thread)
            return t.conversations.get(conv_id) if conv_id is not None else None
        if msg.channel is Channel.EMAIL:
            return None  # an email with no thread and no known reference starts a new conversation
        conv_id = t.latest.get(msg.channel, {}).get(contact.id)
        return t.conversations.get(conv_id) if conv_id is not None else None

    def _conversation_vars(self, t: _Tenant, conv: Conversation) -> dict[str, Any]:
        contact = t.contacts.get(conv.contact_id)
        return {
            "conversation": {
                "id": conv.id,
                "channel": conv.channel.value,
                "provider": conv.provider,
                "language": conv.language or "",
                "inbox": conv.inbox or "",
                "subject": conv.subject or "",
                "text": conv.preview,
                "priority": conv.priority,
                "queue": conv.queue_id or "",
            },
            "contact": {
                "id": conv.contact_id,
                "attributes": dict(contact.attributes) if contact is not None else {},
            },
        }

    def _vars_of(self, t: _Tenant, conv: Conversation) -> Callable[[], Mapping[str, Any]]:
        """The CEL variables of a conversation, built on first use only."""
        built: list[dict[str, Any]] = []

        def variables() -> Mapping[str, Any]:
            if not built:
                built.append(self._conversation_vars(t, conv))
            return built[0]

        return variables

    @staticmethod
    def _facts_vars(facts: _Facts) -> dict[str, Any]:
        return {
            "conversation": {
                "channel": facts.channel.value,
                "provider": facts.provider,
                "language": facts.language or "",
                "inbox": facts.inbox or "",
                "subject": facts.subject or "",
                "text": facts.text,
            },
            "contact": {"attributes": dict(facts.attributes)},
        }

    @staticmethod
    def _matches(queue: Queue, facts: _Facts, haystack: str, variables: Callable[[], dict[str, Any]]) -> bool:
        """Whether a queue's match conditions hold; ``haystack`` is the subject and text (keywords look there)."""
        m = queue.match
        if m.channels is not None and facts.channel not in m.channels:
            return False
        if m.providers is not None and facts.provider not in m.providers:
            return False
        if m.languages is not None and (facts.language or "").lower() not in m.languages:
            return False
        if m.inboxes is not None and facts.inbox not in m.inboxes and facts.recipient not in m.inboxes:
            return False
        if m.keywords is not None and (not m.keywords or _keywords(m.keywords).search(haystack) is None):
            return False
        if m.subject_keywords is not None and (
            not m.subject_keywords or _keywords(m.subject_keywords).search(facts.subject or "") is None
        ):
            return False
        if m.attributes is not None:
            for name, wanted in m.attributes.items():
                have = facts.attributes.get(name)
                allowed = wanted if isinstance(wanted, list) else [wanted]
                if have not in allowed:
                    return False
        if queue.match_expr is not None:
            try:
                return queue.match_expr.evaluate(variables())
            except ValueError:
                return False
        return True

    def _choose_queue(self, t: _Tenant, facts: _Facts) -> tuple[str | None, str]:
        built: list[dict[str, Any]] = []

        def variables() -> dict[str, Any]:
            if not built:
                built.append(self._facts_vars(facts))
            return built[0]

        haystack = f"{facts.subject or ''}\n{facts.text}"
        for queue in t.rules.queues:
            if self._matches(queue, facts, haystack, variables):
                return queue.id, sys.intern(f"match: queue {queue.id}")  # one copy per queue, not per conversation
        if t.rules.default_queue is not None:
            return t.rules.default_queue, "default_queue"
        return None, "no queue matched"

    def _facts_of(self, t: _Tenant, conv: Conversation) -> _Facts:
        contact = t.contacts.get(conv.contact_id)
        return _Facts(
            channel=conv.channel,
            provider=conv.provider,
            language=conv.language,
            inbox=conv.inbox,
            recipient=conv.inbox,
            subject=conv.subject,
            text=conv.preview,
            attributes=contact.attributes if contact is not None else {},
        )

    def _inbound(self, t: _Tenant, msg: InboundMessage, call: _Call) -> None:
        message_key = f"{msg.provider}:{msg.provider_message_id}"
        known = t.messages.get(message_key)
        if known is not None:
            conv = t.conversations.get(known)
            self._ignore(
                t,
                conv,
                call,
                "duplicate inbound message (same provider message id)",
                conversation_id=known,
            )
            return
        if msg.automated is not None:
            self._ignore(
                t,
                None,
                call,
                f"automated message ({msg.automated.value}) never opens or reopens a conversation",
                conversation_id=f"inbound:{msg.id}",
            )
            return
        contact = self._resolve_contact(t, msg.contact, call)
        conv = self._find_conversation(t, msg, contact)
        if msg.author_role is AuthorRole.AGENT:
            if conv is None:
                self._ignore(
                    t,
                    None,
                    call,
                    "agent-authored message outside any known conversation",
                    conversation_id=f"inbound:{msg.id}",
                )
                return
            conv.remember_message(message_key)
            t.messages[message_key] = conv.id
            self._agent_replied(t, conv, waiting=True, call=call)
            return
        if conv is not None and conv.status is ConversationStatus.RESOLVED:
            assert conv.resolved_at is not None
            if call.now - conv.resolved_at > t.options.reopen_window:
                conv = None
        if conv is None:
            self._open(t, msg, contact, message_key, call)
            return
        conv.remember_message(message_key)
        t.messages[message_key] = conv.id
        conv.preview = msg.text[:PREVIEW_CHARS]
        if msg.subject:
            conv.subject = msg.subject
        self._touch(call, t, "conversation", conv.id)
        if conv.status is ConversationStatus.RESOLVED:
            self._reopen(t, conv, call)
        else:
            self._follow_up(t, conv, call)
        self._schedule_timers(t, conv, call.now)

    def _open(self, t: _Tenant, msg: InboundMessage, contact: Contact, message_key: str, call: _Call) -> None:
        facts = _Facts(
            channel=msg.channel,
            provider=msg.provider,
            language=msg.language,
            inbox=msg.inbox,
            recipient=msg.recipient,
            subject=msg.subject,
            text=msg.text,
            attributes=contact.attributes,
        )
        queue_id, rule = self._choose_queue(t, facts)
        queue = t.queues.get(queue_id) if queue_id is not None else None
        conv = Conversation(
            id=new_id(),
            channel=msg.channel,
            provider=sys.intern(msg.provider),
            contact_id=contact.id,
            opened_at=call.now,
            thread_key=self._thread_key(msg),
            queue_id=queue_id,
            route_rule=rule,
            priority=queue.priority if queue is not None else 0,
            enqueued_at=call.now,
            subject=msg.subject,
            preview=msg.text[:PREVIEW_CHARS],
            language=sys.intern(msg.language) if msg.language is not None else None,
            inbox=msg.inbox or msg.recipient,
            customer_name=msg.contact.display_name,
            sla_policy=queue.sla_policy if queue is not None else None,
        )
        conv.remember_message(message_key)
        t.conversations[conv.id] = conv
        self._index_conversation(t, conv)
        self._start_clock(conv, SlaTarget.FIRST_RESPONSE, call.now)
        self._start_clock(conv, SlaTarget.RESOLUTION, call.now)
        self._touch(call, t, "conversation", conv.id)
        self._route(t, conv, call, RoutingDecision.QUEUED, "new conversation")

    def _reopen(self, t: _Tenant, conv: Conversation, call: _Call) -> None:
        conv.status = ConversationStatus.QUEUED
        conv.resolved_at = None
        conv.declined_by = NO_IDS
        conv.step = 0
        conv.enqueued_at = call.now
        queue = t.queues.get(conv.queue_id) if conv.queue_id is not None else None
        if queue is None:
            conv.queue_id, conv.route_rule = self._choose_queue(t, self._facts_of(t, conv))
        self._start_clock(conv, SlaTarget.NEXT_RESPONSE if conv.agent_replied else SlaTarget.FIRST_RESPONSE, call.now)
        self._resume_clock(t, conv, SlaTarget.RESOLUTION, call.now, restart=True)
        self._log(t, conv, call, RoutingDecision.REOPENED, "customer wrote after resolution")
        self._route(t, conv, call, RoutingDecision.QUEUED, "reopened", sticky=conv.last_agent_id)

    def _follow_up(self, t: _Tenant, conv: Conversation, call: _Call) -> None:
        if conv.agent_replied and SlaTarget.NEXT_RESPONSE not in conv.clocks:
            self._start_clock(conv, SlaTarget.NEXT_RESPONSE, call.now)
        if conv.status is ConversationStatus.WAITING_FOR_CUSTOMER:
            self._resume_clock(t, conv, SlaTarget.RESOLUTION, call.now)
            if conv.agent_id is None:
                conv.status = ConversationStatus.QUEUED
                conv.enqueued_at = call.now
                conv.step = 0
                self._route(t, conv, call, RoutingDecision.QUEUED, "customer replied, no agent holds it")
                return
            conv.status = ConversationStatus.ASSIGNED
        if conv.status is ConversationStatus.ASSIGNED and conv.agent_id is not None:
            agent = t.agents.get(conv.agent_id)
            if agent is not None and agent.endpoints:
                self._dispatch(t, conv, call, DispatchKind.FOLLOW_UP, agent.id, agent.endpoints)
            self._log(
                t, conv, call, RoutingDecision.FOLLOW_UP, "customer message to the assignee", agent_id=conv.agent_id
            )
        else:
            self._log(t, conv, call, RoutingDecision.FOLLOW_UP, f"joined a {conv.status.value} conversation")

    # ------------------------------------------------------------------ routing

    def _sticky_candidate(self, t: _Tenant, conv: Conversation, now: datetime) -> str | None:
        contact = t.contacts.get(conv.contact_id)
        if contact is None or contact.last_agent_id is None or contact.last_agent_at is None:
            return None
        if now - contact.last_agent_at > t.options.sticky_window:
            return None
        return contact.last_agent_id

    def _place(self, t: _Tenant, conv: Conversation, call: _Call) -> None:
        """Re-match a queued conversation under the current rules and file it in the waiting index."""
        queue_id, rule = self._choose_queue(t, self._facts_of(t, conv))
        if queue_id != conv.queue_id:
            conv.queue_id, conv.route_rule, conv.step = queue_id, rule, 0
            queue = t.queues.get(queue_id) if queue_id is not None else None
            conv.priority = max(conv.priority, queue.priority if queue is not None else 0)
        steps = t.requirements.get(conv.queue_id or "")
        conv.step = min(conv.step, len(steps) - 1) if steps else 0
        t.waiting.add(conv)
        self._touch(call, t, "conversation", conv.id)

    def _route(
        self,
        t: _Tenant,
        conv: Conversation,
        call: _Call,
        decision_if_queued: RoutingDecision,
        why: str,
        *,
        sticky: str | None = None,
    ) -> bool:
        """Assign or offer a queued conversation, or leave it waiting; True when it was placed."""
        self._touch(call, t, "conversation", conv.id)
        conv.status = ConversationStatus.QUEUED
        queue = t.queues.get(conv.queue_id) if conv.queue_id is not None else None
        requirement = t.requirement(conv)
        if queue is None or requirement is None:
            t.waiting.discard(conv.id)
            self._log(t, conv, call, decision_if_queued, f"{why}: no queue matched and no default_queue")
            self._schedule_timers(t, conv, call.now)
            return False
        sticky_id = sticky if sticky is not None else self._sticky_candidate(t, conv, call.now)
        selection = select_agent(
            t.agents,
            t.index,
            conv.channel,
            requirement,
            queue,
            conv.declined_by,
            self._vars_of(t, conv),
            sticky_id,
        )
        if selection.agent is None:
            t.waiting.add(conv)
            self._log(
                t,
                conv,
                call,
                decision_if_queued,
                f"{why}: waiting, no eligible agent",
                candidates=selection.candidates,
            )
            self._schedule_timers(t, conv, call.now)
            return False
        t.waiting.discard(conv.id)
        if queue.mode is Mode.OFFER:
            self._offer(t, conv, selection.agent, queue, selection, call)
        else:
            self._assign(t, conv, selection.agent, call, selection.reason, selection.candidates)
        self._schedule_timers(t, conv, call.now)
        return True

    def _hold(self, t: _Tenant, conv: Conversation, agent: Agent, call: _Call) -> None:
        conv.agent_id = agent.id
        agent.load[conv.channel] = agent.load.get(conv.channel, 0) + 1
        agent.idle_since = call.now
        t.hold(agent.id, conv.id)
        t.index.update(agent)
        self._touch(call, t, "agent", agent.id)

    def _release(self, t: _Tenant, conv: Conversation, call: _Call) -> Agent | None:
        """Take the conversation off its agent's load; the agent is then checked for queued work."""
        agent_id, conv.agent_id = conv.agent_id, None
        conv.offer_id = None
        conv.offer_expires_at = None
        if agent_id is None:
            return None
        t.unhold(agent_id, conv.id)
        agent = t.agents.get(agent_id)
        if agent is None:
            return None
        agent.load[conv.channel] = max(agent.load.get(conv.channel, 0) - 1, 0)
        t.index.update(agent)
        self._schedule_grace(t, agent)
        call.freed[(t.id, agent.id)] = None
        self._touch(call, t, "agent", agent.id)
        return agent

    def _assign(
        self,
        t: _Tenant,
        conv: Conversation,
        agent: Agent,
        call: _Call,
        reason: str,
        candidates: Iterable[Candidate] = (),
    ) -> None:
        if conv.agent_id != agent.id:
            self._hold(t, conv, agent, call)
        conv.status = ConversationStatus.ASSIGNED
        conv.assigned_at = call.now
        conv.offer_id = None
        conv.offer_expires_at = None
        conv.last_agent_id = agent.id
        self._remember_agent(t, conv, agent, call)
        self._dispatch(t, conv, call, DispatchKind.ASSIGNMENT, agent.id, agent.endpoints)
        self._log(t, conv, call, RoutingDecision.ASSIGNED, reason, candidates=candidates, agent_id=agent.id)

    def _remember_agent(self, t: _Tenant, conv: Conversation, agent: Agent, call: _Call) -> None:
        contact = t.contacts.get(conv.contact_id)
        if contact is not None:
            contact.last_agent_id = agent.id
            contact.last_agent_at = call.now
            self._touch(call, t, "contact", contact.id)

    def _offer(
        self, t: _Tenant, conv: Conversation, agent: Agent, queue: Queue, selection: Selection, call: _Call
    ) -> None:
        self._hold(t, conv, agent, call)
        conv.status = ConversationStatus.OFFERED
        conv.offer_id = new_id()
        conv.offer_expires_at = call.now + queue.offer_timeout
        self._dispatch(t, conv, call, DispatchKind.OFFER, agent.id, agent.endpoints)
        self._log(
            t,
            conv,
            call,
            RoutingDecision.OFFERED,
            f"{selection.reason}; offer expires in {int(queue.offer_timeout.total_seconds())}s",
            candidates=selection.candidates,
            agent_id=agent.id,
        )

    def _requeue(self, t: _Tenant, conv: Conversation, call: _Call, reason: str, *, exclude: bool) -> None:
        """Take a conversation back from its agent and route it again (never back to them if ``exclude``)."""
        agent_id = conv.agent_id
        if exclude and agent_id is not None:
            conv.declined_by |= {agent_id}
        self._release(t, conv, call)
        self._log(t, conv, call, RoutingDecision.REROUTED, reason, agent_id=agent_id)
        self._route(t, conv, call, RoutingDecision.QUEUED, reason)

    def _drain_freed(self, call: _Call) -> None:
        """Give agents who have room (again) the best queued work they can take, at once."""
        while call.freed:
            (tenant_id, agent_id), _ = call.freed.popitem()
            t = self._tenants.get(tenant_id)
            if t is None:
                continue
            agent = t.agents.get(agent_id)
            if agent is not None:
                self._pull_work(t, agent, call)

    def _pull_work(self, t: _Tenant, agent: Agent, call: _Call) -> None:
        while agent.takes_work():
            best: tuple[tuple[int, float, str], Conversation] | None = None
            for channel in agent.capacity:
                if not agent.has_room(channel):
                    continue
                for (queue_id, step, _), bucket in t.waiting.groups(channel):
                    steps = t.requirements.get(queue_id)
                    queue = t.queues.get(queue_id)
                    if not steps or queue is None:
                        continue
                    requirement = steps[min(step, len(steps) - 1)]
                    if not any(
                        all(agent.skills.get(s, 0) >= lvl for s, lvl in alt.skills) for alt in requirement.alternatives
                    ):
                        continue
                    for entry in bucket:
                        if best is not None and entry >= best[0]:
                            break
                        conv = t.conversations[entry[2]]
                        conv_vars = self._vars_of(t, conv)
                        if any(
                            check_agent(agent, channel, alt, conv.declined_by, queue.agent_filter, conv_vars) is None
                            for alt in requirement.alternatives
                        ):
                            best = (entry, conv)
                            break
            if best is None:
                return
            if not self._route(t, best[1], call, RoutingDecision.QUEUED, f"agent {agent.id} has room"):
                return

    # ------------------------------------------------------------------ agents

    def _agent_upserted(self, t: _Tenant, event: AgentUpserted, call: _Call) -> None:
        agent = t.agents.get(event.agent_id)
        if agent is None:
            agent = t.agents[event.agent_id] = Agent(id=event.agent_id, idle_since=call.now)
        agent.display_name = event.display_name
        agent.skills = dict(event.skills)
        agent.capacity = dict(event.capacity)
        agent.endpoints = event.endpoints
        agent.attributes = dict(event.attributes)
        self._touch(call, t, "agent", agent.id)
        if event.presence is not None and event.presence is not agent.presence:
            self._presence(t, agent, event.presence, call)
        else:
            t.index.update(agent)
            if agent.takes_work():
                call.freed[(t.id, agent.id)] = None
        if not agent.endpoints:
            for conv_id in sorted(t.held.get(agent.id, ())):
                conv = t.conversations[conv_id]
                if conv.status is ConversationStatus.OFFERED:
                    self._requeue(t, conv, call, "offer withdrawn: agent has no delivery endpoint", exclude=False)

    def _agent_removed(self, t: _Tenant, event: AgentRemoved, call: _Call) -> None:
        agent = t.agents.get(event.agent_id)
        if agent is None:
            raise UnknownAgent(f"agent {event.agent_id!r} of tenant {t.id!r} is not known")
        agent.presence = Presence.OFFLINE
        t.index.discard(agent.id)
        for conv_id in sorted(t.held.get(agent.id, ())):
            conv = t.conversations[conv_id]
            if conv.status is ConversationStatus.OFFERED:
                self._withdraw(t, conv, agent, call, "offer withdrawn: agent removed")
            elif conv.status is ConversationStatus.WAITING_FOR_CUSTOMER:
                self._release(t, conv, call)
                self._touch(call, t, "conversation", conv.id)
            else:
                self._requeue(t, conv, call, "agent removed", exclude=True)
        del t.agents[agent.id]
        t.held.pop(agent.id, None)
        call.freed.pop((t.id, agent.id), None)
        self._timers.cancel(TimerKey(TimerKind.GRACE, t.id, agent.id))
        self._touch(call, t, "agent", agent.id)

    def _presence(self, t: _Tenant, agent: Agent, presence: Presence, call: _Call) -> None:
        previous = agent.presence
        agent.presence = presence
        self._touch(call, t, "agent", agent.id)
        if presence is Presence.AVAILABLE:
            agent.offline_since = None
            if previous is not Presence.AVAILABLE:
                agent.idle_since = call.now
            t.index.update(agent)
            self._schedule_grace(t, agent)
            call.freed[(t.id, agent.id)] = None
            return
        t.index.update(agent)
        if presence is Presence.OFFLINE:
            if previous is not Presence.OFFLINE:
                agent.offline_since = call.now
            for conv_id in sorted(t.held.get(agent.id, ())):
                conv = t.conversations[conv_id]
                if conv.status is ConversationStatus.OFFERED:
                    self._withdraw(t, conv, agent, call, "offer withdrawn: agent went offline")
            if t.options.offline_grace <= _ZERO:
                self._grace_expired(t, agent, call)
            else:
                self._schedule_grace(t, agent)

    def _withdraw(self, t: _Tenant, conv: Conversation, agent: Agent, call: _Call, reason: str) -> None:
        self._dispatch(t, conv, call, DispatchKind.OFFER_WITHDRAWN, agent.id, agent.endpoints)
        self._log(t, conv, call, RoutingDecision.WITHDRAWN, reason, agent_id=agent.id)
        self._release(t, conv, call)
        self._route(t, conv, call, RoutingDecision.QUEUED, reason)

    def _grace_expired(self, t: _Tenant, agent: Agent, call: _Call) -> None:
        if agent.presence is not Presence.OFFLINE:
            return
        for conv_id in sorted(t.held.get(agent.id, ())):
            conv = t.conversations[conv_id]
            if conv.status is ConversationStatus.WAITING_FOR_CUSTOMER:
                self._release(t, conv, call)
                self._log(
                    t, conv, call, RoutingDecision.REROUTED, "agent offline past the grace period", agent_id=agent.id
                )
                self._touch(call, t, "conversation", conv.id)
            elif conv.status is ConversationStatus.ASSIGNED:
                self._requeue(t, conv, call, "agent offline past the grace period", exclude=False)
        self._schedule_grace(t, agent)

    # ------------------------------------------------------------------ agent actions

    def _target(self, t: _Tenant, conversation_id: str, call: _Call, what: str) -> Conversation | None:
        conv = t.conversations.get(conversation_id)
        if conv is None:
            self._ignore(
                t,
                None,
                call,
                f"{what} for an unknown conversation",
                conversation_id=conversation_id,
            )
        return conv

    def _open_offer(
        self, t: _Tenant, event: OfferAccepted | OfferDeclined, call: _Call, verb: str
    ) -> Conversation | None:
        """The conversation of an answer to an offer, or None (logged as ignored) when no such offer is open."""
        conv = self._target(t, event.conversation_id, call, verb)
        if conv is None:
            return None
        if (
            conv.status is not ConversationStatus.OFFERED
            or conv.agent_id != event.agent_id
            or (event.offer_id is not None and event.offer_id != conv.offer_id)
        ):
            reason = f"{verb} by {event.agent_id} does not match an open offer (status {conv.status.value})"
            self._ignore(t, conv, call, reason, agent_id=event.agent_id)
            return None
        return conv

    def _offer_accepted(self, t: _Tenant, event: OfferAccepted, call: _Call) -> None:
        conv = self._open_offer(t, event, call, "accept")
        if conv is None:
            return
        agent = t.agents[event.agent_id]
        self._assign_accepted(t, conv, agent, call)

    def _assign_accepted(self, t: _Tenant, conv: Conversation, agent: Agent, call: _Call) -> None:
        conv.status = ConversationStatus.ASSIGNED
        conv.assigned_at = call.now
        conv.offer_id = None
        conv.offer_expires_at = None
        conv.last_agent_id = agent.id
        self._remember_agent(t, conv, agent, call)
        self._touch(call, t, "conversation", conv.id)
        self._log(t, conv, call, RoutingDecision.ASSIGNED, "offer accepted", agent_id=agent.id)
        self._schedule_timers(t, conv, call.now)

    def _offer_declined(self, t: _Tenant, event: OfferDeclined, call: _Call) -> None:
        conv = self._open_offer(t, event, call, "decline")
        if conv is None:
            return
        reason = "offer declined" + (f": {event.reason}" if event.reason else "")
        self._requeue(t, conv, call, reason, exclude=True)

    def _offer_expired(self, t: _Tenant, conv: Conversation, call: _Call) -> None:
        if conv.status is not ConversationStatus.OFFERED or conv.agent_id is None:
            return
        agent = t.agents.get(conv.agent_id)
        if agent is not None and agent.endpoints:
            self._dispatch(t, conv, call, DispatchKind.OFFER_WITHDRAWN, agent.id, agent.endpoints)
        self._requeue(t, conv, call, "offer timed out", exclude=True)

    def _reply_sent(self, t: _Tenant, event: ReplySent, call: _Call) -> None:
        conv = self._target(t, event.conversation_id, call, "reply")
        if conv is None:
            return
        if conv.status is ConversationStatus.RESOLVED:
            self._ignore(t, conv, call, "reply on a resolved conversation")
            return
        if conv.status is ConversationStatus.OFFERED and conv.agent_id == event.agent_id:
            self._assign_accepted(t, conv, t.agents[event.agent_id], call)
        self._agent_replied(t, conv, waiting=event.waiting_for_customer, call=call)

    def _agent_replied(self, t: _Tenant, conv: Conversation, *, waiting: bool, call: _Call) -> None:
        conv.agent_replied = True
        self._stop_clock(conv, SlaTarget.FIRST_RESPONSE)
        self._stop_clock(conv, SlaTarget.NEXT_RESPONSE)
        if waiting and conv.status is ConversationStatus.ASSIGNED:
            conv.status = ConversationStatus.WAITING_FOR_CUSTOMER
            self._pause_clock(t, conv, SlaTarget.RESOLUTION, call.now)
        self._touch(call, t, "conversation", conv.id)
        self._schedule_timers(t, conv, call.now)

    def _resolved(self, t: _Tenant, event: ConversationResolved, call: _Call) -> None:
        conv = self._target(t, event.conversation_id, call, "resolve")
        if conv is None:
            return
        if conv.status is ConversationStatus.RESOLVED:
            self._ignore(t, conv, call, "already resolved", agent_id=event.agent_id)
            return
        if conv.agent_id is not None:
            agent = t.agents.get(conv.agent_id)
            if agent is not None and conv.status is not ConversationStatus.OFFERED:
                self._remember_agent(t, conv, agent, call)
                conv.last_agent_id = agent.id
        self._release(t, conv, call)
        t.waiting.discard(conv.id)
        conv.status = ConversationStatus.RESOLVED
        conv.resolved_at = call.now
        conv.clear_clocks()
        self._touch(call, t, "conversation", conv.id)
        self._log(t, conv, call, RoutingDecision.RESOLVED, f"resolved by {event.agent_id}", agent_id=event.agent_id)
        self._schedule_timers(t, conv, call.now)

    def _transferred(self, t: _Tenant, event: ConversationTransferred, call: _Call) -> None:
        conv = self._target(t, event.conversation_id, call, "transfer")
        if conv is None:
            return
        if conv.status is ConversationStatus.RESOLVED:
            self._ignore(t, conv, call, "cannot transfer a resolved conversation")
            return
        note = f" ({event.reason})" if event.reason else ""
        if event.to_agent_id is not None:
            target = t.agents.get(event.to_agent_id)
            problem = None
            if target is None:
                problem = "unknown agent"
            elif not target.takes_work():
                problem = f"agent not available ({target.presence.value})"
            elif not target.has_room(conv.channel) and conv.agent_id != target.id:
                problem = f"agent has no room on {conv.channel.value}"
            if problem is not None or target is None:
                self._ignore(
                    t,
                    conv,
                    call,
                    f"transfer to {event.to_agent_id} refused: {problem}",
                    agent_id=event.to_agent_id,
                )
                return
            if conv.agent_id != target.id:
                self._release(t, conv, call)
            t.waiting.discard(conv.id)
            self._assign(t, conv, target, call, f"transferred by {event.agent_id}{note}")
            self._touch(call, t, "conversation", conv.id)
            self._schedule_timers(t, conv, call.now)
            return
        assert event.to_queue is not None
        if t.queues.get(event.to_queue) is None:
            self._ignore(t, conv, call, f"transfer refused: unknown queue {event.to_queue!r}")
            return
        if conv.agent_id is not None:
            conv.declined_by |= {conv.agent_id}
        self._release(t, conv, call)
        self._move(t, conv, event.to_queue, f"transfer by {event.agent_id}")
        self._log(t, conv, call, RoutingDecision.REROUTED, f"transferred to queue {event.to_queue}{note}")
        self._route(t, conv, call, RoutingDecision.QUEUED, f"transferred to queue {event.to_queue}")

    @staticmethod
    def _move(t: _Tenant, conv: Conversation, queue_id: str, rule: str) -> None:
        queue = t.queues.get(queue_id)
        conv.queue_id = queue_id
        conv.route_rule = rule
        conv.step = 0
        conv.priority = max(conv.priority, queue.priority if queue is not None else 0)
        if conv.status is ConversationStatus.QUEUED:
            t.waiting.discard(conv.id)

    def _delivery_result(self, t: _Tenant, result: DeliveryResult, call: _Call) -> None:
        if result.status is not DeliveryStatus.FAILED:
            return
        conv = self._target(t, result.conversation_id, call, "delivery result")
        if conv is None:
            return
        error = f"delivery of {result.dispatch_kind.value} failed: {result.error or 'no reason given'}"
        if (
            result.dispatch_kind is DispatchKind.OFFER
            and conv.status is ConversationStatus.OFFERED
            and conv.agent_id == result.agent_id
        ) or (
            result.dispatch_kind is DispatchKind.ASSIGNMENT
            and conv.status is ConversationStatus.ASSIGNED
            and conv.agent_id == result.agent_id
            and not conv.agent_replied
        ):
            self._requeue(t, conv, call, error, exclude=True)
            return
        self._ignore(t, conv, call, f"{error}; nothing to re-route", agent_id=result.agent_id)

    # ------------------------------------------------------------------ relaxation

    def _next_relax(self, t: _Tenant, conv: Conversation) -> datetime | None:
        if conv.status not in (ConversationStatus.QUEUED, ConversationStatus.OFFERED) or conv.queue_id is None:
            return None
        queue = t.queues.get(conv.queue_id)
        if queue is None or conv.enqueued_at is None or conv.step >= len(queue.relaxation):
            return None
        return conv.enqueued_at + queue.relaxation[conv.step].after

    def _relax_due(self, t: _Tenant, conv: Conversation, call: _Call) -> None:
        queue = t.queues.get(conv.queue_id) if conv.queue_id is not None else None
        if queue is None or conv.enqueued_at is None:
            return
        moved = False
        while conv.step < len(queue.relaxation) and conv.enqueued_at + queue.relaxation[conv.step].after <= call.now:
            conv.step += 1
            moved = True
        if moved:
            self._relaxed(t, conv, call, f"waited {int((call.now - conv.enqueued_at).total_seconds())}s")
        self._schedule_timers(t, conv, call.now)

    def _relaxed(self, t: _Tenant, conv: Conversation, call: _Call, why: str) -> None:
        self._touch(call, t, "conversation", conv.id)
        requirement = t.requirement(conv)
        detail = ""
        if requirement is not None:
            detail = "; ".join(
                f"{alt.origin}: " + (", ".join(f"{s}>={lvl}" for s, lvl in alt.skills) or "any skills")
                for alt in requirement.alternatives
            )
        self._log(t, conv, call, RoutingDecision.RELAXED, f"{why}; now requires {detail}")
        if conv.status is ConversationStatus.QUEUED:
            self._route(t, conv, call, RoutingDecision.QUEUED, "relaxed")

    # ------------------------------------------------------------------ SLA

    @staticmethod
    def _start_clock(conv: Conversation, target: SlaTarget, now: datetime) -> None:
        conv.set_clock(target, SlaClock(started_at=now, running_since=now))
        if conv.fired:
            kept = frozenset(label for label in conv.fired if not label.startswith(f"{target.value}:"))
            conv.fired = kept or NO_IDS

    @staticmethod
    def _stop_clock(conv: Conversation, target: SlaTarget) -> None:
        conv.drop_clock(target)

    def _pause_clock(self, t: _Tenant, conv: Conversation, target: SlaTarget, now: datetime) -> None:
        clock = conv.clocks.get(target)
        policy = t.rules.sla_policies.get(conv.sla_policy or "")
        if clock is None or clock.running_since is None or policy is None:
            return
        consumed = clock.consumed + t.calendar(policy).between(clock.running_since, now)
        conv.set_clock(target, SlaClock(started_at=clock.started_at, consumed=consumed, running_since=None))

    @staticmethod
    def _resume_clock(
        t: _Tenant, conv: Conversation, target: SlaTarget, now: datetime, *, restart: bool = False
    ) -> None:
        clock = conv.clocks.get(target)
        if clock is None:
            if restart:
                conv.set_clock(target, SlaClock(started_at=now, running_since=now))
            return
        if clock.running_since is None:
            conv.set_clock(target, SlaClock(started_at=clock.started_at, consumed=clock.consumed, running_since=now))

    def _points(self, policy: SlaPolicy, target: SlaTarget) -> list[tuple[timedelta, int, str, EscalationStep | None]]:
        """Escalation points of a target in firing order: (threshold, order, label, step)."""
        goal = policy.target(target)
        points: list[tuple[timedelta, int, str, EscalationStep | None]] = []
        for index, step in enumerate(policy.escalations):
            if step.target is not target:
                continue
            if isinstance(step.at, timedelta):
                threshold = step.at
            else:
                assert goal is not None
                threshold = goal * step.at
            points.append((threshold, 1 + index, f"{target.value}:{index}", step))
        if goal is not None:
            points.append((goal, 0, f"{target.value}:breach", None))
        points.sort(key=lambda p: (p[0], p[1]))
        return points

    def _elapsed(self, cal: Calendar, clock: SlaClock, now: datetime) -> timedelta:
        if clock.running_since is None:
            return clock.consumed
        return clock.consumed + cal.between(clock.running_since, now)

    def _next_sla(self, t: _Tenant, conv: Conversation) -> datetime | None:
        policy = t.rules.sla_policies.get(conv.sla_policy or "")
        if policy is None or conv.status is ConversationStatus.RESOLVED:
            return None
        cal = t.calendar(policy)
        due: datetime | None = None
        for target, clock in conv.clocks.items():
            if clock.running_since is None:
                continue
            for threshold, _, label, _ in self._points(policy, target):
                if label in conv.fired:
                    continue
                at = cal.add(clock.running_since, max(threshold - clock.consumed, _ZERO))
                if due is None or at < due:
                    due = at
                break
        return due

    def _due_at(self, t: _Tenant, conv: Conversation, target: SlaTarget) -> datetime | None:
        policy = t.rules.sla_policies.get(conv.sla_policy or "")
        clock = conv.clocks.get(target)
        goal = policy.target(target) if policy is not None else None
        if policy is None or clock is None or goal is None or clock.running_since is None:
            return None
        return t.calendar(policy).add(clock.running_since, max(goal - clock.consumed, _ZERO))

    def _sla_due(self, t: _Tenant, conv: Conversation, call: _Call) -> None:
        policy_name = conv.sla_policy or ""
        policy = t.rules.sla_policies.get(policy_name)
        if policy is None or conv.status is ConversationStatus.RESOLVED:
            return
        cal = t.calendar(policy)
        due: list[tuple[datetime, timedelta, int, SlaTarget, str, EscalationStep | None]] = []
        for target, clock in conv.clocks.items():
            elapsed = self._elapsed(cal, clock, call.now)
            for threshold, order, label, step in self._points(policy, target):
                if label in conv.fired or threshold > elapsed:
                    continue
                when = (
                    cal.add(clock.running_since, max(threshold - clock.consumed, _ZERO))
                    if clock.running_since is not None
                    else call.now
                )
                due.append((when, threshold, order, target, label, step))
        due.sort(key=lambda d: (d[0], d[1], d[2]))
        for _, _, _, target, label, step in due:
            if target not in conv.clocks:
                continue  # an earlier action stopped this clock (or resolved the conversation)
            conv.fired = t.shared_set(conv.fired | {label})
            self._touch(call, t, "conversation", conv.id)
            if step is None:
                conv.add_breach(target.value)
                conv.breaches = t.shared_tuple(conv.breaches)
                self._log(
                    t,
                    conv,
                    call,
                    RoutingDecision.SLA_BREACHED,
                    f"{target.value} target missed",
                    rule=f"sla_policy {policy_name}",
                    agent_id=conv.agent_id,
                )
            else:
                self._escalate(t, conv, policy_name, target, label, step, call)
        self._schedule_timers(t, conv, call.now)

    def _escalate(
        self,
        t: _Tenant,
        conv: Conversation,
        policy_name: str,
        target: SlaTarget,
        label: str,
        step: EscalationStep,
        call: _Call,
    ) -> None:
        index = int(label.rsplit(":", 1)[1])
        step_name = step.label(index)
        rule = f"sla_policy {policy_name}"
        info = EscalationInfo(
            policy=policy_name,
            target=target.value,
            step=step_name,
            due_at=self._due_at(t, conv, target),
            breached=target.value in conv.breaches,
        )
        action = step.action
        note = f"{target.value} escalation {step_name}: {action.value}"
        if action is EscalationAction.WARN_AGENT:
            agent = t.agents.get(conv.agent_id) if conv.agent_id is not None else None
            if agent is not None and agent.endpoints:
                self._dispatch(t, conv, call, DispatchKind.SLA_WARNING, agent.id, agent.endpoints, escalation=info)
                self._log(t, conv, call, RoutingDecision.ESCALATED, note, rule=rule, agent_id=agent.id)
            else:
                self._log(t, conv, call, RoutingDecision.ESCALATED, f"{note}: no assignee to warn", rule=rule)
        elif action is EscalationAction.NOTIFY_SUPERVISOR:
            assert step.supervisor is not None
            self._dispatch(t, conv, call, DispatchKind.ESCALATION, None, (step.supervisor,), escalation=info)
            self._log(t, conv, call, RoutingDecision.ESCALATED, note, rule=rule)
        elif action is EscalationAction.RAISE_PRIORITY:
            conv.priority += step.raise_by
            if conv.id in t.waiting:
                t.waiting.add(conv)
            self._log(t, conv, call, RoutingDecision.ESCALATED, f"{note} to {conv.priority}", rule=rule)
        elif action is EscalationAction.RELAX:
            queue = t.queues.get(conv.queue_id) if conv.queue_id is not None else None
            if queue is not None and conv.step < len(queue.relaxation):
                conv.step += 1
                if conv.id in t.waiting:
                    t.waiting.add(conv)
                self._log(t, conv, call, RoutingDecision.ESCALATED, note, rule=rule)
                self._relaxed(t, conv, call, f"SLA escalation {step_name}")
            else:
                self._log(t, conv, call, RoutingDecision.ESCALATED, f"{note}: nothing left to relax", rule=rule)
        elif action is EscalationAction.MOVE_QUEUE:
            assert step.to_queue is not None
            self._log(t, conv, call, RoutingDecision.ESCALATED, f"{note} to {step.to_queue}", rule=rule)
            if conv.status is ConversationStatus.OFFERED and conv.agent_id is not None:
                agent = t.agents.get(conv.agent_id)
                if agent is not None and agent.endpoints:
                    self._dispatch(t, conv, call, DispatchKind.OFFER_WITHDRAWN, agent.id, agent.endpoints)
                self._release(t, conv, call)
                conv.status = ConversationStatus.QUEUED
            self._move(t, conv, step.to_queue, f"{rule}: {step_name}")
            conv.enqueued_at = call.now
            if conv.status is ConversationStatus.QUEUED:
                self._route(t, conv, call, RoutingDecision.QUEUED, f"moved to {step.to_queue}")
        else:  # REASSIGN
            if conv.status in (ConversationStatus.OFFERED, ConversationStatus.ASSIGNED) and conv.agent_id:
                self._log(t, conv, call, RoutingDecision.ESCALATED, note, rule=rule, agent_id=conv.agent_id)
                if conv.status is ConversationStatus.OFFERED:
                    agent = t.agents.get(conv.agent_id)
                    if agent is not None and agent.endpoints:
                        self._dispatch(t, conv, call, DispatchKind.OFFER_WITHDRAWN, agent.id, agent.endpoints)
                self._requeue(t, conv, call, f"SLA escalation {step_name}: reassigned", exclude=True)
            else:
                self._log(t, conv, call, RoutingDecision.ESCALATED, f"{note}: no assignee to take it from", rule=rule)

    # ------------------------------------------------------------------ dispatch

    def _dispatch(
        self,
        t: _Tenant,
        conv: Conversation,
        call: _Call,
        kind: DispatchKind,
        agent_id: str | None,
        endpoints: tuple[DeliveryEndpoint, ...],
        *,
        escalation: EscalationInfo | None = None,
    ) -> None:
        if not endpoints:
            return
        sequence = conv.next_sequence()
        self._touch(call, t, "conversation", conv.id)
        summary = ConversationSummary(
            conversation_id=conv.id,
            channel=conv.channel,
            queue_id=conv.queue_id,
            customer_name=conv.customer_name,
            subject=conv.subject,
            preview=conv.preview,
            priority=conv.priority,
            sla_due_at=self._due_at(t, conv, SlaTarget.FIRST_RESPONSE)
            or self._due_at(t, conv, SlaTarget.NEXT_RESPONSE),
            reply_token=conv.id,
        )
        with_offer = kind in (DispatchKind.OFFER, DispatchKind.OFFER_WITHDRAWN)
        call.effects.dispatches.append(
            Dispatch(
                tenant_id=t.id,
                created_at=call.now,
                dispatch_id=f"{conv.id}.{sequence}",
                kind=kind,
                agent_id=agent_id,
                conversation=summary,
                endpoints=endpoints,
                offer_id=conv.offer_id if with_offer else None,
                offer_expires_at=conv.offer_expires_at if kind is DispatchKind.OFFER else None,
                escalation=escalation,
                sequence=sequence,
            )
        )

    # ------------------------------------------------------------------ purge

    def _purge(self, t: _Tenant, conv: Conversation, call: _Call) -> None:
        if conv.status is not ConversationStatus.RESOLVED or conv.resolved_at is None:
            return
        if call.now - conv.resolved_at < t.options.reopen_window:
            self._schedule_timers(t, conv, call.now)
            return
        t.uncount(conv)
        del t.conversations[conv.id]
        if conv.thread_key is not None and t.threads.get(conv.thread_key) == conv.id:
            del t.threads[conv.thread_key]
        for message_id in conv.message_ids:
            if t.messages.get(message_id) == conv.id:
                del t.messages[message_id]
        by_contact = t.latest.get(conv.channel, {})
        if by_contact.get(conv.contact_id) == conv.id:
            del by_contact[conv.contact_id]
        for kind in TimerKind:
            if kind is not TimerKind.GRACE:
                self._timers.cancel(TimerKey(kind, t.id, conv.id))
        self._touch(call, t, "conversation", conv.id)
