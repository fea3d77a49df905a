"""The built-in agent inbox: each dispatch is kept in memory for the agent's inbox page."""

from __future__ import annotations

from typing import ClassVar

from switchboard.common.events import DeliveryEndpoint, Dispatch, EndpointKind
from switchboard.notifier.inbox import InboxStore, InboxTargetError, parse_target
from switchboard.notifier.outcome import DeliveryOutcome
from switchboard.notifier.sink import BaseSink


class InboxSink(BaseSink):
    """Endpoint target ``tenant/agent`` (or a bare agent id, in the dispatch's tenant).

    Delivery cannot fail transiently: it is a write to memory. A target that names another
    tenant, or no valid agent, fails for good. The external reference is ``inbox:<seq>``.
    """

    kind: ClassVar[EndpointKind] = EndpointKind.INBOX

    def __init__(self, store: InboxStore) -> None:
        self._store = store

    def target_key(self, endpoint: DeliveryEndpoint) -> str:
        return f"inbox:{endpoint.target}"

    async def deliver(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> DeliveryOutcome:
        try:
            tenant, agent = parse_target(endpoint.target, dispatch.tenant_id)
        except InboxTargetError as exc:
            return DeliveryOutcome.failed(str(exc))
        item = self._store.add(tenant, agent, dispatch)
        return DeliveryOutcome.delivered(f"inbox:{item.seq}")
