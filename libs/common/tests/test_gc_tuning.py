"""tune_gc: the startup heap frozen and a higher first-generation threshold while an app runs, undone after."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from aiohttp import web

from switchboard.common.gc_tuning import tune_gc
from switchboard.common.runtime import create_app, running_app
from switchboard.common.settings import ServiceSettings


@pytest.fixture
def collector() -> Iterator[tuple[int, int, int]]:
    """The collector's settings before the test, put back after it whatever happened."""
    before = gc.get_threshold()
    gc.unfreeze()
    yield before
    gc.set_threshold(*before)
    gc.unfreeze()


async def test_the_app_runs_with_the_heap_frozen_and_the_threshold_raised(collector: tuple[int, int, int]) -> None:
    app = web.Application()
    tune_gc(app, 12_345)
    assert gc.get_threshold() == collector  # nothing changes before the app starts
    async with running_app(app):
        assert gc.get_threshold() == (12_345, collector[1], collector[2])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == collector
    assert gc.get_freeze_count() == 0


async def test_two_apps_in_one_process_the_last_to_stop_puts_the_collector_back(
    collector: tuple[int, int, int],
) -> None:
    first, second = web.Application(), web.Application()
    tune_gc(first, 12_345)
    tune_gc(second, 20_000)
    first_run, second_run = running_app(first), running_app(second)
    await first_run.__aenter__()
    await second_run.__aenter__()
    assert gc.get_threshold()[0] == 20_000
    await first_run.__aexit__(None, None, None)  # not in the order they started
    assert gc.get_threshold()[0] == 20_000
    assert gc.get_freeze_count() > 0
    await second_run.__aexit__(None, None, None)
    assert gc.get_threshold() == collector
    assert gc.get_freeze_count() == 0


async def test_zero_leaves_the_collector_alone(collector: tuple[int, int, int]) -> None:
    app = web.Application()
    tune_gc(app, 0)
    async with running_app(app):
        assert gc.get_threshold() == collector
        assert gc.get_freeze_count() == 0


def test_a_negative_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="gen0_threshold"):
        tune_gc(web.Application(), -1)


@pytest.mark.parametrize("configured", [20_000, 0])
async def test_every_service_app_applies_its_setting(collector: tuple[int, int, int], configured: int) -> None:
    app = create_app(ServiceSettings(gc_gen0_threshold=configured))
    async with running_app(app):
        assert gc.get_threshold()[0] == (configured or collector[0])
    assert gc.get_threshold() == collector
