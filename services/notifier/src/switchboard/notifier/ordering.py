"""Per-key sequencing: work items with the same key run one after another, in arrival order;
items with different keys run concurrently."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class KeyedSerializer:
    """``await run(key, fn)``: ``fn`` starts only after every earlier call with ``key`` finished.

    A key that is free costs no future: one is made only for a call that has to wait, and the
    call finishing hands the key to the oldest waiter (first come, first served). A waiter
    cancelled before its turn leaves the queue; one cancelled just as its turn came passes the
    turn on.
    """

    def __init__(self) -> None:
        self._waiting: dict[Hashable, deque[asyncio.Future[None]]] = {}  # busy keys -> their waiters

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[R]]) -> R:
        queue = self._waiting.get(key)
        if queue is None:
            self._waiting[key] = deque()
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue.append(turn)
            try:
                await turn
            except BaseException:
                if turn.done() and not turn.cancelled():
                    self._hand_on(key)  # the turn came, but this call will not use it
                elif turn in queue:
                    queue.remove(turn)
                raise
        try:
            return await fn()
        finally:
            self._hand_on(key)

    def _hand_on(self, key: Hashable) -> None:
        queue = self._waiting[key]
        while queue:
            turn = queue.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        del self._waiting[key]

    def __len__(self) -> int:
        return len(self._waiting)


async def run_ordered(items: Sequence[T], key: Callable[[T], Hashable], fn: Callable[[T], Awaitable[R]]) -> list[R]:
    """Run ``fn`` over ``items``: sequential within a key (in list order), concurrent across keys.

    Results come back in the order of ``items``. The first exception is raised after every
    started call has finished.
    """
    serializer = KeyedSerializer()

    async def one(item: T) -> R:
        return await serializer.run(key(item), lambda: fn(item))

    results = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]
