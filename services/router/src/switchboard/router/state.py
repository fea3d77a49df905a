"""In-memory routing state of one tenant: agents, conversations, contacts, and their indexes.

Entities are plain slotted dataclasses (cheap to hold by the hundred thousand); the
changelog form of each lives in :mod:`switchboard.router.snapshot`. The two indexes keep
selection from scanning: :class:`AgentIndex` holds the agents who can take work now,
per (channel, skill), ordered by each strategy's key; :class:`WaitingIndex` holds queued
conversations per (queue, relaxation step, channel), ordered by priority then age.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from switchboard.common.events import Channel, DeliveryEndpoint, Presence
from switchboard.router.rules import SlaTarget, Strategy

__all__ = [
    "NO_ATTRIBUTES",
    "NO_CLOCKS",
    "Agent",
    "AgentIndex",
    "Contact",
    "ContactDirectory",
    "Conversation",
    "ConversationStatus",
    "Signature",
    "SlaClock",
    "SlaClocks",
    "WaitingIndex",
    "handle_key",
]

PREVIEW_CHARS = 300
NO_IDS: frozenset[str] = frozenset()
"""The one shared empty frozenset (CPython allocates a new one per ``frozenset()`` call)."""
NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})
"""The one shared empty attribute map of a contact (an empty dict costs 64 bytes each)."""
RECENT_MESSAGE_IDS = 32
ZERO = timedelta(0)


class ConversationStatus(enum.StrEnum):
    QUEUED = "queued"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    WAITING_FOR_CUSTOMER = "waiting_for_customer"
    RESOLVED = "resolved"


HOLDING = frozenset({ConversationStatus.OFFERED, ConversationStatus.ASSIGNED, ConversationStatus.WAITING_FOR_CUSTOMER})
"""Statuses in which the conversation counts towards its agent's load."""


@dataclass(slots=True)
class Agent:
    id: str
    skills: dict[str, int] = field(default_factory=dict)
    capacity: dict[Channel, int] = field(default_factory=dict)
    load: dict[Channel, int] = field(default_factory=dict)
    presence: Presence = Presence.OFFLINE
    idle_since: datetime | None = None
    offline_since: datetime | None = None
    display_name: str | None = None
    endpoints: tuple[DeliveryEndpoint, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)

    def has_room(self, channel: Channel) -> bool:
        return self.capacity.get(channel, 0) > self.load.get(channel, 0)

    def takes_work(self) -> bool:
        """Available and reachable (an agent with no delivery endpoint cannot be told of work)."""
        return self.presence is Presence.AVAILABLE and bool(self.endpoints)

    def cel_view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "skills": dict(self.skills),
            "attributes": self.attributes,
            "presence": self.presence.value,
            "load": {c.value: n for c, n in self.load.items()},
            "capacity": {c.value: n for c, n in self.capacity.items()},
        }


@dataclass(slots=True, frozen=True)
class SlaClock:
    """Business time counted towards one SLA target; paused when ``running_since`` is None.

    Immutable (replaced with :meth:`Conversation.set_clock` on change), so that equal clocks
    of one conversation, started together, are one object."""

    started_at: datetime
    consumed: timedelta = ZERO
    running_since: datetime | None = None


_CLOCK_SLOTS = {target: f"_{target.value}" for target in SlaTarget}


class SlaClocks(Mapping[SlaTarget, SlaClock]):
    """A conversation's SLA clocks, read-only: one slot per :class:`SlaTarget` (56 bytes in
    all, where a dict of two clocks costs 224), iterated in the order of the targets.

    Replace it on change (:meth:`with_clock`, :meth:`without`) rather than changing it.
    """

    __slots__ = tuple(_CLOCK_SLOTS.values())

    def __init__(self, clocks: Mapping[SlaTarget, SlaClock] | None = None) -> None:
        for target, name in _CLOCK_SLOTS.items():
            setattr(self, name, None if clocks is None else clocks.get(target))

    def _held(self, target: object) -> SlaClock | None:
        """The clock of ``target``, None when it has none (or is no target at all)."""
        name = _CLOCK_SLOTS.get(target)  # type: ignore[call-overload]  # any key may be asked for
        clock: SlaClock | None = getattr(self, name) if name is not None else None
        return clock

    def __getitem__(self, target: SlaTarget) -> SlaClock:
        clock = self._held(target)
        if clock is None:
            raise KeyError(target)
        return clock

    def get(self, target: SlaTarget, default: Any = None) -> Any:
        clock = self._held(target)
        return default if clock is None else clock

    def __contains__(self, target: object) -> bool:
        return self._held(target) is not None

    def __iter__(self) -> Iterator[SlaTarget]:
        return (target for target, name in _CLOCK_SLOTS.items() if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(getattr(self, name) is not None for name in _CLOCK_SLOTS.values())

    def __repr__(self) -> str:
        return f"SlaClocks({dict(self.items())!r})"

    def with_clock(self, target: SlaTarget, clock: SlaClock) -> SlaClocks:
        """These clocks with ``target``'s set; a clock equal to one already held is that one."""
        for held in self.values():
            if held == clock:
                clock = held
                break
        out = SlaClocks(self)
        setattr(out, _CLOCK_SLOTS[target], clock)
        return out

    def without(self, target: SlaTarget) -> SlaClocks:
        """These clocks but ``target``'s; :data:`NO_CLOCKS` when none is left."""
        if target not in self:
            return self
        out = SlaClocks(self)
        setattr(out, _CLOCK_SLOTS[target], None)
        return out if out else NO_CLOCKS


NO_CLOCKS = SlaClocks()
"""The one shared empty clock map (a conversation without SLA clocks holds no map of its own)."""


@dataclass(slots=True)
class Conversation:
    """One conversation.

    Memory matters here (a tenant holds a hundred thousand of them): ``declined_by`` and
    ``fired`` are frozen sets, ``message_ids`` and ``breaches`` tuples, and ``clocks`` a
    read-only mapping, each replaced on change rather than changed in place, so that the
    common empty ones are one shared object instead of an empty container per conversation.
    Change the clocks with :meth:`set_clock`, :meth:`drop_clock` and :meth:`clear_clocks`.
    """

    id: str
    channel: Channel
    provider: str
    contact_id: str
    opened_at: datetime
    thread_key: str | None = None
    queue_id: str | None = None
    route_rule: str | None = None
    status: ConversationStatus = ConversationStatus.QUEUED
    priority: int = 0
    enqueued_at: datetime | None = None
    step: int = 0
    agent_id: str | None = None
    offer_id: str | None = None
    offer_expires_at: datetime | None = None
    assigned_at: datetime | None = None
    declined_by: frozenset[str] = NO_IDS
    last_agent_id: str | None = None
    agent_replied: bool = False
    subject: str | None = None
    preview: str = ""
    language: str | None = None
    inbox: str | None = None
    customer_name: str | None = None
    message_ids: tuple[str, ...] = ()
    sequence: int = 0
    sla_policy: str | None = None
    clocks: Mapping[SlaTarget, SlaClock] = field(default_factory=lambda: NO_CLOCKS)  # shared, never copied
    fired: frozenset[str] = NO_IDS
    breaches: tuple[str, ...] = ()
    resolved_at: datetime | None = None

    def remember_message(self, message_id: str) -> None:
        """Keep the id among the :data:`RECENT_MESSAGE_IDS` most recent ones."""
        self.message_ids = (*self.message_ids, message_id)[-RECENT_MESSAGE_IDS:]

    def set_clock(self, target: SlaTarget, clock: SlaClock) -> None:
        clocks = self.clocks
        self.clocks = (clocks if isinstance(clocks, SlaClocks) else SlaClocks(clocks)).with_clock(target, clock)

    def drop_clock(self, target: SlaTarget) -> None:
        clocks = self.clocks
        self.clocks = (clocks if isinstance(clocks, SlaClocks) else SlaClocks(clocks)).without(target)

    def clear_clocks(self) -> None:
        self.clocks = NO_CLOCKS

    def add_breach(self, target: str) -> None:
        self.breaches = (*self.breaches, target)

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


@dataclass(slots=True)
class Contact:
    """A customer across channels; ``handles`` (keyed hashes) is a tuple, replaced on change: a
    contact has one or two, and even a one-element set costs 216 bytes."""

    id: str
    handles: tuple[str, ...] = ()
    display_name: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=lambda: NO_ATTRIBUTES)  # replaced on change, never changed
    last_agent_id: str | None = None
    last_agent_at: datetime | None = None


def handle_key(kind: str, value: str) -> str:
    """A stable, non-reversible key for a contact handle (state never holds addresses in clear)."""
    kind = kind.strip().lower()
    normalised = value.strip().lower() if kind == "email" else value.strip()
    if kind == "phone":
        normalised = "".join(ch for ch in normalised if ch.isdigit() or ch == "+")
    return hashlib.sha256(f"{kind}\x00{normalised}".encode()).hexdigest()[:32]


class ContactDirectory:
    """Contacts of one tenant, found by any of their handles."""

    def __init__(self) -> None:
        self.contacts: dict[str, Contact] = {}
        self._by_handle: dict[str, str] = {}

    def get(self, contact_id: str) -> Contact | None:
        return self.contacts.get(contact_id)

    def find(self, keys: Iterable[str]) -> list[Contact]:
        found: dict[str, Contact] = {}
        for key in keys:
            contact_id = self._by_handle.get(key)
            if contact_id is not None:
                found[contact_id] = self.contacts[contact_id]
        return list(found.values())

    def add(self, contact: Contact) -> None:
        """File a contact; one that replaces an earlier version of itself drops that version's handles."""
        earlier = self.contacts.get(contact.id)
        if earlier is not None:
            for key in earlier.handles:
                if self._by_handle.get(key) == contact.id:
                    del self._by_handle[key]
        self.contacts[contact.id] = contact
        for key in contact.handles:
            self._by_handle[key] = contact.id

    def attach(self, contact: Contact, keys: Iterable[str]) -> None:
        for key in keys:
            if key not in contact.handles:
                contact.handles = (*contact.handles, key)
            self._by_handle[key] = contact.id

    def merge(self, keep: Contact, gone: Contact) -> None:
        """Fold ``gone`` into ``keep``: handles, attributes and the most recent last agent."""
        self.attach(keep, gone.handles)
        keep.attributes = {**gone.attributes, **keep.attributes}
        keep.display_name = keep.display_name or gone.display_name
        if gone.last_agent_at is not None and (keep.last_agent_at is None or gone.last_agent_at > keep.last_agent_at):
            keep.last_agent_id, keep.last_agent_at = gone.last_agent_id, gone.last_agent_at
        del self.contacts[gone.id]


# --------------------------------------------------------------------------- agent index


def _ts(value: datetime | None) -> float:
    return value.timestamp() if value is not None else float("-inf")


def strategy_key(strategy: Strategy, agent: Agent, channel: Channel, skill: str) -> tuple[Any, ...]:
    """The ordering key of an agent in a bucket: smaller is better, ties broken by agent id."""
    load = agent.load.get(channel, 0)
    idle = _ts(agent.idle_since)
    if strategy is Strategy.LEAST_LOADED:
        return (load, idle, agent.id)
    if strategy is Strategy.LONGEST_IDLE:
        return (idle, agent.id)
    return (-agent.skills.get(skill, 0), load, idle, agent.id)


Signature = tuple[str, tuple[str, ...]]
"""A bucket's skills: (primary skill or "", every required skill name, sorted)."""


class AgentIndex:
    """Agents who can take work now, per (channel, skill signature, strategy), in strategy order.

    ``needs`` names, per strategy, the skill signatures selection walks: one per requirement
    alternative of the queues that use the strategy. An agent is filed under a signature when
    they have every skill it names (at any level), so a walk only has to check levels,
    declines and the agent filter. Keeping only those buckets makes re-filing an agent after
    a change touch few sorted lists, and only the entries whose key changed.
    """

    def __init__(self, needs: dict[Strategy, set[Signature]]) -> None:
        self.needs = {strategy: tuple(sorted(sigs)) for strategy, sigs in needs.items() if sigs}
        self._buckets: dict[tuple[Channel, Signature, Strategy], SortedList] = {}
        self._entries: dict[str, list[tuple[tuple[Channel, Signature, Strategy], tuple[Any, ...]]]] = {}
        self._bucket_keys: dict[tuple[Channel, Signature, Strategy], tuple[Channel, Signature, Strategy]] = {}

    def bucket(self, channel: Channel, signature: Signature, strategy: Strategy) -> SortedList | None:
        return self._buckets.get((channel, signature, strategy))

    def discard(self, agent_id: str) -> None:
        for bucket_key, sort_key in self._entries.pop(agent_id, ()):
            self._buckets[bucket_key].remove(sort_key)

    def update(self, agent: Agent) -> None:
        """Re-file an agent after any change to presence, load, skills, capacity or idle time.

        Entries are shared where equal, since an agent is filed in many buckets: one bucket
        key tuple per bucket for all agents, one sort key per (channel, strategy) unless the
        strategy ranks by the bucket's primary skill, and an unchanged entry keeps the very
        objects already filed.
        """
        old = self._entries.pop(agent.id, [])
        wanted: list[tuple[tuple[Channel, Signature, Strategy], tuple[Any, ...]]] = []
        if agent.takes_work():
            skills = agent.skills
            for channel in agent.capacity:
                if not agent.has_room(channel):
                    continue
                sort_keys: dict[tuple[Strategy, str], tuple[Any, ...]] = {}
                for strategy, signatures in self.needs.items():
                    for signature in signatures:
                        if all(name in skills for name in signature[1]):
                            ranked_by = signature[0] if strategy is Strategy.HIGHEST_PROFICIENCY else ""
                            sort_key = sort_keys.get((strategy, ranked_by))
                            if sort_key is None:
                                sort_key = strategy_key(strategy, agent, channel, signature[0])
                                sort_keys[(strategy, ranked_by)] = sort_key
                            bucket_key = (channel, signature, strategy)
                            wanted.append((self._bucket_keys.setdefault(bucket_key, bucket_key), sort_key))
        filed = {entry: entry for entry in old}
        kept: set[tuple[tuple[Channel, Signature, Strategy], tuple[Any, ...]]] = set()
        for index, entry in enumerate(wanted):
            same = filed.get(entry)
            if same is not None:
                wanted[index] = same  # the objects already in the bucket, not an equal copy
                kept.add(same)
                continue
            bucket = self._buckets.get(entry[0])
            if bucket is None:
                bucket = self._buckets[entry[0]] = SortedList()
            bucket.add(entry[1])
        for bucket_key, sort_key in old:
            if (bucket_key, sort_key) not in kept:
                self._buckets[bucket_key].remove(sort_key)
        if wanted:
            self._entries[agent.id] = wanted

    def __contains__(self, agent_id: str) -> bool:
        return agent_id in self._entries


# --------------------------------------------------------------------------- waiting conversations


class WaitingIndex:
    """Queued conversations per (queue, step, channel), served by priority (high first), then age."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, int, Channel], SortedList] = {}
        self._where: dict[str, tuple[tuple[str, int, Channel], tuple[int, float, str]]] = {}

    def add(self, conv: Conversation) -> None:
        self.discard(conv.id)
        if conv.queue_id is None:
            return
        group = (conv.queue_id, conv.step, conv.channel)
        entry = (-conv.priority, _ts(conv.enqueued_at), conv.id)
        bucket = self._groups.get(group)
        if bucket is None:
            bucket = self._groups[group] = SortedList()
        bucket.add(entry)
        self._where[conv.id] = (group, entry)

    def discard(self, conversation_id: str) -> None:
        found = self._where.pop(conversation_id, None)
        if found is not None:
            group, entry = found
            bucket = self._groups[group]
            bucket.remove(entry)
            if not bucket:
                del self._groups[group]

    def __contains__(self, conversation_id: str) -> bool:
        return conversation_id in self._where

    def __len__(self) -> int:
        return len(self._where)

    def groups(self, channel: Channel | None = None) -> Iterator[tuple[tuple[str, int, Channel], SortedList]]:
        for group, bucket in self._groups.items():
            if channel is None or group[2] is channel:
                yield group, bucket

    def in_queue(self, queue_id: str) -> Iterator[str]:
        """Conversation ids waiting in a queue, in service order across steps and channels, lazily.

        Each (step, channel) group is already ordered, so this is a k-way merge of the
        queue's groups: the first ``n`` ids cost O(groups + n log groups), not a sort of
        everything waiting. Do not change the index while iterating.
        """
        buckets = [bucket for (q, _, _), bucket in self._groups.items() if q == queue_id]
        for _, _, conversation_id in heapq.merge(*buckets):
            yield conversation_id

    def summary(self) -> dict[str, tuple[int, str | None]]:
        """Per queue: how many conversations wait, and the id of the one queued longest ago.

        Each group is ordered by priority, then age, so the oldest entry of a group is the
        first of one of its priority levels: the walk jumps from level to level (a few
        bisections per group) instead of visiting every waiting conversation.
        """
        out: dict[str, tuple[int, str | None]] = {}
        oldest: dict[str, tuple[float, str]] = {}
        for (queue_id, _, _), bucket in self._groups.items():
            depth, _ = out.get(queue_id, (0, None))
            out[queue_id] = (depth + len(bucket), None)
            index, size = 0, len(bucket)
            while index < size:
                neg_priority, enqueued, conversation_id = bucket[index]
                best = oldest.get(queue_id)
                if best is None or (enqueued, conversation_id) < best:
                    oldest[queue_id] = (enqueued, conversation_id)
                index = bucket.bisect_left((neg_priority, math.inf))
        return {queue_id: (depth, oldest[queue_id][1]) for queue_id, (depth, _) in out.items()}

    def all_ids(self) -> list[str]:
        return [conversation_id for _, _, conversation_id in sorted(e for _, e in self._where.values())]
