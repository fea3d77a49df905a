"""The sink registry: one sink per kind, third-party sinks from the ``switchboard.sinks`` entry points."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from switchboard.common.events import DeliveryEndpoint, Dispatch, EndpointKind
from switchboard.notifier import sink as sink_module
from switchboard.notifier.outcome import DeliveryOutcome
from switchboard.notifier.sink import ENTRY_POINT_GROUP, BaseSink, Sink, SinkLoadError, SinkRegistry


class InboxSink(BaseSink):
    kind: ClassVar[EndpointKind] = EndpointKind.INBOX

    async def deliver(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> DeliveryOutcome:
        return DeliveryOutcome.delivered(f"inbox:{dispatch.dispatch_id}")


class OtherInboxSink(InboxSink):
    pass


@dataclass
class FakeEntryPoint:
    name: str
    factory: Callable[[], Any]
    value: str = "plugin.module:factory"

    def load(self) -> Callable[[], Any]:
        return self.factory


def _with_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: FakeEntryPoint) -> list[str]:
    groups: list[str] = []

    def fake_entry_points(*, group: str) -> list[FakeEntryPoint]:
        groups.append(group)
        return list(eps)

    monkeypatch.setattr(sink_module, "entry_points", fake_entry_points)
    return groups


def test_one_sink_per_kind() -> None:
    registry = SinkRegistry([InboxSink()])
    assert registry.kinds() == {EndpointKind.INBOX}
    assert isinstance(registry.get(EndpointKind.INBOX), InboxSink)
    assert registry.get(EndpointKind.SLACK) is None
    with pytest.raises(ValueError, match="already registered"):
        registry.register(OtherInboxSink())
    registry.register(OtherInboxSink(), replace=True)
    assert isinstance(registry.get(EndpointKind.INBOX), OtherInboxSink)


def test_objects_that_are_not_sinks_are_refused() -> None:
    with pytest.raises(TypeError, match="Sink protocol"):
        SinkRegistry().register(object())  # type: ignore[arg-type]


async def test_entry_point_sinks_are_loaded_and_usable(monkeypatch: pytest.MonkeyPatch, make_dispatch) -> None:  # type: ignore[no-untyped-def]
    groups = _with_entry_points(monkeypatch, FakeEntryPoint("inbox", InboxSink))
    registry = SinkRegistry()
    assert registry.load_entry_points() == ["inbox"]
    assert groups == [ENTRY_POINT_GROUP]
    loaded = registry.get(EndpointKind.INBOX)
    assert isinstance(loaded, Sink)
    dispatch = make_dispatch()
    outcome = await loaded.deliver(dispatch, DeliveryEndpoint(kind=EndpointKind.INBOX, target="support"))
    assert outcome.external_ref == f"inbox:{dispatch.dispatch_id}"


def test_broken_entry_points_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> Any:
        raise RuntimeError("missing config")

    _with_entry_points(monkeypatch, FakeEntryPoint("bad", boom))
    with pytest.raises(SinkLoadError, match=r"'bad'.*missing config"):
        SinkRegistry().load_entry_points()
    _with_entry_points(monkeypatch, FakeEntryPoint("notasink", dict))
    with pytest.raises(SinkLoadError, match="did not return a Sink"):
        SinkRegistry().load_entry_points()
