"""The collector settings the service applies on startup, and puts back on cleanup."""

from __future__ import annotations

import gc

import pytest
from aiohttp import web

from switchboard.common.events import InboundMessage
from switchboard.common.runtime import running_app
from switchboard.ingest_email.app import build_app
from switchboard.ingest_email.gc_tuning import tune_gc
from switchboard.ingest_email.settings import IngestEmailSettings


class NullPublisher:
    async def publish(self, record: InboundMessage) -> None:
        return None


async def test_startup_freezes_and_raises_the_threshold_cleanup_restores() -> None:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    app = web.Application()
    tune_gc(app, 12_345)
    assert gc.get_threshold() == threshold  # nothing happens before startup
    async with running_app(app):
        assert gc.get_threshold() == (12_345, threshold[1], threshold[2])
        assert gc.get_freeze_count() > frozen
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == frozen


async def test_zero_leaves_the_collector_alone_and_negative_is_refused() -> None:
    threshold = gc.get_threshold()
    app = web.Application()
    tune_gc(app, 0)
    async with running_app(app):
        assert gc.get_threshold() == threshold
    with pytest.raises(ValueError, match="at least 0"):
        tune_gc(web.Application(), -1)


@pytest.mark.parametrize("configured", [20_000, 0])
async def test_the_service_applies_its_setting(configured: int) -> None:
    threshold = gc.get_threshold()
    settings = IngestEmailSettings(smtp_enabled=False, gc_gen0_threshold=configured, sender_verify_dkim=False)
    app = build_app(settings, publisher=NullPublisher())
    async with running_app(app):
        assert gc.get_threshold()[0] == (configured or threshold[0])
    assert gc.get_threshold() == threshold
