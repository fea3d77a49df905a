"""The composition root: settings, channels file, adapters, Kafka, the aiohttp application."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry

from switchboard.common.logging import get_logger
from switchboard.common.runtime import REGISTRY, TOPICS, add_kafka, create_app
from switchboard.ingest_social.adapters import BUILTIN_ADAPTERS
from switchboard.ingest_social.kafka_publisher import KafkaPublisher
from switchboard.ingest_social.sdk import (
    AdapterMetrics,
    AdapterRegistry,
    AdapterServices,
    ChannelAdapter,
    ChannelsConfig,
    DedupeCache,
    Publisher,
    load_channels_config,
    mount_adapters,
)
from switchboard.ingest_social.settings import IngestSocialSettings

__all__ = ["ADAPTERS", "build_app", "default_registry"]

log = get_logger(__name__)

ADAPTERS = web.AppKey("adapters", list[ChannelAdapter])


def default_registry(*, discover: bool = True, extra: Iterable[type[ChannelAdapter]] = ()) -> AdapterRegistry:
    """The built-in adapters, those given, and (unless ``discover`` is off) the installed plugins."""
    registry = AdapterRegistry([*BUILTIN_ADAPTERS, *extra])
    if discover:
        registry.discover()
    return registry


def build_app(
    settings: IngestSocialSettings,
    *,
    channels: ChannelsConfig | None = None,
    adapter_registry: AdapterRegistry | None = None,
    publisher: Publisher | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The service's application; raises ``ConfigError`` for a bad channels file or a missing secret."""
    if channels is None:
        path = settings.ingest_social_channels_file
        channels = load_channels_config(path) if path else ChannelsConfig()
    adapter_registry = adapter_registry or default_registry(discover=settings.ingest_social_discover_plugins)
    adapters = adapter_registry.create_enabled(channels)
    if not adapters:
        log.warning("no channel adapters enabled; set SWITCHBOARD_INGEST_SOCIAL_CHANNELS_FILE")
    cap = max((a.max_body_bytes for a in adapters), default=1024 * 1024)
    app = create_app(settings, registry=registry, client_max_size=cap + 1)
    kafka = add_kafka(app)
    if publisher is None:
        publisher = KafkaPublisher(
            kafka.producer, app[TOPICS].inbound, timeout=settings.ingest_social_publish_timeout_seconds
        )
    services = AdapterServices(
        publisher=publisher,
        metrics=AdapterMetrics(app[REGISTRY]),
        dedupe=DedupeCache(
            max_entries=settings.ingest_social_dedupe_max_entries,
            ttl_seconds=settings.ingest_social_dedupe_ttl_seconds,
        ),
        public_base_url=settings.ingest_social_public_base_url,
    )
    tenants = {name: cfg.tenants for name, cfg in channels.enabled().items()}
    mount_adapters(app, adapters, tenants, services)
    app[ADAPTERS] = adapters
    log.info("adapters mounted", adapters=[a.name for a in adapters])
    return app
