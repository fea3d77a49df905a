"""The SMTP listener: aiosmtpd on the service's own event loop.

Reply codes, as a sending MTA sees them:

* ``550 5.1.1`` at RCPT for an address no tenant owns, ``553 5.1.3`` for one that is not
  an address at all;
* ``552`` for a message over the size limit (advertised with ``SIZE``; enforced by aiosmtpd);
* ``250`` at end of DATA only once the message is on the broker for every tenant addressed
  (a message for several tenants is published once per tenant);
* ``451 4.3.0`` when the broker did not acknowledge, or the blob store did not keep the
  attachments (nothing is published then), so the sender queues and retries (a
  retry republishes under the same ``provider_message_id``; consumers drop duplicates).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiosmtpd.smtp import SMTP, Envelope, Session

from switchboard.common.logging import get_logger

from .blobs import BlobStoreError
from .ingest import EmailIngestor
from .publish import PublishError
from .record_size import RecordTooLarge
from .routing import InvalidAddress, RecipientMap, Route

__all__ = ["EmailSMTPHandler", "LenientSMTP", "SMTPListener", "SMTPOptions", "tls_context_from_files"]

log = get_logger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024


class EmailSMTPHandler:
    """aiosmtpd handler: routes recipients at RCPT time, normalizes and publishes at DATA."""

    def __init__(self, recipients: RecipientMap, ingestor: EmailIngestor, *, provider: str = "smtp") -> None:
        self.recipients = recipients
        self.ingestor = ingestor
        self.provider = provider
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until no DATA is being handled (True), or ``timeout`` passes (False)."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        try:
            route = self.recipients.resolve(address)
        except InvalidAddress:
            return "553 5.1.3 Recipient address syntax is not valid"
        if route is None:
            return "550 5.1.1 Recipient address rejected: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._inflight += 1
        self._idle.clear()
        try:
            return await self._data(envelope)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def _data(self, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):  # only with decode_data=True, which the listener never sets
            raw = raw.encode("utf-8", "surrogateescape")
        targets = self._targets(envelope.rcpt_tos)
        if not targets:
            return "554 5.5.1 No valid recipients"
        sender = envelope.mail_from if isinstance(envelope.mail_from, str) else None
        for route, recipient in targets:
            try:
                await self.ingestor.ingest(
                    raw,
                    route=route,
                    provider=self.provider,
                    recipient=recipient,
                    envelope_sender=sender or None,
                )
            except PublishError:
                log.warning("smtp message not acknowledged by the broker", tenant=route.tenant_id)
                return "451 4.3.0 Temporary failure storing the message, try again later"
            except BlobStoreError:
                log.warning("smtp message content could not be stored", tenant=route.tenant_id)
                return "451 4.3.0 Temporary failure storing the attachments, try again later"
            except RecordTooLarge:
                log.warning("smtp message too large to publish", tenant=route.tenant_id)
                return "552 5.3.4 Message too big to store"
            except Exception:
                log.exception("smtp message could not be ingested", tenant=route.tenant_id)
                return "451 4.3.0 Temporary local error, try again later"
        return "250 2.0.0 Message accepted"

    def _targets(self, rcpt_tos: list[str]) -> list[tuple[Route, str]]:
        """One (route, recipient) per tenant; a recipient carrying a reply token is preferred."""
        chosen: dict[str, tuple[Route, str]] = {}
        for address in rcpt_tos:
            try:
                route = self.recipients.resolve(address)
            except InvalidAddress:
                continue
            if route is None:
                continue
            current = chosen.get(route.tenant_id)
            if current is None or ("+" not in current[1].partition("@")[0] and "+" in address):
                chosen[route.tenant_id] = (route, address)
        return list(chosen.values())


class LenientSMTP(SMTP):
    """RFC 5321 caps lines at 1000 octets, but real senders exceed it (long HTML lines);
    refusing them would lose mail, so lines up to 64 KiB are accepted."""

    line_length_limit = 64 * 1024


@dataclass(frozen=True, slots=True)
class SMTPOptions:
    host: str = "0.0.0.0"  # noqa: S104  # a container listens on all interfaces
    port: int = 2525
    hostname: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    tls_context: ssl.SSLContext | None = None
    require_starttls: bool = False
    timeout_seconds: float = 300.0
    drain_seconds: float = 25.0


def tls_context_from_files(cert_file: Path | str, key_file: Path | str) -> ssl.SSLContext:
    """A server-side context for STARTTLS (no client certificates requested)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


class SMTPListener:
    """Serves SMTP on the running event loop; an async context manager.

    Unlike aiosmtpd's ``Controller`` (which runs its own loop in a thread) this shares the
    loop with the producer, so a publish is awaited directly by the session that needs it.
    """

    def __init__(self, handler: EmailSMTPHandler, options: SMTPOptions) -> None:
        self.handler = handler
        self.options = options
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the SMTP listener is not running")
        return int(self._server.sockets[0].getsockname()[1])

    def _factory(self) -> SMTP:
        o = self.options
        kwargs: dict[str, Any] = {
            "data_size_limit": o.max_message_bytes,
            "enable_SMTPUTF8": True,
            "decode_data": False,
            "hostname": o.hostname,
            "ident": "Switchboard ESMTP",
            "tls_context": o.tls_context,
            "require_starttls": o.require_starttls and o.tls_context is not None,
            "timeout": o.timeout_seconds,
            "loop": asyncio.get_running_loop(),
        }
        return LenientSMTP(self.handler, **kwargs)

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, self.options.host, self.options.port)
        log.info("smtp listener started", port=self.port, starttls=self.options.tls_context is not None)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()  # no new connections; sessions in DATA finish their publish
        if not await self.handler.drain(self.options.drain_seconds):
            log.warning("smtp shutdown with messages still in flight; senders will retry them")
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
