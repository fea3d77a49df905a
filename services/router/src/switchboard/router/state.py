"""In-memory routing state of one tenant: agents, conversations, contacts, and their indexes.

Entities are slotted classes (cheap to hold by the hundred thousand: a conversation keeps
its rarely set fields in one side object, its few-valued fields in one shared tuple, its
times as floats, a single message id bare; a contact its handle keys as 16 bytes); the
changelog form of each lives in :mod:`switchboard.router.snapshot`, unchanged by the compact
forms. The two indexes keep selection from scanning: :class:`AgentIndex` holds the agents
who can take work now, per (channel, skill), ordered by each strategy's key;
:class:`WaitingIndex` holds queued conversations per (queue, relaxation step, channel),
ordered by priority then age.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Generic, TypeVar, overload

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
    "HandleKey",
    "Signature",
    "SlaClock",
    "SlaClocks",
    "WaitingIndex",
    "handle_from_text",
    "handle_key",
    "handle_text",
]

PREVIEW_CHARS = 300
NO_IDS: frozenset[str] = frozenset()
"""The one shared empty frozenset (CPython allocates a new one per ``frozenset()`` call)."""
NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})
"""The one shared empty attribute map of a contact (an empty dict costs 64 bytes each)."""
RECENT_MESSAGE_IDS = 32
ZERO = timedelta(0)
T = TypeVar("T")


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


_EXACT_SECONDS = 2.0**33
"""Below this many seconds from the epoch (the year 2242) a float holds a time to the
microsecond: ``datetime.fromtimestamp(t.timestamp(), UTC) == t``."""
_last_time: list[float] = [0.0]
"""The float of the last time packed: an equal time packed next (a conversation opened,
queued and its clocks started at one instant) shares that object."""

_unpacked: list[Any] = [None, None]
"""The float last read by :func:`unpack_time` and the datetime made of it (held, so the
float cannot be freed and its identity reused)."""

Stamp = float | datetime | None
"""A time as a slot holds it: a float (POSIX seconds) for a UTC time of this era, else the
value itself."""


def pack_time(value: datetime | None) -> Stamp:
    """A time as a float of POSIX seconds (24 bytes, where a datetime is 48) when the float
    gives it back exactly: a UTC time of this era; anything else as it is."""
    if value is None or value.tzinfo is not UTC:
        return value
    if value is _unpacked[1]:
        return _unpacked[0]  # type: ignore[no-any-return]  # the float it was read from
    stamp = value.timestamp()
    if not -_EXACT_SECONDS < stamp < _EXACT_SECONDS:
        return value
    last = _last_time[0]
    if stamp == last:
        return last
    _last_time[0] = stamp
    return stamp


def unpack_time(stamp: Stamp) -> datetime | None:
    """The inverse of :func:`pack_time`. The time last read is kept with its float, so that
    the reads of one instant in a row (a conversation's times and its clocks) make one
    datetime, and packing that datetime again gives back the very float."""
    if stamp.__class__ is float:
        if stamp is _unpacked[0]:
            return _unpacked[1]  # type: ignore[no-any-return]
        value = datetime.fromtimestamp(stamp, UTC)
        _unpacked[0], _unpacked[1] = stamp, value
        return value
    return stamp  # type: ignore[return-value]  # None or a datetime


def stamp_seconds(stamp: Stamp) -> float:
    """A packed time as POSIX seconds, minus infinity for None (orders like the times)."""
    if stamp.__class__ is float:
        return stamp
    return stamp.timestamp() if stamp is not None else float("-inf")  # type: ignore[union-attr]


class _Time(Generic[T]):
    """A time field of a slotted class, held packed (:func:`pack_time`) in a private slot."""

    __slots__ = ("name", "slot")

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.slot = f"_{name}"

    @overload
    def __get__(self, obj: None, owner: type) -> _Time[T]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> T: ...
    def __get__(self, obj: object | None, owner: type) -> T | _Time[T]:
        if obj is None:
            return self
        stamp = getattr(obj, self.slot)
        if stamp.__class__ is float and stamp is _unpacked[0]:
            return _unpacked[1]  # type: ignore[no-any-return]  # unpack_time's fast path, inlined
        value: T = unpack_time(stamp)  # type: ignore[assignment]
        return value

    def __set__(self, obj: object, value: T) -> None:
        setattr(obj, self.slot, pack_time(value))  # type: ignore[arg-type]


class SlaClock:
    """Business time counted towards one SLA target; paused when ``running_since`` is None.

    Immutable (replaced with :meth:`Conversation.set_clock` on change), so that equal clocks
    of one conversation, started together, are one object. Its times are held packed
    (:func:`pack_time`)."""

    __slots__ = ("_running_since", "_started_at", "consumed")

    _started_at: Stamp
    _running_since: Stamp
    started_at = _Time[datetime]()
    running_since = _Time[datetime | None]()
    consumed: timedelta

    def __init__(self, started_at: datetime, consumed: timedelta = ZERO, running_since: datetime | None = None) -> None:
        object.__setattr__(self, "_started_at", pack_time(started_at))
        object.__setattr__(self, "consumed", consumed)
        object.__setattr__(self, "_running_since", pack_time(running_since))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"SlaClock is immutable: cannot set {name!r}")

    def _fields(self) -> tuple[datetime, timedelta, datetime | None]:
        return (self.started_at, self.consumed, self.running_since)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not SlaClock:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        started, consumed, running = self._fields()
        return f"SlaClock(started_at={started!r}, consumed={consumed!r}, running_since={running!r})"


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


_CONVERSATION_FIELDS = (
    "id",
    "channel",
    "provider",
    "contact_id",
    "opened_at",
    "thread_key",
    "queue_id",
    "route_rule",
    "status",
    "priority",
    "enqueued_at",
    "step",
    "agent_id",
    "offer_id",
    "offer_expires_at",
    "assigned_at",
    "declined_by",
    "last_agent_id",
    "agent_replied",
    "subject",
    "preview",
    "language",
    "inbox",
    "customer_name",
    "message_ids",
    "sequence",
    "sla_policy",
    "clocks",
    "fired",
    "breaches",
    "resolved_at",
)
"""Every field of a :class:`Conversation`, in order (its constructor's keywords, its repr and equality)."""


class _Rare:
    """The fields of a conversation that most conversations never set: an offer, declines,
    fired escalation steps, breaches, the resolution time. Held in one object, made on the
    first set, so the common conversation has one slot for them instead of six."""

    __slots__ = ("breaches", "declined_by", "fired", "offer_expires_at", "offer_id", "resolved_at")

    def __init__(self) -> None:
        self.offer_id: str | None = None
        self.offer_expires_at: datetime | None = None
        self.declined_by: frozenset[str] = NO_IDS
        self.fired: frozenset[str] = NO_IDS
        self.breaches: tuple[str, ...] = ()
        self.resolved_at: datetime | None = None


_NO_RARE = _Rare()
"""What a conversation without any rare field reads them from (never written)."""


class _RareField(Generic[T]):
    """A field of :class:`Conversation` kept in its :class:`_Rare` side object; setting it
    to its default leaves a conversation without one as it is."""

    __slots__ = ("name",)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, conv: None, owner: type) -> _RareField[T]: ...
    @overload
    def __get__(self, conv: Conversation, owner: type) -> T: ...
    def __get__(self, conv: Conversation | None, owner: type) -> T | _RareField[T]:
        if conv is None:
            return self
        value: T = getattr(conv._rare, self.name)
        return value

    def __set__(self, conv: Conversation, value: T) -> None:
        rare = conv._rare
        if rare is _NO_RARE:
            if value == getattr(_NO_RARE, self.name):
                return  # still the default: no side object needed
            rare = conv._rare = _Rare()
        setattr(rare, self.name, value)


_SHAPE_FIELDS = (
    "channel",
    "provider",
    "queue_id",
    "route_rule",
    "status",
    "priority",
    "step",
    "agent_replied",
    "sla_policy",
    "language",
    "tallied",
)
"""The fields of a :class:`Conversation` held in its shape: each takes one of a few values
(enums, and names and numbers from the rules), so their combinations are bounded by the
rules and the channels, not by the number of conversations."""

_Shape = tuple[Any, ...]
"""A conversation's shape: the values of :data:`_SHAPE_FIELDS`, in order."""

_SHAPE_LIMIT = 1 << 16
"""Distinct shapes kept for sharing; past it the table starts over (a shape is a value, so
conversations holding a dropped one stay correct; they only stop sharing it)."""


_shapes: dict[_Shape, _Shape] = {}
"""The shared shapes, each its own key: one tuple object per distinct combination, as
:func:`sys.intern` keeps one string. A shape is an immutable value, so sharing one across
tenants and engines is safe."""


def _shared_shape(shape: _Shape) -> _Shape:
    found = _shapes.get(shape)
    if found is None:
        if len(_shapes) >= _SHAPE_LIMIT:
            _shapes.clear()
        found = _shapes[shape] = shape
    return found


class _ShapeField(Generic[T]):
    """A field of :class:`Conversation` held in its shared shape tuple (one slot for eleven
    fields, 80 bytes less per conversation); setting it moves the conversation to the shape
    with the new value.

    ``kind`` (for enums, numbers and flags) turns an equal value of another type into the
    field's own (a plain ``"queued"`` into :class:`ConversationStatus`), so that equal
    shapes hold values of one type: a shared shape never hands back a look-alike.
    """

    __slots__ = ("index", "kind")

    def __init__(self, kind: Callable[[Any], T] | None = None) -> None:
        self.kind = kind

    def __set_name__(self, owner: type, name: str) -> None:
        self.index = _SHAPE_FIELDS.index(name)

    @overload
    def __get__(self, conv: None, owner: type) -> _ShapeField[T]: ...
    @overload
    def __get__(self, conv: Conversation, owner: type) -> T: ...
    def __get__(self, conv: Conversation | None, owner: type) -> T | _ShapeField[T]:
        if conv is None:
            return self
        value: T = conv._shape[self.index]
        return value

    def __set__(self, conv: Conversation, value: T) -> None:
        kind = self.kind
        if kind is not None and value.__class__ is not kind:
            value = kind(value)
        shape = conv._shape
        index = self.index
        held = shape[index]
        if held is value or (held.__class__ is value.__class__ and held == value):
            return
        conv._shape = _shared_shape((*shape[:index], value, *shape[index + 1 :]))


class Conversation:
    """One conversation.

    Memory matters here (a tenant holds a hundred thousand of them), so the object is
    slotted and small: ``declined_by`` and ``fired`` are frozen sets, ``message_ids`` and
    ``breaches`` tuples, and ``clocks`` a read-only mapping, each replaced on change rather
    than changed in place, so that the common empty ones are one shared object instead of
    an empty container per conversation. The rarely set fields (offer, declines, fired
    steps, breaches, resolution time) live in one side object made on their first set, and
    a single message id is held as the string itself (a one-element tuple costs 48 bytes).
    The eleven fields that take one of a few values (channel, status, queue, rule, priority,
    step and the like: :data:`_SHAPE_FIELDS`) are one shared tuple, the conversation's shape,
    and an ASCII preview is held as bytes. Change the clocks with :meth:`set_clock`,
    :meth:`drop_clock` and :meth:`clear_clocks`.
    """

    __slots__ = (
        "_assigned_at",
        "_enqueued_at",
        "_messages",
        "_opened_at",
        "_preview",
        "_rare",
        "_shape",
        "agent_id",
        "clocks",
        "contact_id",
        "customer_name",
        "id",
        "inbox",
        "last_agent_id",
        "sequence",
        "subject",
        "thread_key",
    )

    _opened_at: Stamp  # the packed times behind the three fields below
    _enqueued_at: Stamp
    _assigned_at: Stamp
    _messages: str | tuple[str, ...]  # behind message_ids: one id bare, several as a tuple
    _rare: _Rare  # behind the rarely set fields; the shared empty one until one is set
    _shape: _Shape  # behind the shape fields below: one shared tuple per distinct combination
    _preview: str | bytes  # behind preview: ASCII text as bytes (16 bytes less), other text as it is
    channel = _ShapeField[Channel](Channel)
    provider = _ShapeField[str]()
    queue_id = _ShapeField[str | None]()
    route_rule = _ShapeField[str | None]()
    status = _ShapeField[ConversationStatus](ConversationStatus)
    priority = _ShapeField[int](int)
    step = _ShapeField[int](int)
    agent_replied = _ShapeField[bool](bool)
    sla_policy = _ShapeField[str | None]()
    language = _ShapeField[str | None]()
    tallied = _ShapeField[tuple[str | None, ConversationStatus] | None]()
    """The (queue, status) the tenant's tally counts this conversation under (kept by the
    engine; not part of the conversation's value)."""
    opened_at = _Time[datetime]()
    enqueued_at = _Time[datetime | None]()
    assigned_at = _Time[datetime | None]()
    offer_id = _RareField[str | None]()
    offer_expires_at = _RareField[datetime | None]()
    declined_by = _RareField[frozenset[str]]()
    fired = _RareField[frozenset[str]]()
    breaches = _RareField[tuple[str, ...]]()
    resolved_at = _RareField[datetime | None]()

    def __init__(
        self,
        id: str,
        channel: Channel,
        provider: str,
        contact_id: str,
        opened_at: datetime,
        thread_key: str | None = None,
        queue_id: str | None = None,
        route_rule: str | None = None,
        status: ConversationStatus = ConversationStatus.QUEUED,
        priority: int = 0,
        enqueued_at: datetime | None = None,
        step: int = 0,
        agent_id: str | None = None,
        offer_id: str | None = None,
        offer_expires_at: datetime | None = None,
        assigned_at: datetime | None = None,
        declined_by: frozenset[str] = NO_IDS,
        last_agent_id: str | None = None,
        agent_replied: bool = False,
        subject: str | None = None,
        preview: str = "",
        language: str | None = None,
        inbox: str | None = None,
        customer_name: str | None = None,
        message_ids: tuple[str, ...] = (),
        sequence: int = 0,
        sla_policy: str | None = None,
        clocks: Mapping[SlaTarget, SlaClock] = NO_CLOCKS,
        fired: frozenset[str] = NO_IDS,
        breaches: tuple[str, ...] = (),
        resolved_at: datetime | None = None,
    ) -> None:
        self.id = id
        self._shape = _shared_shape(
            (
                channel if channel.__class__ is Channel else Channel(channel),
                provider,
                queue_id,
                route_rule,
                status if status.__class__ is ConversationStatus else ConversationStatus(status),
                priority if priority.__class__ is int else int(priority),
                step if step.__class__ is int else int(step),
                agent_replied if agent_replied.__class__ is bool else bool(agent_replied),
                sla_policy,
                language,
                None,  # tallied
            )
        )
        self.contact_id = contact_id
        self.opened_at = opened_at
        self.thread_key = thread_key
        self.enqueued_at = enqueued_at
        self.agent_id = agent_id
        self.assigned_at = assigned_at
        self.last_agent_id = last_agent_id
        self.subject = subject
        self.preview = preview
        self.inbox = inbox
        self.customer_name = customer_name
        self.message_ids = message_ids
        self.sequence = sequence
        self.clocks = clocks
        self._rare = _NO_RARE
        if offer_id is not None or offer_expires_at is not None or resolved_at is not None:
            self.offer_id = offer_id
            self.offer_expires_at = offer_expires_at
            self.resolved_at = resolved_at
        if declined_by or fired or breaches:
            self.declined_by = declined_by
            self.fired = fired
            self.breaches = breaches

    @property
    def opened_ts(self) -> float:
        """``opened_at`` as POSIX seconds, read without making a datetime (for ordering)."""
        stamp = self._opened_at
        return stamp if stamp.__class__ is float else stamp_seconds(stamp)

    @property
    def enqueued_ts(self) -> float:
        """``enqueued_at`` as POSIX seconds (minus infinity for None), without making a datetime."""
        return stamp_seconds(self._enqueued_at)

    @property
    def preview(self) -> str:
        """The start of the first message (at most :data:`PREVIEW_CHARS` characters)."""
        held = self._preview
        return held if isinstance(held, str) else held.decode("ascii")

    @preview.setter
    def preview(self, value: str) -> None:
        self._preview = value.encode("ascii") if value.isascii() else value

    @property
    def message_ids(self) -> tuple[str, ...]:
        """The most recent message ids, oldest first."""
        held = self._messages
        return (held,) if isinstance(held, str) else held

    @message_ids.setter
    def message_ids(self, value: tuple[str, ...]) -> None:
        self._messages = value[0] if len(value) == 1 else tuple(value)

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _CONVERSATION_FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return f"Conversation({', '.join(f'{name}={getattr(self, name)!r}' for name in _CONVERSATION_FIELDS)})"

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


HandleKey = str | bytes
"""A contact handle's key: 16 bytes from :func:`handle_key` (49 bytes as an object, where its
32-character hex form costs 81), or a string restored from a record that is no such key."""

_CONTACT_FIELDS = ("id", "handles", "display_name", "attributes", "last_agent_id", "last_agent_at")


class Contact:
    """A customer across channels.

    ``handles`` (keyed hashes) is a tuple, replaced on change: a contact has one or two, and
    even a one-element set costs 216 bytes; a single handle is held as the key itself (a
    one-element tuple costs 48 bytes more).
    """

    __slots__ = ("_handles", "_last_agent_at", "attributes", "display_name", "id", "last_agent_id")

    _handles: HandleKey | tuple[HandleKey, ...]  # behind handles: one key bare, several as a tuple
    _last_agent_at: Stamp
    last_agent_at = _Time[datetime | None]()

    def __init__(
        self,
        id: str,
        handles: tuple[HandleKey, ...] = (),
        display_name: str | None = None,
        attributes: Mapping[str, Any] = NO_ATTRIBUTES,  # replaced on change, never changed
        last_agent_id: str | None = None,
        last_agent_at: datetime | None = None,
    ) -> None:
        self.id = id
        self.handles = handles
        self.display_name = display_name
        self.attributes = attributes
        self.last_agent_id = last_agent_id
        self.last_agent_at = last_agent_at

    @property
    def handles(self) -> tuple[HandleKey, ...]:
        held = self._handles
        return held if isinstance(held, tuple) else (held,)

    @handles.setter
    def handles(self, value: tuple[HandleKey, ...]) -> None:
        self._handles = value[0] if len(value) == 1 else tuple(value)

    def share_last_agent_at(self, conv: Conversation) -> None:
        """Hold ``last_agent_at`` as the very object ``conv`` holds for its assignment time
        when the two are equal (one float, not two)."""
        if self.last_agent_at is not None and self.last_agent_at == conv.assigned_at:
            self._last_agent_at = conv._assigned_at

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _CONTACT_FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return f"Contact({', '.join(f'{name}={getattr(self, name)!r}' for name in _CONTACT_FIELDS)})"


def handle_key(kind: str, value: str) -> bytes:
    """A stable, non-reversible key for a contact handle (state never holds addresses in clear):
    16 bytes of a hash, written to the changelog as 32 hex characters."""
    kind = kind.strip().lower()
    normalised = value.strip().lower() if kind == "email" else value.strip()
    if kind == "phone":
        normalised = "".join(ch for ch in normalised if ch.isdigit() or ch == "+")
    return hashlib.sha256(f"{kind}\x00{normalised}".encode()).digest()[:16]


def handle_text(key: HandleKey) -> str:
    """A handle key as the changelog holds it: 32 hex characters (or the string as it was)."""
    return key.hex() if isinstance(key, bytes) else key


def handle_from_text(text: str) -> HandleKey:
    """The inverse of :func:`handle_text`: 32 lowercase hex characters are a key's bytes."""
    if len(text) == 32 and text == text.lower():
        try:
            return bytes.fromhex(text)
        except ValueError:
            return text
    return text


class ContactDirectory:
    """Contacts of one tenant, found by any of their handles."""

    def __init__(self) -> None:
        self.contacts: dict[str, Contact] = {}
        self._by_handle: dict[HandleKey, str] = {}

    def get(self, contact_id: str) -> Contact | None:
        return self.contacts.get(contact_id)

    def find(self, keys: Iterable[HandleKey]) -> list[Contact]:
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

    def attach(self, contact: Contact, keys: Iterable[HandleKey]) -> None:
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
BucketKey = tuple[Channel, Signature, Strategy]


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
        self._buckets: dict[BucketKey, SortedList] = {}
        self._entries: dict[str, list[tuple[BucketKey, tuple[Any, ...]]]] = {}
        self._wants: list[tuple[frozenset[str], Signature, Strategy, str, dict[Channel, BucketKey]]] = []
        """Per needed (strategy, signature), in ``needs`` order: the skill names it asks for,
        the signature, the strategy, the skill it ranks by ("" unless highest proficiency),
        and its bucket key per channel (one shared key object each, made on first use)."""
        for strategy, signatures in self.needs.items():
            for signature in signatures:
                ranked_by = signature[0] if strategy is Strategy.HIGHEST_PROFICIENCY else ""
                self._wants.append((frozenset(signature[1]), signature, strategy, ranked_by, {}))

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
        wanted: list[tuple[BucketKey, tuple[Any, ...]]] = []
        if agent.takes_work():
            names = agent.skills.keys()
            matched = [want for want in self._wants if names >= want[0]]
            for channel in agent.capacity:
                if not agent.has_room(channel):
                    continue
                sort_keys: dict[tuple[Strategy, str], tuple[Any, ...]] = {}
                for _, signature, strategy, ranked_by, keys in matched:
                    bucket_key = keys.get(channel)
                    if bucket_key is None:
                        bucket_key = keys[channel] = (channel, signature, strategy)
                    sort_key = sort_keys.get((strategy, ranked_by))
                    if sort_key is None:
                        sort_key = sort_keys[(strategy, ranked_by)] = strategy_key(strategy, agent, channel, ranked_by)
                    wanted.append((bucket_key, sort_key))
        if len(old) == len(wanted) and all(was[0] is now[0] for was, now in zip(old, wanted, strict=True)):
            # the same buckets as before (an assignment, a release): re-key entry by entry
            for index, (was, now) in enumerate(zip(old, wanted, strict=True)):
                if was[1] == now[1]:
                    wanted[index] = was
                else:
                    bucket = self._buckets[was[0]]
                    bucket.remove(was[1])
                    bucket.add(now[1])
            if wanted:
                self._entries[agent.id] = wanted
            return
        filed = {entry: entry for entry in old}
        kept: set[tuple[BucketKey, tuple[Any, ...]]] = set()
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
        entry = (-conv.priority, conv.enqueued_ts, conv.id)
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
