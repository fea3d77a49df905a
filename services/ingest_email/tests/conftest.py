"""Fixtures of the email ingest tests.

``imap_server``: a small IMAP4rev1 server, the commands the poller uses, over a real socket.

CAPABILITY, LOGIN, SELECT, UID SEARCH (UNSEEN), UID FETCH (BODY.PEEK[]), UID STORE
(+FLAGS), UID MOVE, IDLE/DONE (pushing ``EXISTS`` when a message is added), LOGOUT.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest


@dataclass
class StoredMessage:
    uid: int
    raw: bytes
    flags: set[str] = field(default_factory=set)
    folder: str = "INBOX"


class TinyImapServer:
    def __init__(self, *, user: str = "u", password: str = "p", idle: bool = True) -> None:  # noqa: S107
        self.user, self.password = user, password
        self.capabilities = "IMAP4rev1 UIDPLUS MOVE" + (" IDLE" if idle else "")
        self.messages: list[StoredMessage] = []
        self.commands: list[str] = []
        self._idlers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    def add(self, raw: bytes) -> int:
        uid = max((m.uid for m in self.messages), default=0) + 1
        self.messages.append(StoredMessage(uid, raw))
        for writer in list(self._idlers):
            writer.write(f"* {len(self.messages)} EXISTS\r\n".encode())
        return uid

    def inbox(self) -> list[StoredMessage]:
        return [m for m in self.messages if m.folder == "INBOX"]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._idlers):
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK IMAP4rev1 tiny server ready\r\n")
        try:
            while line := await reader.readline():
                text = line.decode().rstrip("\r\n")
                self.commands.append(text)
                tag, _, rest = text.partition(" ")
                if not self._handle(tag, rest, writer):
                    break
                if rest.upper() == "IDLE":
                    self._idlers.add(writer)
                    done = await reader.readline()
                    self._idlers.discard(writer)
                    if done.strip().upper() != b"DONE":
                        break
                    writer.write(f"{tag} OK IDLE terminated\r\n".encode())
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._idlers.discard(writer)
            writer.close()

    def _handle(self, tag: str, rest: str, writer: asyncio.StreamWriter) -> bool:
        command = rest.split(" ", 1)[0].upper()
        args = rest[len(command) :].strip()
        out = writer.write
        if command == "CAPABILITY":
            out(f"* CAPABILITY {self.capabilities}\r\n{tag} OK CAPABILITY completed\r\n".encode())
        elif command == "LOGIN":
            user, password = (a.strip('"') for a in args.split(" ", 1))
            ok = (user, password) == (self.user, self.password)
            out(f"{tag} {'OK' if ok else 'NO'} LOGIN\r\n".encode())
        elif command == "SELECT":
            out(f"* {len(self.inbox())} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n".encode())
            out(f"{tag} OK [READ-WRITE] SELECT completed\r\n".encode())
        elif command == "IDLE":
            out(b"+ idling\r\n")
        elif command == "LOGOUT":
            out(f"* BYE logging out\r\n{tag} OK LOGOUT completed\r\n".encode())
            return False
        elif command == "UID":
            self._uid(tag, args, writer)
        else:
            out(f"{tag} BAD unknown command\r\n".encode())
        return True

    def _uid(self, tag: str, args: str, writer: asyncio.StreamWriter) -> None:
        sub, _, rest = args.partition(" ")
        sub = sub.upper()
        out = writer.write
        if sub == "SEARCH":
            uids = [str(m.uid) for m in self.inbox() if "\\Seen" not in m.flags]
            out(f"* SEARCH {' '.join(uids)}\r\n{tag} OK SEARCH completed\r\n".encode())
            return
        uid_text, _, rest = rest.partition(" ")
        found = [m for m in self.inbox() if str(m.uid) == uid_text]
        if sub == "FETCH" and found:
            msg = found[0]
            seq = self.inbox().index(msg) + 1
            out(f"* {seq} FETCH (UID {msg.uid} BODY[] {{{len(msg.raw)}}}\r\n".encode() + msg.raw + b")\r\n")
            if "PEEK" not in rest.upper():
                msg.flags.add("\\Seen")
        elif sub == "STORE" and found:
            flags = re.findall(r"\\\w+", rest)
            found[0].flags.update(flags)
            out(f"* 1 FETCH (UID {found[0].uid} FLAGS ({' '.join(sorted(found[0].flags))}))\r\n".encode())
        elif sub == "MOVE" and found:
            found[0].folder = rest.strip().strip('"')
        out(f"{tag} OK UID {sub} completed\r\n".encode())


@pytest.fixture
async def imap_server() -> AsyncIterator[TinyImapServer]:
    server = TinyImapServer()
    await server.start()
    yield server
    await server.stop()
