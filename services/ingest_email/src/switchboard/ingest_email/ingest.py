"""The pipeline every way in shares: normalize raw bytes, keep the content in the blob
store, verify the sender, then publish (once per tenant).

Nothing is published before its blobs are stored: a store failure raises
:class:`~.blobs.BlobStoreError`, which the ways in answer with a retryable refusal.
"""

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

from .blobs import BlobStore, BlobStoreError
from .normalize import Normalized, NormalizeLimits, PendingBlob, normalize_message
from .publish import Publisher
from .record_size import RecordTooLarge, fit_encoded
from .routing import Route
from .sender_auth import ProviderVerdict, SenderVerifier, mark_verified

__all__ = ["INLINE_NORMALIZE_BYTES", "EmailIngestor", "store_blobs"]

log = get_logger(__name__)

INLINE_NORMALIZE_BYTES = 32 * 1024
"""Messages up to this size are normalized on the event loop (tens of microseconds);
larger ones go to a worker thread."""


class IngestMetrics:
    """Counters of the email ingest, registered on the service's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "switchboard_ingest_email_messages",
            "Inbound emails by provider and outcome (published, broker_unavailable, blob_store_unavailable, too_large)",
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
        self._outcomes: dict[tuple[str, str], Counter] = {}

    def count(self, provider: str, outcome: str) -> None:
        """One message of ``provider`` with ``outcome`` (the labelled child is looked up once)."""
        child = self._outcomes.get((provider, outcome))
        if child is None:
            child = self._outcomes[(provider, outcome)] = self.messages.labels(provider, outcome)
        child.inc()


async def store_blobs(normalized: Normalized, store: BlobStore) -> InboundMessage:
    """Store every pending blob (all of them, or raise :class:`BlobStoreError`) and return
    the record carrying their references."""
    record = normalized.record
    if not normalized.blobs:
        return record

    async def put(blob: PendingBlob) -> str:
        return await store.put(record.tenant_id, blob.sha256, blob.content, blob.content_type)

    try:
        refs = await asyncio.gather(*(put(b) for b in normalized.blobs))
    except BlobStoreError:
        raise
    except Exception as exc:  # a store that broke its contract is still a store failure
        raise BlobStoreError(f"blob store failed: {type(exc).__name__}") from exc
    attachments = list(record.attachments)
    metadata = dict(record.provider_metadata)
    for blob, ref in zip(normalized.blobs, refs, strict=True):
        if blob.target == "attachment":
            attachments[blob.index] = attachments[blob.index].model_copy(update={"blob_ref": ref})
        else:
            metadata[f"{blob.target}_blob_ref"] = ref
    return record.model_copy(update={"attachments": tuple(attachments), "provider_metadata": metadata})


@dataclass
class EmailIngestor:
    publisher: Publisher
    blob_store: BlobStore | None = None
    limits: NormalizeLimits = field(default_factory=NormalizeLimits)
    clock: Callable[[], datetime] = utcnow
    metrics: IngestMetrics | None = None
    verifier: SenderVerifier | None = None

    async def normalize(
        self,
        raw: bytes,
        *,
        route: Route,
        provider: str,
        recipient: str | None = None,
        envelope_sender: str | None = None,
        provider_metadata: Mapping[str, Any] | None = None,
        provider_verdict: ProviderVerdict | None = None,
    ) -> tuple[InboundMessage, bytes]:
        """The record as it will be published (content stored, sender verified, cut to the
        record size cap) and its encoded bytes, the ones measured against that cap.

        Raises :class:`BlobStoreError` when the content could not be stored and
        :class:`~.record_size.RecordTooLarge` when the record cannot be made to fit.
        """
        kwargs: dict[str, Any] = {
            "tenant_id": route.tenant_id,
            "provider": provider,
            "recipient": recipient,
            "inbox": route.inbox,
            "envelope_sender": envelope_sender,
            "store_content": self.blob_store is not None,
            "limits": self.limits,
            "received_at": self.clock(),
            "provider_metadata": provider_metadata,
        }
        started = time.perf_counter()
        if len(raw) <= INLINE_NORMALIZE_BYTES:
            normalized = normalize_message(raw, **kwargs)
        else:
            normalized = await asyncio.to_thread(lambda: normalize_message(raw, **kwargs))
        record = normalized.record
        if self.metrics is not None:
            self.metrics.normalize_seconds.observe(time.perf_counter() - started)
            if record.parser_defects:
                self.metrics.defective.labels(str(record.provider_metadata.get("parser"))).inc()
        if self.blob_store is not None:
            record = await store_blobs(normalized, self.blob_store)
        if self.verifier is not None and normalized.author is not None:
            verification = await self.verifier.verify(raw, normalized.author, provider_verdict)
            record = mark_verified(record, normalized.author, verification)
        return fit_encoded(record, self.limits.max_record_bytes)

    async def ingest(
        self,
        raw: bytes,
        *,
        route: Route,
        provider: str,
        recipient: str | None = None,
        envelope_sender: str | None = None,
        provider_metadata: Mapping[str, Any] | None = None,
        provider_verdict: ProviderVerdict | None = None,
    ) -> InboundMessage:
        """Normalize, store, verify and publish.

        Raises :class:`~.blobs.BlobStoreError` when the content could not be stored (nothing
        is published), :class:`~.record_size.RecordTooLarge` when the record cannot be made
        small enough for the broker (a retry cannot help) and :class:`~.publish.PublishError`
        when the broker did not acknowledge.
        """
        try:
            record, encoded = await self.normalize(
                raw,
                route=route,
                provider=provider,
                recipient=recipient,
                envelope_sender=envelope_sender,
                provider_metadata=provider_metadata,
                provider_verdict=provider_verdict,
            )
        except BlobStoreError:
            if self.metrics is not None:
                self.metrics.count(provider, "blob_store_unavailable")
            raise
        except RecordTooLarge:
            if self.metrics is not None:
                self.metrics.count(provider, "too_large")
            raise
        try:
            await self.publisher.publish(record, encoded)
        except RecordTooLarge:
            if self.metrics is not None:
                self.metrics.count(provider, "too_large")
            raise
        except Exception:
            if self.metrics is not None:
                self.metrics.count(provider, "broker_unavailable")
            raise
        if self.metrics is not None:
            self.metrics.count(provider, "published")
        # debug, not info: at a thousand messages a second one line each cost ~40 us of CPU
        # apiece, and the messages counter above already counts them for operators
        log.debug(
            "inbound email published",
            tenant=record.tenant_id,
            provider=provider,
            record_id=record.id,
            parser=record.provider_metadata.get("parser"),
            sender_verified_by=record.provider_metadata.get("sender_verified_by"),
            defects=len(record.parser_defects),
            automated=record.automated.value if record.automated else None,
        )
        return record
