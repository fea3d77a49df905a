"""The IMAP poller's logic with a fake mailbox session, and the aioimaplib response parsing."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from switchboard.common.events import InboundMessage
from switchboard.common.testing import eventually
from switchboard.ingest_email.imap import ImapError, ImapMailbox, ImapPoller, fetched_message, search_uids
from switchboard.ingest_email.ingest import EmailIngestor
from switchboard.ingest_email.normalize import NormalizeLimits
from switchboard.ingest_email.publish import PublishError
from switchboard.ingest_email.record_size import RecordTooLarge
from switchboard.ingest_email.routing import Route

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MAILBOX = ImapMailbox(
    name="acme-support",
    host="imap.test",
    username="u",
    password="p",
    tenant_id="acme",
    address="support+tok9@acme.example",
    inbox="support",
)
ROUTE = Route("acme", "support")


def raw(n: int) -> bytes:
    return f"From: c{n}@customer.example\r\nMessage-ID: <m{n}@customer.example>\r\n\r\nbody {n}\r\n".encode()


class FakePublisher:
    def __init__(
        self, fail_on: set[int] | None = None, *, too_large_on: set[int] | None = None, bug_on: set[int] | None = None
    ) -> None:
        self.records: list[InboundMessage] = []
        self.fail_on = fail_on or set()
        self.too_large_on = too_large_on or set()
        self.bug_on = bug_on or set()
        self.calls = 0

    async def publish(self, record: InboundMessage, encoded: bytes) -> None:
        self.calls += 1
        if self.calls in self.fail_on:
            raise PublishError("broker down")
        if self.calls in self.too_large_on:
            raise RecordTooLarge("over the broker's limit")
        if self.calls in self.bug_on:
            raise KeyError("a bug")
        self.records.append(record)


class FakeSession:
    """A mailbox: ``unseen`` maps uid -> raw message; marking removes it."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.closed = False

    async def unseen_uids(self) -> list[str]:
        if self.server.drop_connection:
            self.server.drop_connection = False
            raise ConnectionResetError("connection lost")
        return sorted(self.server.unseen)

    async def fetch(self, uid: str) -> bytes | None:
        return self.server.unseen.get(uid)

    async def mark_done(self, uid: str) -> None:
        self.server.marked.append(uid)
        del self.server.unseen[uid]

    async def mark_refused(self, uid: str) -> None:
        self.server.refused.append(uid)
        del self.server.unseen[uid]

    async def wait_for_new(self, timeout: float) -> None:
        self.server.waits.append(timeout)
        if len(self.server.waits) >= self.server.stop_after_waits:
            raise asyncio.CancelledError
        await asyncio.sleep(0)

    async def close(self) -> None:
        self.closed = True


class FakeServer:
    def __init__(self, messages: dict[str, bytes]) -> None:
        self.unseen = dict(messages)
        self.marked: list[str] = []
        self.refused: list[str] = []
        self.waits: list[float] = []
        self.sessions: list[FakeSession] = []
        self.refuse_connects = 0
        self.drop_connection = False
        self.stop_after_waits = 1

    async def connect(self, mailbox: ImapMailbox) -> FakeSession:
        if self.refuse_connects:
            self.refuse_connects -= 1
            raise ImapError("LOGIN refused: NO")
        session = FakeSession(self)
        self.sessions.append(session)
        return session


async def test_publishes_then_marks_each_message() -> None:
    server = FakeServer({"1": raw(1), "2": raw(2)})
    publisher = FakePublisher()
    poller = ImapPoller(MAILBOX, EmailIngestor(publisher, clock=lambda: NOW), connect=server.connect)
    session = await server.connect(MAILBOX)
    assert await poller.poll_once(session) == 2
    assert server.marked == ["1", "2"]
    assert [r.provider_message_id for r in publisher.records] == ["m1@customer.example", "m2@customer.example"]
    first = publisher.records[0]
    assert (first.tenant_id, first.inbox, first.provider) == ("acme", "support", "imap")
    assert first.reply_token == "tok9"
    assert first.recipient == "support@acme.example"


async def test_broker_failure_leaves_message_unseen_and_it_is_retried() -> None:
    server = FakeServer({"1": raw(1), "2": raw(2)})
    server.stop_after_waits = 1
    publisher = FakePublisher(fail_on={2})  # the second publish (uid 2) fails once
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    poller = ImapPoller(
        MAILBOX,
        EmailIngestor(publisher, clock=lambda: NOW),
        connect=server.connect,
        sleep=sleep,
        backoff_initial=0.5,
    )
    with pytest.raises(asyncio.CancelledError):
        await poller.run()
    assert server.marked == ["1", "2"]  # uid 2 was marked only in the second session
    assert [r.provider_message_id for r in publisher.records] == ["m1@customer.example", "m2@customer.example"]
    assert len(server.sessions) == 2
    assert all(s.closed for s in server.sessions)
    assert sleeps == [0.5]
    assert poller.failures == 1


async def test_a_message_too_large_to_publish_is_flagged_and_the_next_one_goes_on() -> None:
    server = FakeServer({"1": raw(1), "2": raw(2)})
    publisher = FakePublisher(too_large_on={1})
    poller = ImapPoller(MAILBOX, EmailIngestor(publisher, clock=lambda: NOW), connect=server.connect)
    session = await server.connect(MAILBOX)
    assert await poller.poll_once(session) == 1
    assert (server.refused, server.marked) == (["1"], ["2"])  # not retried on every poll, not blocking
    assert [r.provider_message_id for r in publisher.records] == ["m2@customer.example"]
    assert await poller.poll_once(session) == 0
    assert poller.refused == 1


async def test_an_unexpected_error_does_not_end_the_polling() -> None:
    server = FakeServer({"1": raw(1)})
    publisher = FakePublisher(bug_on={1})
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    poller = ImapPoller(
        MAILBOX, EmailIngestor(publisher, clock=lambda: NOW), connect=server.connect, sleep=sleep, backoff_initial=0.5
    )
    with pytest.raises(asyncio.CancelledError):
        await poller.run()
    assert server.marked == ["1"]  # published by the second session
    assert (poller.failures, sleeps, len(server.sessions)) == (1, [0.5], 2)


async def test_reconnects_with_exponential_backoff() -> None:
    server = FakeServer({"1": raw(1)})
    server.refuse_connects = 3
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    poller = ImapPoller(
        MAILBOX,
        EmailIngestor(FakePublisher(), clock=lambda: NOW),
        connect=server.connect,
        sleep=sleep,
        backoff_initial=1.0,
        backoff_max=3.0,
    )
    with pytest.raises(asyncio.CancelledError):
        await poller.run()
    assert sleeps == [1.0, 2.0, 3.0]
    assert server.marked == ["1"]
    assert server.waits == [MAILBOX.poll_seconds]


async def test_dropped_connection_is_survived() -> None:
    server = FakeServer({"1": raw(1)})
    server.drop_connection = True
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    poller = ImapPoller(MAILBOX, EmailIngestor(FakePublisher(), clock=lambda: NOW), connect=server.connect, sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await poller.run()
    assert server.marked == ["1"]
    assert len(server.sessions) == 2
    assert slept == [1.0]


async def test_context_manager_runs_and_stops() -> None:
    server = FakeServer({"1": raw(1)})
    server.stop_after_waits = 10**9
    poller = ImapPoller(MAILBOX, EmailIngestor(FakePublisher(), clock=lambda: NOW), connect=server.connect)
    async with poller:
        for _ in range(100):
            if server.marked:
                break
            await asyncio.sleep(0)
    assert server.marked == ["1"]
    assert server.sessions[0].closed


def test_search_uids_parsing() -> None:
    assert search_uids([b"3 7 12", b"SEARCH completed (0.001 + 0.000 secs)."]) == ["3", "7", "12"]
    assert search_uids([b"SEARCH 4 5", b"Search done"]) == ["4", "5"]
    assert search_uids([b"", b"SEARCH completed"]) == []


def test_fetched_message_parsing() -> None:
    body = bytearray(b"From: a@x.example\r\n\r\nhi\r\n")
    assert fetched_message([b"1 FETCH (UID 7 BODY[] {25}", body, b")", b"FETCH completed."]) == bytes(body)
    assert fetched_message([b"1 FETCH (UID 7 BODY[] {25}", b"From: a@x.example", b")"]) == b"From: a@x.example"
    assert fetched_message([b"FETCH completed."]) is None


# --------------------------------------------------------------------------- over a real socket


async def test_aioimaplib_session_against_a_real_server(imap_server: Any) -> None:
    imap_server.add(raw(1))
    imap_server.add(raw(2))
    publisher = FakePublisher()
    mailbox = replace(MAILBOX, host="127.0.0.1", port=imap_server.port, use_ssl=False, poll_seconds=5.0)
    async with ImapPoller(mailbox, EmailIngestor(publisher, clock=lambda: NOW)):
        await eventually(lambda: len(publisher.records) == 2)
        await eventually(lambda: any(c.endswith("IDLE") for c in imap_server.commands))
        imap_server.add(raw(3))  # pushed to the idling client as EXISTS
        await eventually(lambda: len(publisher.records) == 3)
    assert [r.provider_message_id for r in publisher.records] == [f"m{i}@customer.example" for i in (1, 2, 3)]
    assert all("\\Seen" in m.flags for m in imap_server.messages)
    fetches = [c for c in imap_server.commands if "FETCH" in c.upper()]
    assert fetches
    assert all("BODY.PEEK[]" in c for c in fetches)


async def test_aioimaplib_session_moves_when_configured(imap_server: Any) -> None:
    imap_server.add(raw(1))
    publisher = FakePublisher()
    mailbox = replace(MAILBOX, host="127.0.0.1", port=imap_server.port, use_ssl=False, move_to="Processed", idle=False)
    async with ImapPoller(mailbox, EmailIngestor(publisher, clock=lambda: NOW)):
        await eventually(lambda: imap_server.messages[0].folder == "Processed")
    assert len(publisher.records) == 1


async def test_aioimaplib_flags_a_message_that_cannot_be_published(imap_server: Any) -> None:
    imap_server.add(b"Subject: " + b"s" * 2000 + b"\r\n" + raw(1))  # a subject is never cut to fit
    imap_server.add(raw(2))
    publisher = FakePublisher()
    mailbox = replace(MAILBOX, host="127.0.0.1", port=imap_server.port, use_ssl=False, idle=False)
    _, plain = await EmailIngestor(publisher, clock=lambda: NOW).normalize(
        raw(2), route=ROUTE, provider="imap", recipient=MAILBOX.address
    )
    limits = NormalizeLimits(max_record_bytes=len(plain) + 200)  # room for the second, not the first
    async with ImapPoller(mailbox, EmailIngestor(publisher, clock=lambda: NOW, limits=limits)):
        await eventually(lambda: all("\\Seen" in m.flags for m in imap_server.messages))
    first, second = imap_server.messages
    assert first.flags == {"\\Seen", "\\Flagged"}  # left in the mailbox for a person
    assert (first.folder, second.flags) == ("INBOX", {"\\Seen"})
    assert [r.provider_message_id for r in publisher.records] == ["m2@customer.example"]


async def test_aioimaplib_wrong_password_is_retried_not_raised(imap_server: Any) -> None:
    sleeps: list[float] = []
    gate = asyncio.Event()

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) >= 2:
            gate.set()
            await asyncio.Event().wait()  # park here until the poller is stopped

    mailbox = replace(MAILBOX, host="127.0.0.1", port=imap_server.port, use_ssl=False, password="wrong")
    poller = ImapPoller(mailbox, EmailIngestor(FakePublisher(), clock=lambda: NOW), sleep=sleep)
    async with poller:
        async with asyncio.timeout(10):
            await gate.wait()
    assert sleeps == [1.0, 2.0]
    assert poller.failures == 2
