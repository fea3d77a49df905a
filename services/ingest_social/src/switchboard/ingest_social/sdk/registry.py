"""The adapter registry: built-in adapters plus those of the ``switchboard.channels`` entry points."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from importlib.metadata import EntryPoint, entry_points

from switchboard.common.logging import get_logger
from switchboard.ingest_social.sdk.adapter import ChannelAdapter
from switchboard.ingest_social.sdk.config import ChannelsConfig
from switchboard.ingest_social.sdk.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "AdapterRegistry"]

ENTRY_POINT_GROUP = "switchboard.channels"
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")

log = get_logger(__name__)


class AdapterRegistry:
    """Adapter classes by name. Registering two different classes under one name is an error."""

    def __init__(self, adapters: Iterable[type[ChannelAdapter]] = ()) -> None:
        self._by_name: dict[str, type[ChannelAdapter]] = {}
        for cls in adapters:
            self.register(cls)

    def register(self, cls: type[ChannelAdapter]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, ChannelAdapter)):
            raise ConfigError(f"{cls!r} is not a ChannelAdapter subclass")
        if not _NAME_RE.match(cls.name):
            raise ConfigError(f"{cls.__name__}.name {cls.name!r} must match {_NAME_RE.pattern}")
        known = self._by_name.get(cls.name)
        if known is not None and known is not cls:
            raise ConfigError(
                f"adapter name {cls.name!r} is taken by {known.__module__}.{known.__qualname__}, "
                f"cannot also register {cls.__module__}.{cls.__qualname__}"
            )
        self._by_name[cls.name] = cls

    def discover(self, group: str = ENTRY_POINT_GROUP, eps: Iterable[EntryPoint] | None = None) -> list[str]:
        """Load every adapter class published in the entry-point group; returns the names added."""
        added: list[str] = []
        for ep in entry_points(group=group) if eps is None else eps:
            try:
                cls = ep.load()
            except Exception as exc:
                raise ConfigError(f"entry point {ep.name!r} ({ep.value}) failed to load: {exc!r}") from exc
            before = set(self._by_name)
            self.register(cls)
            if cls.name not in before:
                added.append(cls.name)
                log.info("adapter_discovered", adapter=cls.name, entry_point=ep.value)
        return added

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_name))

    def get(self, name: str) -> type[ChannelAdapter]:
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigError(f"no adapter named {name!r}; known: {sorted(self._by_name)}") from None

    def create_enabled(self, config: ChannelsConfig) -> list[ChannelAdapter]:
        """Instantiate each adapter the configuration enables, checking every tenant's secrets."""
        adapters: list[ChannelAdapter] = []
        for name, adapter_cfg in sorted(config.enabled().items()):
            adapter = self.get(name)(adapter_cfg.options)
            for tenant_id, tenant_cfg in adapter_cfg.tenants.items():
                adapter.check_tenant(tenant_id, tenant_cfg)
            adapters.append(adapter)
        return adapters
