"""Fixtures of the end-to-end tests: each module starts its own stack (see ``kit.launched``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from .kit import Receivers, Stack, running_receivers


@pytest.fixture
async def receivers(stack: Stack) -> AsyncIterator[Receivers]:
    """The webhook receiver and the agents' mailbox, for this test only."""
    async with running_receivers(stack) as started:
        yield started


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session
