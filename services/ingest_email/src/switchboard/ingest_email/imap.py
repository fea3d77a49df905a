"""The IMAP poller: per configured mailbox, fetch unseen mail, publish, and only then mark it.

A message is fetched with ``BODY.PEEK[]`` (which leaves it unseen), normalized and
published; only after the broker acknowledged is it flagged ``\\Seen`` (or moved to the
configured folder). A broker outage or a lost connection leaves it unseen, so the next
cycle fetches it again (the same Message-ID gives the same ``provider_message_id``).
Between cycles the poller waits with IDLE when the server supports it, polling otherwise,
and reconnects with exponential backoff after any failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import aioimaplib

from switchboard.common.logging import get_logger

from .blobs import BlobStoreError
from .ingest import EmailIngestor
from .publish import PublishError
from .record_size import RecordTooLarge
from .routing import Route

__all__ = [
    "AioImapSession",
    "ImapError",
    "ImapMailbox",
    "ImapPoller",
    "MailboxSession",
    "fetched_message",
    "search_uids",
]

log = get_logger(__name__)


class ImapError(RuntimeError):
    """The server refused a command or the connection failed."""


@dataclass(frozen=True)
class ImapMailbox:
    name: str
    host: str
    username: str
    password: str
    tenant_id: str
    port: int = 993
    use_ssl: bool = True
    folder: str = "INBOX"
    address: str | None = None  # the mailbox's own address: recipient and reply-token source
    inbox: str | None = None
    move_to: str | None = None  # move processed mail here instead of flagging it \Seen
    poll_seconds: float = 60.0
    idle: bool = True
    timeout_seconds: float = 30.0


class MailboxSession(Protocol):
    """One logged-in, selected mailbox."""

    async def unseen_uids(self) -> list[str]: ...

    async def fetch(self, uid: str) -> bytes | None: ...

    async def mark_done(self, uid: str) -> None: ...

    async def mark_refused(self, uid: str) -> None:
        """Flag a message that can never be published (``\\Seen \\Flagged``); it stays where it is."""
        ...

    async def wait_for_new(self, timeout: float) -> None: ...

    async def close(self) -> None: ...


SessionFactory = Callable[[ImapMailbox], Awaitable[MailboxSession]]


# --------------------------------------------------------------------------- response parsing


def search_uids(lines: Sequence[bytes | bytearray]) -> list[str]:
    """UIDs from a ``UID SEARCH`` response's lines (``b"1 2 3"`` or ``b"SEARCH 1 2 3"``)."""
    for line in lines:
        words = bytes(line).split()
        if words and words[0].upper() == b"SEARCH":
            words = words[1:]
        if words and all(w.isdigit() for w in words):
            return [w.decode() for w in words]
    return []


def fetched_message(lines: Sequence[bytes | bytearray]) -> bytes | None:
    """The message literal from a ``UID FETCH ... (BODY.PEEK[])`` response, ``None`` when absent."""
    for index, line in enumerate(lines):
        if isinstance(line, bytearray):
            return bytes(line)
        if index + 1 < len(lines) and bytes(line).rstrip().endswith(b"}") and b"BODY[]" in bytes(line).upper():
            following = lines[index + 1]
            return bytes(following)
    return None


# --------------------------------------------------------------------------- aioimaplib session


class AioImapSession:
    """A :class:`MailboxSession` over aioimaplib."""

    def __init__(self, client: aioimaplib.IMAP4, mailbox: ImapMailbox) -> None:
        self._client = client
        self._mailbox = mailbox

    @classmethod
    async def connect(cls, mailbox: ImapMailbox) -> AioImapSession:
        kind: Any = aioimaplib.IMAP4_SSL if mailbox.use_ssl else aioimaplib.IMAP4
        client = kind(host=mailbox.host, port=mailbox.port, timeout=mailbox.timeout_seconds)
        session = cls(client, mailbox)
        try:
            await client.wait_hello_from_server()
            _ok(await client.login(mailbox.username, mailbox.password), "LOGIN")
            _ok(await client.select(mailbox.folder), "SELECT")
        except BaseException:
            await session.close()
            raise
        return session

    async def unseen_uids(self) -> list[str]:
        response = _ok(await self._client.uid_search("UNSEEN"), "UID SEARCH")
        return search_uids(response.lines)

    async def fetch(self, uid: str) -> bytes | None:
        response = _ok(await self._client.uid("fetch", uid, "(BODY.PEEK[])"), "UID FETCH")
        return fetched_message(response.lines)

    async def mark_done(self, uid: str) -> None:
        if self._mailbox.move_to:
            if self._client.has_capability("MOVE"):
                _ok(await self._client.uid("move", uid, self._mailbox.move_to), "UID MOVE")
                return
            _ok(await self._client.uid("copy", uid, self._mailbox.move_to), "UID COPY")
            _ok(await self._client.uid("store", uid, "+FLAGS", "(\\Deleted \\Seen)"), "UID STORE")
            return
        _ok(await self._client.uid("store", uid, "+FLAGS", "(\\Seen)"), "UID STORE")

    async def mark_refused(self, uid: str) -> None:
        _ok(await self._client.uid("store", uid, "+FLAGS", "(\\Seen \\Flagged)"), "UID STORE")

    async def wait_for_new(self, timeout: float) -> None:
        if not (self._mailbox.idle and self._client.has_capability("IDLE")):
            await asyncio.sleep(timeout)
            return
        idle = await self._client.idle_start(timeout=timeout)
        try:
            await self._client.wait_server_push(timeout=timeout)
        except TimeoutError:
            pass
        finally:
            self._client.idle_done()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(idle, 10)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.logout(), 5)


def _ok(response: Any, command: str) -> Any:
    if getattr(response, "result", None) != "OK":
        raise ImapError(f"{command} refused: {getattr(response, 'result', '?')}")
    return response


async def connect_aioimaplib(mailbox: ImapMailbox) -> MailboxSession:
    return await AioImapSession.connect(mailbox)


# --------------------------------------------------------------------------- poller


class ImapPoller:
    """Polls one mailbox until stopped; an async context manager running a background task."""

    def __init__(
        self,
        mailbox: ImapMailbox,
        ingestor: EmailIngestor,
        *,
        connect: SessionFactory = connect_aioimaplib,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self.mailbox = mailbox
        self.ingestor = ingestor
        self._connect = connect
        self._sleep = sleep
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.failures = 0
        self.refused = 0

    async def poll_once(self, session: MailboxSession) -> int:
        """Publish every unseen message, marking each only after its publish was acknowledged."""
        count = 0
        route = Route(self.mailbox.tenant_id, self.mailbox.inbox)
        for uid in await session.unseen_uids():
            raw = await session.fetch(uid)
            if raw is None:
                log.warning("imap message vanished before fetch", mailbox=self.mailbox.name)
                continue
            try:
                await self.ingestor.ingest(raw, route=route, provider="imap", recipient=self.mailbox.address)
            except RecordTooLarge:
                # It can never be published: left in its folder, seen and flagged for a person,
                # so it neither blocks the mailbox nor comes back on every poll.
                log.warning("imap message too large to publish; flagged, left in place", mailbox=self.mailbox.name)
                await session.mark_refused(uid)
                self.refused += 1
                continue
            await session.mark_done(uid)
            count += 1
            self.published += 1
        return count

    async def run(self) -> None:
        """Connect, poll, wait, repeat; reconnect with exponential backoff after any failure."""
        backoff = self._backoff_initial
        while True:
            session: MailboxSession | None = None
            try:
                session = await self._connect(self.mailbox)
                backoff = self._backoff_initial
                while True:
                    await self.poll_once(session)
                    await session.wait_for_new(self.mailbox.poll_seconds)
            except asyncio.CancelledError:
                raise
            except (
                PublishError,
                BlobStoreError,
                ImapError,
                OSError,
                TimeoutError,
                aioimaplib.Abort,
                aioimaplib.Error,
            ) as exc:
                self.failures += 1
                log.warning(
                    "imap poll failed; reconnecting",
                    mailbox=self.mailbox.name,
                    error=type(exc).__name__,
                    retry_in=backoff,
                )
            except Exception:
                # A bug must not end the polling of this mailbox for good: log it, back off, go on.
                self.failures += 1
                log.exception("imap poll failed unexpectedly", mailbox=self.mailbox.name, retry_in=backoff)
            finally:
                if session is not None:
                    await session.close()
            await self._sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self.run(), name=f"imap-{self.mailbox.name}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
