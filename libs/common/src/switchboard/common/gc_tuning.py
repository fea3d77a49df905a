"""Garbage-collector settings for a running service (``SWITCHBOARD_GC_GEN0_THRESHOLD``).

A request or a record allocates a few hundred container objects (aiohttp's request and
response, asyncio futures, pydantic models, aiokafka's batch entries) and frees nearly all
of them by reference counting. With CPython's default first-generation threshold of 700,
the work in flight starts a collection every few requests, every tenth of those a middle
one and now and then a full one over the whole heap (some 100,000 long-lived objects of
aiohttp, pydantic, aiokafka, prometheus and the parsers' tables). Measured under the
webhook benchmarks, that was 23 to 40 us of CPU per request in ingest_social (2 us after)
and 80 to 100 us per message in ingest_email.

:func:`tune_gc` freezes what exists once the application has started (imported modules,
the application, its clients: never garbage, so no collection walks them again) and
raises the first-generation threshold. Cyclic garbage is still collected, in larger
batches. The collector is process-wide: the first tuned application to start saves its
settings and the last one to stop puts them back.
"""

from __future__ import annotations

import gc

from aiohttp import web

__all__ = ["DEFAULT_GEN0_THRESHOLD", "tune_gc"]

DEFAULT_GEN0_THRESHOLD = 10_000

_tuned: list[web.Application] = []
"""Applications of this process running with the collector tuned (the collector is one per process)."""
_saved: list[tuple[int, int, int]] = []
"""The thresholds before the first of them started."""


def tune_gc(app: web.Application, gen0_threshold: int = DEFAULT_GEN0_THRESHOLD) -> None:
    """On ``app``'s startup: collect, freeze the heap, raise the first-generation threshold.

    Registered as a startup hook, it runs after the application's cleanup contexts (the
    clients they start) and the hooks added before it. ``gen0_threshold`` 0 leaves the
    collector alone; a threshold already higher is kept.
    """
    if gen0_threshold < 0:
        raise ValueError("gen0_threshold must be at least 0")
    if gen0_threshold == 0:
        return

    async def on_startup(_app: web.Application) -> None:
        if not _tuned:
            _saved.append(gc.get_threshold())
        _tuned.append(app)
        gc.collect()
        gc.freeze()
        gen0, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(max(gen0, gen0_threshold), gen1, gen2)

    async def on_cleanup(_app: web.Application) -> None:
        if app not in _tuned:
            return  # its startup never ran
        _tuned.remove(app)
        if not _tuned:
            gc.set_threshold(*_saved.pop())
            gc.unfreeze()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
