"""Test helpers for the router domain: a fake clock and small event builders (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from switchboard.common.events import (
    AgentUpserted,
    Channel,
    ContactHandle,
    ContactIdentity,
    DeliveryEndpoint,
    EndpointKind,
    InboundMessage,
    Presence,
    new_id,
)

__all__ = ["FakeClock", "agent_event", "inbound"]


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start if start is not None else datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 0, **kwargs: float) -> datetime:
        self.now += timedelta(seconds=seconds, **kwargs)
        return self.now

    def set(self, value: datetime) -> datetime:
        self.now = value
        return self.now


def agent_event(
    agent_id: str,
    *,
    tenant: str = "acme",
    skills: Mapping[str, int] | None = None,
    capacity: Mapping[Channel | str, int] | None = None,
    presence: Presence | None = Presence.AVAILABLE,
    attributes: Mapping[str, Any] | None = None,
    endpoints: int = 1,
) -> AgentUpserted:
    return AgentUpserted(
        tenant_id=tenant,
        agent_id=agent_id,
        skills=dict(skills or {}),
        capacity={Channel(k): v for k, v in (capacity or {"email": 2, "chat": 2}).items()},
        presence=presence,
        attributes=dict(attributes or {}),
        endpoints=tuple(
            DeliveryEndpoint(kind=EndpointKind.SLACK, target=f"U-{agent_id}-{i}") for i in range(endpoints)
        ),
    )


def inbound(
    *,
    tenant: str = "acme",
    channel: Channel | str = Channel.EMAIL,
    handle: str = "customer-1",
    kind: str | None = None,
    verified: bool = True,
    text: str = "hello",
    subject: str | None = None,
    thread: str | None = None,
    message_id: str | None = None,
    language: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    provider: str = "test",
    **extra: Any,
) -> InboundMessage:
    channel = Channel(channel)
    return InboundMessage(
        tenant_id=tenant,
        channel=channel,
        provider=provider,
        provider_message_id=message_id or new_id(),
        thread_ref=thread,
        contact=ContactIdentity(
            display_name="Customer",
            handles=(ContactHandle(kind=kind or channel.value, value=handle, verified=verified),),
            attributes=dict(attributes or {}),
        ),
        subject=subject,
        text=text,
        language=language,
        **extra,
    )
