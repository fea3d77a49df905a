"""The sink extension point: one :class:`Sink` per endpoint kind, found through a :class:`SinkRegistry`.

Built-in sinks are registered by the composition root. Third-party packages add a sink by
declaring an entry point in the ``switchboard.sinks`` group whose object is a callable
taking no arguments (usually the sink class) and returning a :class:`Sink`; such a sink
reads its own configuration (for example with pydantic-settings).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import ClassVar, Protocol, runtime_checkable

from switchboard.common.events import DeliveryEndpoint, Dispatch, EndpointKind
from switchboard.notifier.outcome import DeliveryOutcome

ENTRY_POINT_GROUP = "switchboard.sinks"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``rate`` sends per second on average, bursts of up to ``burst``."""

    rate: float
    burst: float = 1.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")


@runtime_checkable
class Sink(Protocol):
    """Delivers a dispatch to one endpoint of its kind.

    ``deliver`` never raises for a delivery problem: it returns a :class:`DeliveryOutcome`
    saying whether the send worked, is worth retrying, or failed for good.
    """

    @property
    def kind(self) -> EndpointKind: ...

    @property
    def rate_limit(self) -> RateLimit | None: ...

    def target_key(self, endpoint: DeliveryEndpoint) -> str:
        """The unit of rate limiting and circuit breaking (a Slack channel, a webhook host)."""
        ...

    async def deliver(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> DeliveryOutcome: ...


class BaseSink:
    """Convenience base: set ``kind`` (and ``rate_limit``), implement ``deliver``."""

    kind: ClassVar[EndpointKind]
    rate_limit: RateLimit | None = None

    def target_key(self, endpoint: DeliveryEndpoint) -> str:
        return f"{endpoint.kind.value}:{endpoint.target}"

    async def deliver(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> DeliveryOutcome:
        raise NotImplementedError


class SinkLoadError(RuntimeError):
    """A ``switchboard.sinks`` entry point could not be loaded or did not give a sink."""


class SinkRegistry:
    """The sinks of this process, one per endpoint kind."""

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self._sinks: dict[EndpointKind, Sink] = {}
        for sink in sinks:
            self.register(sink)

    def register(self, sink: Sink, *, replace: bool = False) -> None:
        if not isinstance(sink, Sink):
            raise TypeError(f"{sink!r} does not implement the Sink protocol")
        kind = EndpointKind(sink.kind)
        if kind in self._sinks and not replace:
            raise ValueError(f"a sink for endpoint kind {kind.value!r} is already registered")
        self._sinks[kind] = sink

    def get(self, kind: EndpointKind) -> Sink | None:
        return self._sinks.get(kind)

    def kinds(self) -> frozenset[EndpointKind]:
        return frozenset(self._sinks)

    def __iter__(self) -> Iterator[Sink]:
        return iter(self._sinks.values())

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register every sink declared in ``group``; returns the entry point names loaded.

        A sink for a kind that is already registered replaces the built-in one, so an
        operator can install a different Slack sink without a fork.
        """
        loaded: list[str] = []
        for ep in entry_points(group=group):
            try:
                factory = ep.load()
                sink = factory()
            except Exception as exc:
                raise SinkLoadError(f"sink entry point {ep.name!r} ({ep.value}) failed: {exc}") from exc
            if not isinstance(sink, Sink):
                raise SinkLoadError(f"sink entry point {ep.name!r} ({ep.value}) did not return a Sink")
            self.register(sink, replace=True)
            loaded.append(ep.name)
        return loaded
