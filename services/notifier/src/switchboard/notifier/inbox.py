"""The built-in agent inbox: the last dispatches of each (tenant, agent), in memory, with live subscribers.

:class:`InboxStore` is bounded twice: at most ``max_items`` items per agent (the oldest go)
and at most ``max_agents`` inboxes (the least recently written go). Each item carries a
store-wide sequence number, so a live subscriber that reconnects can ask for what came
after the last one it saw. The store is pure (the clock is injected); it does no I/O.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from switchboard.common.events import Dispatch, DispatchKind
from switchboard.notifier.render import clean_multiline, headline, one_line, truncate, wants_actions

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MAX_AGENT_ID = 256
PREVIEW_LIMIT = 1000

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class InboxTargetError(ValueError):
    """An ``inbox`` endpoint target that names no inbox of the dispatch's tenant."""


def parse_target(target: str, tenant_id: str) -> tuple[str, str]:
    """``tenant/agent`` (or a bare ``agent``, in the dispatch's tenant) as (tenant, agent)."""
    tenant, sep, agent = target.partition("/")
    if not sep:
        tenant, agent = tenant_id, target
    if tenant != tenant_id:
        raise InboxTargetError("the inbox target names another tenant than the dispatch")
    if not valid_agent(agent):
        raise InboxTargetError("the inbox target has no valid agent id")
    return tenant, agent


def valid_tenant(tenant: str) -> bool:
    return TENANT_ID.match(tenant) is not None


def valid_agent(agent: str) -> bool:
    return 0 < len(agent) <= MAX_AGENT_ID and agent.strip() == agent and "/" not in agent


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One dispatch as the inbox shows it."""

    seq: int
    dispatch_id: str
    kind: DispatchKind
    headline: str
    conversation_id: str
    channel: str
    customer_name: str | None
    subject: str | None
    preview: str
    queue_id: str | None
    priority: int
    sla_due_at: datetime | None
    offer_id: str | None
    offer_expires_at: datetime | None
    escalation: dict[str, Any] | None
    link: str | None
    received_at: datetime
    actions: tuple[str, ...]

    @classmethod
    def from_dispatch(cls, seq: int, dispatch: Dispatch, received_at: datetime) -> InboxItem:
        conv = dispatch.conversation
        accept, decline, resolve = wants_actions(dispatch)
        actions = tuple(
            name for name, wanted in (("accept", accept), ("decline", decline), ("resolve", resolve)) if wanted
        )
        esc = dispatch.escalation
        return cls(
            seq=seq,
            dispatch_id=dispatch.dispatch_id,
            kind=dispatch.kind,
            headline=headline(dispatch),
            conversation_id=conv.conversation_id,
            channel=conv.channel.value,
            customer_name=one_line(conv.customer_name, 120) if conv.customer_name else None,
            subject=one_line(conv.subject, 250) if conv.subject else None,
            preview=truncate(clean_multiline(conv.preview), PREVIEW_LIMIT),
            queue_id=one_line(conv.queue_id, 120) if conv.queue_id else None,
            priority=conv.priority,
            sla_due_at=conv.sla_due_at,
            offer_id=dispatch.offer_id,
            offer_expires_at=dispatch.offer_expires_at if dispatch.kind is DispatchKind.OFFER else None,
            escalation=(
                {
                    "policy": esc.policy,
                    "target": esc.target,
                    "step": esc.step,
                    "due_at": _iso(esc.due_at),
                    "breached": esc.breached,
                }
                if esc is not None
                else None
            ),
            link=conv.link,
            received_at=received_at,
            actions=actions,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "dispatch_id": self.dispatch_id,
            "kind": self.kind.value,
            "headline": self.headline,
            "conversation_id": self.conversation_id,
            "channel": self.channel,
            "customer_name": self.customer_name,
            "subject": self.subject,
            "preview": self.preview,
            "queue_id": self.queue_id,
            "priority": self.priority,
            "sla_due_at": _iso(self.sla_due_at),
            "offer_id": self.offer_id,
            "offer_expires_at": _iso(self.offer_expires_at),
            "escalation": self.escalation,
            "link": self.link,
            "received_at": _iso(self.received_at),
            "actions": list(self.actions),
        }


@dataclass(eq=False)
class Subscription:
    """A live reader of one inbox: new items arrive on ``queue``; ``None`` means it was closed."""

    key: tuple[str, str]
    queue: asyncio.Queue[InboxItem | None] = field(default_factory=asyncio.Queue)
    closed: bool = False


class TooManySubscribers(Exception):
    """An inbox already has its maximum of live readers."""


class InboxClosed(Exception):
    """The store is shutting down: no new live readers."""


class InboxStore:
    """The inboxes of this process."""

    def __init__(
        self,
        max_items: int = 200,
        max_agents: int = 10_000,
        *,
        clock: Clock = _utcnow,
        max_subscribers: int = 32,
        max_backlog: int = 256,
    ) -> None:
        if max_items < 1 or max_agents < 1:
            raise ValueError("an inbox store needs max_items >= 1 and max_agents >= 1")
        self._max_items = max_items
        self._max_agents = max_agents
        self._max_subscribers = max_subscribers
        self._max_backlog = max_backlog
        self._clock = clock
        self._inboxes: OrderedDict[tuple[str, str], deque[InboxItem]] = OrderedDict()
        self._subscribers: dict[tuple[str, str], set[Subscription]] = {}
        self._seq = 0
        self._closed = False

    def add(self, tenant: str, agent: str, dispatch: Dispatch) -> InboxItem:
        """Store ``dispatch`` in the agent's inbox and tell its live readers; idempotent by dispatch id."""
        key = (tenant, agent)
        items = self._inboxes.get(key)
        if items is None:
            items = self._inboxes[key] = deque(maxlen=self._max_items)
            while len(self._inboxes) > self._max_agents:
                self._inboxes.popitem(last=False)
        else:
            self._inboxes.move_to_end(key)
            for existing in items:
                if existing.dispatch_id == dispatch.dispatch_id:
                    return existing
        self._seq += 1
        item = InboxItem.from_dispatch(self._seq, dispatch, self._clock())
        items.append(item)
        for sub in list(self._subscribers.get(key, ())):
            if sub.queue.qsize() >= self._max_backlog:
                # A reader that does not keep up is dropped; its browser reconnects and catches up.
                self._close(sub)
            else:
                sub.queue.put_nowait(item)
        return item

    def items(self, tenant: str, agent: str, *, after: int = 0) -> list[InboxItem]:
        """The agent's items newest first (only those with ``seq > after``); empty for an unknown agent."""
        items = self._inboxes.get((tenant, agent), ())
        return [item for item in reversed(items) if item.seq > after]

    def subscribe(self, tenant: str, agent: str) -> Subscription:
        if self._closed:
            raise InboxClosed("the inbox is shutting down")
        key = (tenant, agent)
        subs = self._subscribers.setdefault(key, set())
        if len(subs) >= self._max_subscribers:
            raise TooManySubscribers(f"at most {self._max_subscribers} live readers per inbox")
        sub = Subscription(key)
        subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.key]
        sub.closed = True

    def subscribers(self, tenant: str, agent: str) -> int:
        return len(self._subscribers.get((tenant, agent), ()))

    def close(self) -> None:
        """End every live reader (at shutdown, so open event streams do not hold the server)."""
        self._closed = True
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                self._close(sub)

    def _close(self, sub: Subscription) -> None:
        self.unsubscribe(sub)
        sub.queue.put_nowait(None)

    def __len__(self) -> int:
        return len(self._inboxes)
