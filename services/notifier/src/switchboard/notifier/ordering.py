"""Per-key sequencing: work items with the same key run one after another, in arrival order;
items with different keys run concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class KeyedSerializer:
    """``await run(key, fn)``: ``fn`` starts only after every earlier call with ``key`` finished."""

    def __init__(self) -> None:
        self._tails: dict[Hashable, asyncio.Future[None]] = {}

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[R]]) -> R:
        loop = asyncio.get_running_loop()
        previous = self._tails.get(key)
        mine: asyncio.Future[None] = loop.create_future()
        self._tails[key] = mine
        try:
            if previous is not None:
                await asyncio.shield(previous)
            return await fn()
        finally:
            if previous is not None and not previous.done():  # cancelled while waiting: keep the chain
                previous.add_done_callback(lambda _f: mine.set_result(None))
            else:
                mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]

    def __len__(self) -> int:
        return len(self._tails)


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
