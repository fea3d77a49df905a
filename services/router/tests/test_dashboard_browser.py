"""The operator dashboard in a real headless Chromium (Debian's), driven by Playwright.

The router runs in-process on the real broker; the test creates an agent through the API,
sends customer messages to ``inbound.v1``, opens ``/dashboard`` and reads what the page
shows, then accepts the offer through the API and watches the page change without a reload.

Playwright drives the system Chromium (``SWITCHBOARD_CHROMIUM``, default
``/usr/bin/chromium``); ``playwright install`` is never needed.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import (
    BrowserContext,
    ConsoleMessage,
    Error,
    Locator,
    Page,
    Response,
    async_playwright,
    expect,
)

from switchboard.common.events import Dispatch, DispatchKind
from switchboard.common.kafka import RecordProducer
from switchboard.common.settings import KafkaSettings
from switchboard.common.topics import Topics, ensure_topics
from switchboard.router.testing import inbound

from .test_service_broker import records, router, settings_for  # type: ignore[import-not-found]

CHROMIUM_ENV = "SWITCHBOARD_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# How long the page gets to show a change (every expect below waits up to this): the dashboard
# polls every second, the router applies a record within a few fetches. A bound, not a speed check.
SHOWS_WITHIN_MS = 20_000
NONE = "\N{EN DASH}"  # what the dashboard shows for an empty value

RULES = """
version: 1
options: {sticky_window: 1d, reopen_window: 1d, offline_grace: 1m}
tenants:
  acme:
    sla_policies:
      standard:
        first_response: 1h
      watched:
        first_response: 1h
        escalations:
          - {name: nudge, target: first_response, at: 1s, action: notify_supervisor,
             supervisor: {kind: slack, target: CSUP}}
    queues:
      - id: billing
        match: {keywords: [invoice]}
        skills: {billing: 3}
        mode: offer
        offer_timeout: 10m
        sla_policy: standard
      - id: technical
        match: {keywords: [router]}
        skills: {networking: 5}
        sla_policy: watched
"""


class ChromiumMissing(Exception):
    """The system Chromium is not where the test looks for it."""


def chromium_executable(env: Mapping[str, str]) -> Path:
    """The Chromium binary to drive: ``SWITCHBOARD_CHROMIUM`` or Debian's ``/usr/bin/chromium``."""
    path = Path(env.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ChromiumMissing(
            f"no Chromium executable at {path}: install Debian's with `apt-get install -y chromium` "
            f"(as root), or point {CHROMIUM_ENV} at a Chromium binary. "
            "Do not run `playwright install`; the test drives the system browser."
        )
    return path


def test_a_missing_chromium_fails_with_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ChromiumMissing, match=r"apt-get install -y chromium") as raised:
        chromium_executable({CHROMIUM_ENV: str(tmp_path / "no-such-chromium")})
    assert str(tmp_path / "no-such-chromium") in str(raised.value)
    not_executable = tmp_path / "chromium"
    not_executable.write_text("#!/bin/sh\n")
    with pytest.raises(ChromiumMissing, match=CHROMIUM_ENV):
        chromium_executable({CHROMIUM_ENV: str(not_executable)})
    not_executable.chmod(0o755)
    assert chromium_executable({CHROMIUM_ENV: str(not_executable)}) == not_executable


@pytest.fixture
def chromium() -> Path:
    try:
        return chromium_executable(os.environ)
    except ChromiumMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture
async def browser(chromium: Path, tmp_path: Path) -> AsyncIterator[BrowserContext]:
    expect.set_options(timeout=SHOWS_WITHIN_MS)
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=chromium,
            args=list(CHROMIUM_ARGS),
            headless=True,
        )
        try:
            yield context
        finally:
            await context.close()


async def _until(probe: Callable[[], Awaitable[list[str]]], timeout: float = 20) -> list[str]:
    """The first non-empty answer of ``probe``, polled until ``timeout`` seconds passed."""
    try:
        async with asyncio.timeout(timeout):
            while not (found := await probe()):  # noqa: ASYNC110  # polling the router's HTTP API
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"nothing found within {timeout}s") from None
    return found


def _row(page: Page, table: str, **data: str) -> Locator:
    selector = "".join(f'[data-{name}="{value}"]' for name, value in data.items())
    return page.locator(f"#{table} tbody tr{selector}")


def _cells(row: Locator) -> Locator:
    return row.locator("td")


@pytest.mark.broker
@pytest.mark.browser
async def test_dashboard_shows_a_new_conversation_and_updates_when_it_is_accepted(
    kafka_settings: KafkaSettings, topic_prefix: str, tmp_path: Path, browser: BrowserContext
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    settings = settings_for(kafka_settings, topic_prefix, rules_file)
    async with (
        router(settings) as (_app, url),
        aiohttp.ClientSession() as http,
        RecordProducer(kafka_settings) as producer,
    ):
        agent = {
            "display_name": "Ann",
            "skills": {"billing": 7},
            "capacity": {"email": 2, "chat": 1},
            "presence": "available",
            "endpoints": [{"kind": "inbox", "target": "acme/ann"}],
        }
        async with http.put(f"{url}/v1/tenants/acme/agents/ann", json=agent) as answer:
            assert answer.status == 202

        await producer.send(
            topics.inbound,
            inbound(subject="Invoice 4711 is wrong", text="my invoice is wrong", handle="cust-billing"),
        )
        offer = (await records(kafka_settings.bootstrap, topics.dispatch, 1, Dispatch))[0]
        assert (offer.kind, offer.agent_id) == (DispatchKind.OFFER, "ann")
        billing_id = offer.conversation.conversation_id

        # nobody has the networking skill: this one waits in its queue and its SLA escalates
        await producer.send(
            topics.inbound,
            inbound(subject="Router keeps rebooting", text="my router reboots", handle="cust-tech"),
        )

        async def waiting_in_technical() -> list[str]:
            async with http.get(f"{url}/v1/tenants/acme/overview") as answer:
                overview = await answer.json() if answer.status == 200 else {"conversations": []}
            return [c["conversation_id"] for c in overview["conversations"] if c["queue_id"] == "technical"]

        [technical_id] = await _until(waiting_in_technical)

        page = await browser.new_page()
        problems: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                problems.append(f"console {message.type}: {message.text}")

        def on_page_error(error: Error) -> None:
            problems.append(f"page error: {error}")

        def on_response(response: Response) -> None:
            if response.status >= 400:
                problems.append(f"{response.status} for {response.url}")

        page.on("console", on_console)
        page.on("response", on_response)
        page.on("pageerror", on_page_error)
        loads: list[str] = []
        page.on("load", lambda p: loads.append(p.url))
        loaded = await page.goto(f"{url}/dashboard?tenant=acme")
        assert loaded is not None
        assert loaded.ok
        await expect(page).to_have_title("Switchboard router")
        await expect(page.locator("#tenant")).to_have_value("acme")

        # the conversation just sent in: subject, id, offered to ann in the billing queue, why
        conversation = _row(page, "conversations", conversation=billing_id)
        await expect(conversation).to_have_count(1)
        cells = _cells(conversation)
        await expect(cells.nth(0)).to_contain_text("Invoice 4711 is wrong")
        await expect(cells.nth(0)).to_contain_text(billing_id[:8])
        await expect(cells.nth(1)).to_have_text("offered")
        await expect(cells.nth(2)).to_have_text("email")
        await expect(cells.nth(3)).to_have_text("billing")
        await expect(cells.nth(4)).to_have_text("ann")
        await expect(cells.nth(5)).to_have_text(re.compile(r"^first response in \d+ min$"))
        why = cells.nth(6)
        await expect(why.locator(".decision")).to_have_text(re.compile(r"^offered: least loaded \(0/2 on email\)"))
        await expect(why.locator(".detail")).to_have_text(
            re.compile(r"^match: queue billing · step base · candidates: ann ✓ chosen: least loaded")
        )

        # queues: depth and oldest wait of the waiting one, the offer counted on billing
        billing = _cells(_row(page, "queues", queue="billing"))
        await expect(billing).to_have_text(["billing", "0", NONE, "1", "0"])
        technical = _cells(_row(page, "queues", queue="technical"))
        await expect(technical.nth(1)).to_have_text("1")
        await expect(technical.nth(2)).to_have_text(re.compile(r"^\d+ (s|min)$"))

        # the agent: presence and load per channel (the open offer holds one email slot)
        ann = _cells(_row(page, "agents", agent="ann"))
        await expect(ann.nth(0)).to_have_text("Ann (ann)")
        await expect(ann.nth(1)).to_have_text("available")
        await expect(ann.nth(2)).to_have_text("email 1/2, chat 0/1")
        await expect(ann.nth(3)).to_have_text("billing 7")

        # the waiting conversation and its escalation to the supervisor
        waiting = _cells(_row(page, "conversations", conversation=technical_id))
        await expect(waiting.nth(1)).to_have_text("queued")
        await expect(waiting.nth(3)).to_have_text("technical")
        await expect(waiting.nth(4)).to_have_text(NONE)
        # its explanation stays the routing decision, the escalation is listed apart
        await expect(waiting.nth(6).locator(".decision")).to_have_text(re.compile(r"^queued: .*no eligible agent"))
        await expect(waiting.nth(6).locator(".detail")).to_contain_text("candidates: none")
        escalation = _cells(_row(page, "escalations", conversation=technical_id))
        await expect(escalation.nth(2)).to_have_text("escalated")
        await expect(escalation.nth(4)).to_contain_text("nudge")

        # accept through the API: the same page (no reload) shows it assigned
        await page.evaluate("window.switchboardTestMarker = 'still the same page'")
        accept = {"agent_id": "ann", "offer_id": offer.offer_id}
        async with http.post(f"{url}/v1/tenants/acme/conversations/{billing_id}/accept", json=accept) as answer:
            assert answer.status == 202
        await expect(cells.nth(1)).to_have_text("assigned")
        await expect(cells.nth(4)).to_have_text("ann")
        await expect(why.locator(".decision")).to_have_text(re.compile(r"^assigned: "))
        await expect(billing).to_have_text(["billing", "0", NONE, "0", "1"])
        await expect(ann.nth(2)).to_have_text("email 1/2, chat 0/1")

        # a presence change shows up too, the assignment stays
        async with http.put(f"{url}/v1/tenants/acme/agents/ann/presence", json={"presence": "away"}) as answer:
            assert answer.status == 202
        await expect(ann.nth(1)).to_have_text("away")
        await expect(cells.nth(1)).to_have_text("assigned")
        assert await page.evaluate("window.switchboardTestMarker") == "still the same page"
        assert loads == [f"{url}/dashboard?tenant=acme"]
        assert problems == [], problems
