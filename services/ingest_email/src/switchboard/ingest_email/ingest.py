"""The pipeline every way in shares: normalize raw bytes, then publish once per tenant."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from switchboard.common.events import InboundMessage, utcnow
from switchboard.common.logging import get_logger

from .blobs import BlobStore
from .normalize import NormalizeLimits, normalize_email
from .publish import Publisher
from .routing import Route

__all__ = ["INLINE_NORMALIZE_BYTES", "EmailIngestor"]

log = get_logger(__name__)

INLINE_NORMALIZE_BYTES = 32 * 1024
"""Messages up to this size are normalized on the event loop (tens of microseconds);
larger ones, and all of them when a blob store (blocking file I/O) is configured, go to a
worker thread."""


class IngestMetrics:
    """Counters of the email ingest, registered on the service's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "switchboard_ingest_email_messages",
            "Inbound emails by provider and outcome (published, broker_unavailable)",
            ["provider", "outcome"],
            registry=registry,
        )
        self.defective = Counter(
            "switchboard_ingest_email_defective_messages",
            "Inbound emails normalized with parser defects, by parser",
            ["parser"],
            registry=registry,
        )
        self.normalize_seconds = Histogram(
            "switchboard_ingest_email_normalize_seconds",
            "Time to normalize one message",
            buckets=(0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
            registry=registry,
        )


@dataclass
class EmailIngestor:
    publisher: Publisher
    blob_store: BlobStore | None = None
    limits: NormalizeLimits = field(default_factory=NormalizeLimits)
    clock: Callable[[], datetime] = utcnow
    metrics: IngestMetrics | None = None

    async def normalize(
        self,
        raw: bytes,
        *,
        route: Route,
        provider: str,
        recipient: str | None = None,
        envelope_sender: str | None = None,
        provider_metadata: Mapping[str, Any] | None = None,
    ) -> InboundMessage:
        kwargs: dict[str, Any] = {
            "tenant_id": route.tenant_id,
            "provider": provider,
            "recipient": recipient,
            "inbox": route.inbox,
            "envelope_sender": envelope_sender,
            "blob_store": self.blob_store,
            "limits": self.limits,
            "received_at": self.clock(),
            "provider_metadata": provider_metadata,
        }
        started = time.perf_counter()
        if len(raw) <= INLINE_NORMALIZE_BYTES and self.blob_store is None:
            record = normalize_email(raw, **kwargs)
        else:
            record = await asyncio.to_thread(lambda: normalize_email(raw, **kwargs))
        if self.metrics is not None:
            self.metrics.normalize_seconds.observe(time.perf_counter() - started)
            if record.parser_defects:
                self.metrics.defective.labels(str(record.provider_metadata.get("parser"))).inc()
        return record

    async def ingest(
        self,
        raw: bytes,
        *,
        route: Route,
        provider: str,
        recipient: str | None = None,
        envelope_sender: str | None = None,
        provider_metadata: Mapping[str, Any] | None = None,
    ) -> InboundMessage:
        """Normalize and publish; raises :class:`~.publish.PublishError` when not acknowledged."""
        record = await self.normalize(
            raw,
            route=route,
            provider=provider,
            recipient=recipient,
            envelope_sender=envelope_sender,
            provider_metadata=provider_metadata,
        )
        try:
            await self.publisher.publish(record)
        except Exception:
            if self.metrics is not None:
                self.metrics.messages.labels(provider, "broker_unavailable").inc()
            raise
        if self.metrics is not None:
            self.metrics.messages.labels(provider, "published").inc()
        log.info(
            "inbound email published",
            tenant=record.tenant_id,
            provider=provider,
            record_id=record.id,
            parser=record.provider_metadata.get("parser"),
            defects=len(record.parser_defects),
            automated=record.automated.value if record.automated else None,
        )
        return record
