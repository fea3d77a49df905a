"""Composition root: settings in, a runnable aiohttp application (HTTP webhooks + SMTP) out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from switchboard.common.logging import get_logger
from switchboard.common.runtime import REGISTRY, TOPICS, add_kafka, create_app

from .blobs import BlobStore, LocalDirectoryBlobStore
from .imap import ImapPoller
from .ingest import EmailIngestor, IngestMetrics
from .publish import ProducerPublisher, Publisher
from .s3_blobs import S3BlobStore
from .sender_auth import DnsKeyResolver, KeyResolver, SenderVerifier
from .settings import IngestEmailSettings
from .smtp import EmailSMTPHandler, SMTPListener, SMTPOptions, tls_context_from_files
from .webhook_auth import MailgunVerifier, ReplayCache
from .webhooks import InboundWebhooks, WebhookCredentials

__all__ = ["INGEST_EMAIL", "IngestEmail", "build_app"]

log = get_logger(__name__)


@dataclass
class IngestEmail:
    """The parts of a running email ingest (exposed for tests and tools)."""

    settings: IngestEmailSettings
    ingestor: EmailIngestor
    webhooks: InboundWebhooks
    smtp: SMTPListener | None
    imap: list[ImapPoller] = field(default_factory=list)


INGEST_EMAIL = web.AppKey("ingest_email", IngestEmail)


def build_app(
    settings: IngestEmailSettings,
    *,
    publisher: Publisher | None = None,
    key_resolver: KeyResolver | None = None,
) -> web.Application:
    """The service. ``publisher`` and ``key_resolver`` (DKIM keys) are injectable for tests."""
    app = create_app(settings, client_max_size=settings.webhook_max_body_bytes)
    if publisher is None:
        kafka = add_kafka(app)
        publisher = ProducerPublisher(kafka.producer, app[TOPICS].inbound)
    recipients = settings.recipient_map()
    blob_store: BlobStore | None = None
    s3_options = settings.s3_options()
    if s3_options is not None:
        s3 = S3BlobStore(s3_options)
        blob_store = s3

        async def s3_ctx(_app: web.Application) -> AsyncIterator[None]:
            async with s3:
                yield

        app.cleanup_ctx.insert(0, s3_ctx)  # open before any way in accepts mail, closed after
    elif settings.blob_dir:
        blob_store = LocalDirectoryBlobStore(settings.blob_dir)
    policy = settings.verification_policy()
    if policy.dkim and key_resolver is None:
        key_resolver = DnsKeyResolver(timeout_seconds=settings.sender_dkim_dns_timeout_seconds)
    ingestor = EmailIngestor(
        publisher,
        blob_store=blob_store,
        limits=settings.normalize_limits(),
        metrics=IngestMetrics(app[REGISTRY]),
        verifier=SenderVerifier(policy, key_resolver),
    )
    webhooks = InboundWebhooks(
        ingestor=ingestor,
        credentials=WebhookCredentials(
            mailgun_signing_keys={t: s.get_secret_value() for t, s in settings.mailgun_signing_keys.items()},
            sendgrid_secrets={t: s.get_secret_value() for t, s in settings.sendgrid_secrets.items()},
            postmark_basic_auth={t: s.get_secret_value() for t, s in settings.postmark_basic_auth.items()},
        ),
        mailgun=MailgunVerifier(
            {t: s.get_secret_value() for t, s in settings.mailgun_signing_keys.items()},
            tolerance_seconds=settings.mailgun_timestamp_tolerance_seconds,
            replay_cache=ReplayCache(
                max_entries=settings.mailgun_replay_cache_size,
                ttl_seconds=2 * settings.mailgun_timestamp_tolerance_seconds,
            ),
        ),
        recipients=recipients,
        max_body_bytes=settings.webhook_max_body_bytes,
    )
    webhooks.add_routes(app)

    listener: SMTPListener | None = None
    if settings.smtp_enabled:
        tls = None
        if settings.smtp_tls_cert_file and settings.smtp_tls_key_file:
            tls = tls_context_from_files(settings.smtp_tls_cert_file, settings.smtp_tls_key_file)
        listener = SMTPListener(
            EmailSMTPHandler(recipients, ingestor),
            SMTPOptions(
                host=settings.smtp_host,
                port=settings.smtp_port,
                hostname=settings.smtp_hostname,
                max_message_bytes=settings.smtp_max_message_bytes,
                tls_context=tls,
                require_starttls=settings.smtp_require_starttls,
                timeout_seconds=settings.smtp_timeout_seconds,
                drain_seconds=settings.shutdown_grace_seconds,
            ),
        )
        smtp = listener

        async def smtp_ctx(_app: web.Application) -> AsyncIterator[None]:
            # appended after the Kafka context, so it stops first: no mail is accepted
            # after the producer is gone
            async with smtp:
                yield

        app.cleanup_ctx.append(smtp_ctx)
    pollers = [ImapPoller(m.mailbox(), ingestor) for m in settings.imap_mailboxes]
    if pollers:

        async def imap_ctx(_app: web.Application) -> AsyncIterator[None]:
            async with contextlib.AsyncExitStack() as stack:
                for poller in pollers:
                    await stack.enter_async_context(poller)
                yield

        app.cleanup_ctx.append(imap_ctx)
    if not len(recipients):
        log.warning("no recipients configured: SMTP refuses every recipient")
    app[INGEST_EMAIL] = IngestEmail(
        settings=settings, ingestor=ingestor, webhooks=webhooks, smtp=listener, imap=pollers
    )
    return app
