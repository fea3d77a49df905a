"""Which (dispatch, endpoint) pairs were already delivered, so a redelivered dispatch is not sent twice.

The store lives in memory and is rebuilt at start by reading ``delivery.v1`` from the
beginning (:meth:`DeliveredStore.observe` each :class:`DeliveryResult`); the topic is the
durable record. It keeps at most ``max_entries`` pairs, forgetting the oldest first.
"""

from __future__ import annotations

from collections import OrderedDict

from switchboard.common.events import DeliveryEndpoint, DeliveryResult, DeliveryStatus

StoreKey = tuple[str, str, str]
"""(tenant id, dispatch id, endpoint key)."""


def endpoint_key(endpoint: DeliveryEndpoint) -> str:
    return f"{endpoint.kind}:{endpoint.target}"  # a StrEnum formats as its value


class DeliveredStore:
    """Delivered pairs, each with its external reference and whether its result is on the topic.

    A pair is *confirmed* once its ``delivered`` result was acknowledged on ``delivery.v1``
    (or read back from it). A redelivered dispatch whose pair is confirmed is a duplicate; one
    whose pair is delivered but unconfirmed (the result write failed) is reported as
    delivered again, without sending, so the router still learns of the delivery.
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._delivered: OrderedDict[StoreKey, tuple[str | None, bool]] = OrderedDict()
        self._max = max_entries

    @staticmethod
    def key(tenant_id: str, dispatch_id: str, endpoint: DeliveryEndpoint) -> StoreKey:
        """The store's key of a pair; compute it once per delivery and use ``lookup`` and ``mark_key``."""
        return tenant_id, dispatch_id, endpoint_key(endpoint)

    def lookup(self, key: StoreKey) -> tuple[str | None, bool] | None:
        """``(external_ref, confirmed)`` of a delivered pair, None when it was not delivered."""
        return self._delivered.get(key)

    def is_delivered(self, tenant_id: str, dispatch_id: str, endpoint: DeliveryEndpoint) -> bool:
        return self.key(tenant_id, dispatch_id, endpoint) in self._delivered

    def is_confirmed(self, tenant_id: str, dispatch_id: str, endpoint: DeliveryEndpoint) -> bool:
        entry = self._delivered.get(self.key(tenant_id, dispatch_id, endpoint))
        return entry is not None and entry[1]

    def external_ref(self, tenant_id: str, dispatch_id: str, endpoint: DeliveryEndpoint) -> str | None:
        entry = self._delivered.get(self.key(tenant_id, dispatch_id, endpoint))
        return entry[0] if entry else None

    def mark(
        self,
        tenant_id: str,
        dispatch_id: str,
        endpoint: DeliveryEndpoint,
        external_ref: str | None = None,
        *,
        confirmed: bool = False,
    ) -> None:
        self.mark_key(self.key(tenant_id, dispatch_id, endpoint), external_ref, confirmed=confirmed)

    def mark_key(self, key: StoreKey, external_ref: str | None = None, *, confirmed: bool = False) -> None:
        previous = self._delivered.get(key)
        if previous is not None:
            confirmed = confirmed or previous[1]
            if external_ref is None:
                external_ref = previous[0]
        self._delivered[key] = (external_ref, confirmed)
        if previous is not None:  # a new key is already the newest
            self._delivered.move_to_end(key)
        while len(self._delivered) > self._max:
            self._delivered.popitem(last=False)

    def observe(self, result: DeliveryResult) -> bool:
        """Learn from a result read back from ``delivery.v1``; True when it recorded a delivery."""
        if result.status is not DeliveryStatus.DELIVERED:
            return False
        self.mark(result.tenant_id, result.dispatch_id, result.endpoint, result.external_ref, confirmed=True)
        return True

    def confirm(self, result: DeliveryResult) -> None:
        """The result of a delivery made here was acknowledged on ``delivery.v1``."""
        if result.status in (DeliveryStatus.DELIVERED, DeliveryStatus.DUPLICATE):
            self.mark(result.tenant_id, result.dispatch_id, result.endpoint, result.external_ref, confirmed=True)

    def __len__(self) -> int:
        return len(self._delivered)
