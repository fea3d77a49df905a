"""Garbage-collector settings for the service, applied once the application has started.

A webhook request allocates a few hundred container objects (aiohttp's request and
response, asyncio futures, pydantic models, aiokafka's batch entries) and frees nearly all
of them by reference counting. With CPython's default first-generation threshold of 700,
the requests in flight start a collection every few requests, and every tenth of those a
wider one over a heap of about 100,000 long-lived objects (aiohttp, pydantic, aiokafka,
prometheus, the parsers' tables). Measured on the webhook path (``bench/bench_ingest.py``),
that was 80 to 100 microseconds of CPU per message, about an eighth of it.

:func:`tune_gc` freezes what exists after startup (imported modules, the application, the
producer: never garbage, so no collection walks them again) and raises the
first-generation threshold. Cyclic garbage is still collected, in larger batches. The same
approach as ingest_social's ``gc_tuning.py``; both belong in ``switchboard.common.runtime``.
"""

from __future__ import annotations

import gc

from aiohttp import web

__all__ = ["DEFAULT_GEN0_THRESHOLD", "tune_gc"]

DEFAULT_GEN0_THRESHOLD = 10_000


def tune_gc(app: web.Application, gen0_threshold: int = DEFAULT_GEN0_THRESHOLD) -> None:
    """On ``app``'s startup (after the startup hooks added before this one): freeze, then raise the threshold.

    The cleanup puts the threshold back and unfreezes (an application run inside a test
    leaves the collector as it found it). ``gen0_threshold`` 0 leaves the collector alone.
    """
    if gen0_threshold < 0:
        raise ValueError("gen0_threshold must be at least 0")
    if gen0_threshold == 0:
        return
    before: list[tuple[int, int, int]] = []

    async def on_startup(_app: web.Application) -> None:
        gc.collect()
        gc.freeze()
        gen0, gen1, gen2 = gc.get_threshold()
        before.append((gen0, gen1, gen2))
        gc.set_threshold(max(gen0, gen0_threshold), gen1, gen2)

    async def on_cleanup(_app: web.Application) -> None:
        if before:
            gc.set_threshold(*before.pop())
            gc.unfreeze()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
