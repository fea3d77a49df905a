"""Read views of the routing state for the HTTP API and the operator dashboard.

They are small frozen values built on demand by
:meth:`~switchboard.router.engine.RouterEngine.queue_stats` and
:meth:`~switchboard.router.engine.RouterEngine.sla_status`; nothing here changes state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["QueueStats", "SlaStatus"]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue of a tenant right now.

    ``depth`` counts the conversations waiting for an agent, ``oldest_enqueued_at`` is when
    the longest-waiting of them was queued (None when none waits), ``offered`` counts open
    offers and ``assigned`` the conversations an agent holds (assigned or waiting for the
    customer).
    """

    queue_id: str
    depth: int
    oldest_enqueued_at: datetime | None
    offered: int
    assigned: int


@dataclass(frozen=True, slots=True)
class SlaStatus:
    """One SLA clock of a conversation.

    ``due_at`` is when the target is missed if the clock keeps running (None while paused,
    or when the policy sets no goal for the target); ``breached`` tells whether the target
    was already missed.
    """

    target: str
    policy: str
    due_at: datetime | None
    breached: bool
    paused: bool
