"""Each service SIGKILLed in the middle of a stream and restarted: nothing acknowledged is lost or doubled.

A stream of mail over SMTP and signed WhatsApp webhooks, each message a new customer, is sent
like a provider would: every message is retried until the ingest acknowledges it (250 or 2xx).
One of the four services is killed with SIGKILL a third of the way in and started again while
the stream goes on. At the end every acknowledged message must have reached exactly one agent,
exactly once, at an idempotent receiver (deliveries deduplicated by their ``webhook-id``, the
dispatch id), and no conversation may have been assigned to two agents.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections import defaultdict
from collections.abc import Iterator

import aiohttp
import aiosmtplib
import pytest

from switchboard.common.events import DispatchKind
from switchboard.common.testing import eventually, unique_prefix

from .kit import (
    Receivers,
    Stack,
    build_stack,
    customer_email,
    dispatches,
    launched,
    post_whatsapp,
    put_agent,
    send_email,
    wait_agents,
    webhook_endpoint,
    whatsapp_body,
)

pytestmark = [pytest.mark.broker, pytest.mark.e2e, pytest.mark.slow]

COUNT = 300  # half mail, half WhatsApp
IN_FLIGHT = 8
AGENTS = ("amy", "bob", "cyd")
CASES = {"ingest_email": "kmail", "ingest_social": "ksocial", "notifier": "knotifier", "router": "krouter"}
TOKEN = re.compile(r"\bmsg-(\d+)\b")


def rules(_receiver: str) -> str:
    queue = "{id: all, match: {}, strategy: least_loaded}"
    tenants = "\n".join(f"  {tenant}:\n    queues: [{queue}]" for tenant in CASES.values())
    return f"version: 1\ntenants:\n{tenants}\n"


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = build_stack(
        bootstrap=kafka_bootstrap,
        prefix=unique_prefix("e2e-kill"),
        workdir=tmp_path_factory.mktemp("sigkill"),
        rules_yaml=rules,
        whatsapp_tenants=CASES.values(),
        email_tenants=CASES.values(),
    )
    with launched(built) as started:
        yield started


async def _send_until_acknowledged(http: aiohttp.ClientSession, stack: Stack, tenant: str, n: int) -> None:
    """Send message ``n`` as a provider would: again and again until the ingest acknowledges it."""
    text = f"Order problem, reference msg-{n}"
    if n % 2:
        body = whatsapp_body(wa_id=f"4477009{n:05d}", name=f"Customer {n}", wamid=f"wamid.{tenant}.{n}", text=text)
    else:
        mail = customer_email(
            tenant=tenant,
            sender=f"customer{n}@customer.example",
            subject=f"Order problem msg-{n}",
            text=text,
            message_id=f"{tenant}.{n}@customer.example",
            verified=False,
        )
    async with asyncio.timeout(90):
        while True:
            try:
                if n % 2:
                    status = await post_whatsapp(http, stack, tenant, body)
                    if status == 200:
                        return
                    assert status in (408, 429) or status >= 500, f"message {n} refused for good: {status}"
                elif await send_email(stack, mail) == 250:
                    return
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code >= 500:
                    raise AssertionError(f"message {n} refused for good: {exc.code}") from exc
            except (aiohttp.ClientError, aiosmtplib.SMTPException, OSError):
                pass  # the service is down or went away: not acknowledged, so the provider sends again
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("victim", list(CASES))
async def test_sigkill_mid_stream_delivers_every_acknowledged_message_exactly_once(
    victim: str, stack: Stack, receivers: Receivers, http: aiohttp.ClientSession
) -> None:
    tenant = CASES[victim]
    for agent in AGENTS:
        await put_agent(
            http,
            stack,
            tenant,
            agent,
            skills={},
            capacity={"email": 1000, "whatsapp": 1000},
            endpoints=[webhook_endpoint(stack, f"agent/{agent}")],
        )
    await wait_agents(http, stack, tenant, AGENTS)

    hooks = receivers.webhooks
    acknowledged: set[int] = set()
    killed = asyncio.Event()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(COUNT):
        queue.put_nowait(n)

    async def sender() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            if n >= COUNT // 2:
                await killed.wait()  # the second half of the stream goes in after the kill
            await _send_until_acknowledged(http, stack, tenant, n)
            acknowledged.add(n)

    def mid_stream() -> bool:
        """Ingest: while requests are in flight; router and notifier: while they are delivering."""
        if victim.startswith("ingest"):
            return len(acknowledged) >= COUNT // 3
        return len(hooks.of(tenant, kind="assignment")) >= COUNT // 4

    senders = [asyncio.create_task(sender()) for _ in range(IN_FLIGHT)]
    try:
        await eventually(mid_stream, timeout=60)
        process = stack.services[victim].process
        stack.services[victim].kill()
        assert process is not None
        assert process.returncode == -signal.SIGKILL
        stack.services[victim].start()
        killed.set()
        await asyncio.gather(*senders)
    finally:
        for task in senders:
            task.cancel()
    assert acknowledged == set(range(COUNT))
    await asyncio.to_thread(stack.wait_ready, [victim], 90)

    def delivered() -> dict[int, set[str]]:
        """Message number -> the distinct assignment dispatches (webhook-ids) that carried it."""
        found: dict[int, set[str]] = defaultdict(set)
        for d in hooks.of(tenant, kind="assignment"):
            match = TOKEN.search(d.conversation.get("preview") or "")
            assert match is not None, "an assignment without a message of the stream"
            found[int(match.group(1))].add(d.webhook_id)
        return found

    await eventually(lambda: set(delivered()) >= acknowledged, timeout=120)
    # exactly once: one assignment per message, to one agent, one conversation each
    by_message = delivered()
    doubled = {
        n: sorted((hooks.deliveries[i].conversation_id, hooks.deliveries[i].agent_id) for i in ids)
        for n, ids in by_message.items()
        if len(ids) != 1
    }
    assert doubled == {}, "messages assigned more than once: number -> [(conversation, agent), ...]"
    conversations = {hooks.deliveries[next(iter(ids))].conversation_id for ids in by_message.values()}
    assert len(conversations) == COUNT
    assert all(d.path == f"agent/{d.agent_id}" and d.agent_id in AGENTS for d in hooks.of(tenant))
    assert hooks.rejected == 0
    agents_at_receiver: dict[str, set[str | None]] = defaultdict(set)
    for d in hooks.of(tenant, kind="assignment"):
        agents_at_receiver[d.conversation_id].add(d.agent_id)
    assert {c: a for c, a in agents_at_receiver.items() if len(a) != 1} == {}
    assert stack.logged(["@customer.example", "Order problem"]) == {}  # no address, no message text
    # and the router never assigned a conversation twice, delivered or not
    agents_of: dict[str, set[str | None]] = defaultdict(set)
    for dispatch in await dispatches(stack, tenant):
        if dispatch.kind is DispatchKind.ASSIGNMENT:
            agents_of[dispatch.conversation.conversation_id].add(dispatch.agent_id)
    assert len(agents_of) == COUNT
    assert {c: a for c, a in agents_of.items() if len(a) != 1} == {}
