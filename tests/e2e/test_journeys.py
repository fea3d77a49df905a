"""The customer's journey through the four services as real processes (issue #8).

Mail over real SMTP and signed WhatsApp webhooks go in; the router API shapes the roster;
what comes out is checked where agents see it: a webhook receiver that verifies the
notifier's Standard Webhooks signature, and an SMTP mailbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import aiohttp
import pytest

from switchboard.common.events import Dispatch, DispatchKind, RoutingDecision
from switchboard.common.testing import eventually, unique_prefix

from .kit import (
    Receivers,
    Stack,
    build_stack,
    customer_email,
    dispatches,
    email_endpoint,
    launched,
    post_whatsapp,
    put_agent,
    router_get,
    router_write,
    routing_log,
    send_email,
    until,
    wait_agents,
    webhook_endpoint,
    whatsapp_body,
)

pytestmark = [pytest.mark.broker, pytest.mark.e2e]


def rules(receiver: str) -> str:
    """Short times so that relaxation and SLA escalation happen within seconds."""
    return f"""
version: 1
options: {{sticky_window: 1h, reopen_window: 1h, offline_grace: 5m}}
tenants:
  linked:
    queues:
      - {{id: support, match: {{}}, skills: {{support: 3}}, strategy: longest_idle}}
  unlinked:
    queues:
      - {{id: support, match: {{}}, skills: {{support: 3}}, strategy: longest_idle}}
  slow:
    sla_policies:
      fast:
        first_response: 30s
        escalations:
          - target: first_response
            at: 4s
            action: notify_supervisor
            supervisor: {{kind: webhook, target: "{receiver}/supervisor/slow"}}
    queues:
      - id: billing
        match: {{}}
        skills: {{billing: 8}}
        sla_policy: fast
        relaxation:
          - {{name: wider-pool, after: 2s, lower_skills: {{billing: 2}}}}
  offers:
    queues:
      - id: support
        match: {{}}
        skills: {{support: 2}}
        strategy: highest_proficiency
        mode: offer
        offer_timeout: 5m
"""


TENANTS = ("linked", "unlinked", "slow", "offers")


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = build_stack(
        bootstrap=kafka_bootstrap,
        prefix=unique_prefix("e2e"),
        workdir=tmp_path_factory.mktemp("journeys"),
        rules_yaml=rules,
        whatsapp_tenants=TENANTS,
        email_tenants=TENANTS,
    )
    with launched(built) as started:
        yield started


def _token() -> str:
    return uuid.uuid4().hex[:10]


async def _assignment(stack: Stack, tenant: str, channel: str) -> Dispatch:
    """The one assignment dispatch of ``tenant``'s conversation on ``channel`` (waits for it)."""
    found: list[Dispatch] = []

    async def assigned() -> bool:
        found[:] = [
            d
            for d in await dispatches(stack, tenant)
            if d.kind is DispatchKind.ASSIGNMENT and d.conversation.channel.value == channel
        ]
        return bool(found)

    await until(assigned)
    assert len(found) == 1, f"{tenant}/{channel}: {len(found)} assignments"
    return found[0]


async def _delivered(stack: Stack, receivers: Receivers, dispatch: Dispatch) -> None:
    """The dispatch reached its agent's endpoint: a signed webhook for anna, a mail for ben."""
    if dispatch.agent_id == "anna":
        await eventually(lambda: dispatch.dispatch_id in receivers.webhooks.deliveries)
        delivery = receivers.webhooks.deliveries[dispatch.dispatch_id]
        assert delivery.path == "agent/anna"
        assert delivery.kind == "assignment"
        assert delivery.conversation_id == dispatch.conversation.conversation_id
    else:
        assert dispatch.agent_id == "ben"
        await eventually(lambda: any(m.dispatch_id == dispatch.dispatch_id for m in receivers.mailbox.mails))
        mail = next(m for m in receivers.mailbox.mails if m.dispatch_id == dispatch.dispatch_id)
        assert mail.recipients == ("ben@agents.e2e.test",)
        assert mail.message["X-Switchboard-Conversation-Id"] == dispatch.conversation.conversation_id


async def _support_roster(http: aiohttp.ClientSession, stack: Stack, tenant: str) -> None:
    """anna (webhook) and ben (email) have the support skill; carl has none and is never chosen."""
    await put_agent(
        http, stack, tenant, "anna", skills={"support": 8}, endpoints=[webhook_endpoint(stack, "agent/anna")]
    )
    await put_agent(http, stack, tenant, "ben", skills={"support": 6}, endpoints=[email_endpoint("ben")])
    await put_agent(http, stack, tenant, "carl", skills={"sales": 9}, endpoints=[webhook_endpoint(stack, "agent/carl")])
    await wait_agents(http, stack, tenant, ["anna", "ben", "carl"])


async def _customer_writes_twice(
    http: aiohttp.ClientSession, stack: Stack, tenant: str, address: str, wa_id: str
) -> tuple[Dispatch, Dispatch]:
    """An email, then (once it is assigned) a WhatsApp message from the same person."""
    mail = customer_email(
        tenant=tenant,
        sender=address,
        subject="My router does not boot",
        text="It blinks red since this morning.",
        message_id=f"{_token()}@customer.example",
    )
    assert await send_email(stack, mail) == 250
    by_mail = await _assignment(stack, tenant, "email")
    body = whatsapp_body(wa_id=wa_id, name="Maria Lopez", wamid=f"wamid.{_token()}", text="Any news on my router?")
    assert await post_whatsapp(http, stack, tenant, body) == 200
    by_whatsapp = await _assignment(stack, tenant, "whatsapp")
    return by_mail, by_whatsapp


async def test_mail_and_whatsapp_of_one_customer_join_when_identity_links_them(
    stack: Stack, receivers: Receivers, http: aiohttp.ClientSession
) -> None:
    for tenant in ("linked", "unlinked"):
        await _support_roster(http, stack, tenant)
    handles = [{"kind": "email", "value": "maria@customer.example"}, {"kind": "whatsapp", "value": "34600111222"}]
    await router_write(http, "POST", f"{stack.router}/v1/tenants/linked/contacts/link", {"handles": handles})
    # agent events of a tenant are applied in order: once this upsert shows, the link is in force
    await put_agent(http, stack, "linked", "marker", skills={}, endpoints=[])
    await wait_agents(http, stack, "linked", ["marker"])

    linked = await _customer_writes_twice(http, stack, "linked", "maria@customer.example", "34600111222")
    unlinked = await _customer_writes_twice(http, stack, "unlinked", "maria@customer.example", "34600111222")

    # linked: one customer, so the WhatsApp message follows the mail to the same agent (sticky routing)
    mail_conv, wa_conv = linked
    assert wa_conv.agent_id == mail_conv.agent_id
    wa_log = [
        e for e in await routing_log(stack, "linked") if e.conversation_id == wa_conv.conversation.conversation_id
    ]
    assigned = [e for e in wa_log if e.decision is RoutingDecision.ASSIGNED]
    assert [e.reason for e in assigned] == ["sticky: the contact's last agent"]
    # unlinked: two customers to the router; longest-idle sends the second to the other agent
    mail_conv, wa_conv = unlinked
    assert {mail_conv.agent_id, wa_conv.agent_id} == {"anna", "ben"}
    wa_log = [
        e for e in await routing_log(stack, "unlinked") if e.conversation_id == wa_conv.conversation.conversation_id
    ]
    assigned = [e for e in wa_log if e.decision is RoutingDecision.ASSIGNED]
    assert len(assigned) == 1
    assert not assigned[0].reason.startswith("sticky")

    for dispatch in (*linked, *unlinked):
        assert dispatch.agent_id in {"anna", "ben"}  # never carl, who lacks the skill
        assert dispatch.conversation.queue_id == "support"
        await _delivered(stack, receivers, dispatch)
    assert receivers.webhooks.of("linked", path="agent/carl") == []
    assert receivers.webhooks.of("unlinked", path="agent/carl") == []
    assert receivers.webhooks.rejected == 0
    # and no service logged the customer's address, number or words
    assert stack.logged(["@customer.example", "@agents.e2e.test", "34600111222", "blinks red", "news on my"]) == {}


async def test_without_a_skilled_agent_the_conversation_relaxes_to_the_wider_pool_and_the_supervisor_hears(
    stack: Stack, receivers: Receivers, http: aiohttp.ClientSession
) -> None:
    # nobody has billing 8; dora (billing 3) qualifies once the queue relaxes to billing 2
    await put_agent(
        http, stack, "slow", "dora", skills={"billing": 3}, endpoints=[webhook_endpoint(stack, "agent/dora")]
    )
    await put_agent(http, stack, "slow", "eli", skills={"support": 9}, endpoints=[webhook_endpoint(stack, "agent/eli")])
    await wait_agents(http, stack, "slow", ["dora", "eli"])
    mail = customer_email(
        tenant="slow",
        sender="olaf@customer.example",
        subject="Refund for a double charge",
        text="I was charged twice.",
        message_id=f"{_token()}@customer.example",
    )
    assert await send_email(stack, mail) == 250

    dispatch = await _assignment(stack, "slow", "email")
    assert dispatch.agent_id == "dora"
    conversation_id = dispatch.conversation.conversation_id
    await eventually(lambda: dispatch.dispatch_id in receivers.webhooks.deliveries)
    assert receivers.webhooks.deliveries[dispatch.dispatch_id].path == "agent/dora"

    log = [e for e in await routing_log(stack, "slow") if e.conversation_id == conversation_id]
    decisions = [e.decision for e in log]
    queued, relaxed, assigned = (
        decisions.index(RoutingDecision.QUEUED),
        decisions.index(RoutingDecision.RELAXED),
        decisions.index(RoutingDecision.ASSIGNED),
    )
    assert queued < relaxed < assigned  # it waited, relaxed, then went to the wider pool
    assert "no eligible agent" in log[queued].reason
    assert log[relaxed].step == "wider-pool"
    status, conversation = await router_get(http, stack, f"/v1/tenants/slow/conversations/{conversation_id}")
    assert status == 200
    assert (conversation["status"], conversation["agent_id"], conversation["step"]) == ("assigned", "dora", 1)

    # the first-response SLA escalation reaches the supervisor's webhook
    await eventually(lambda: receivers.webhooks.of("slow", kind="escalation") != [], timeout=30)
    [escalation] = receivers.webhooks.of("slow", kind="escalation")
    assert escalation.path == "supervisor/slow"
    assert escalation.conversation_id == conversation_id
    assert escalation.data["escalation"]["target"] == "first_response"
    assert escalation.data["escalation"]["policy"] == "fast"
    assert receivers.webhooks.of("slow", path="agent/eli") == []
    assert receivers.webhooks.rejected == 0


async def test_a_declined_offer_goes_to_the_next_agent_and_an_agent_going_offline_loses_his_offer(
    stack: Stack, receivers: Receivers, http: aiohttp.ClientSession
) -> None:
    # highest proficiency first: olga (9), then pete (7), then quinn (5)
    for agent, level in (("olga", 9), ("pete", 7), ("quinn", 5)):
        await put_agent(
            http,
            stack,
            "offers",
            agent,
            skills={"support": level},
            endpoints=[webhook_endpoint(stack, f"agent/{agent}")],
        )
    await wait_agents(http, stack, "offers", ["olga", "pete", "quinn"])
    body = whatsapp_body(wa_id="447700900123", name="Sam", wamid=f"wamid.{_token()}", text="Cannot log in")
    assert await post_whatsapp(http, stack, "offers", body) == 200
    hooks = receivers.webhooks

    def offers_to(agent: str) -> list[str]:
        return [d.data["offer_id"] for d in hooks.of("offers", kind="offer", path=f"agent/{agent}")]

    await eventually(lambda: offers_to("olga") != [])
    [first] = hooks.of("offers", kind="offer", path="agent/olga")
    conversation_id = first.conversation_id
    decline = {"agent_id": "olga", "offer_id": first.data["offer_id"], "reason": "busy with a call"}
    await router_write(
        http, "POST", f"{stack.router}/v1/tenants/offers/conversations/{conversation_id}/decline", decline
    )

    await eventually(lambda: offers_to("pete") != [])
    await router_write(http, "PUT", f"{stack.router}/v1/tenants/offers/agents/pete/presence", {"presence": "offline"})
    await eventually(lambda: hooks.of("offers", kind="offer_withdrawn", path="agent/pete") != [])
    await eventually(lambda: offers_to("quinn") != [])
    [quinn_offer] = offers_to("quinn")
    await router_write(
        http,
        "POST",
        f"{stack.router}/v1/tenants/offers/conversations/{conversation_id}/accept",
        {"agent_id": "quinn", "offer_id": quinn_offer},
    )

    async def accepted() -> bool:
        status, conversation = await router_get(http, stack, f"/v1/tenants/offers/conversations/{conversation_id}")
        return status == 200 and (conversation["status"], conversation["agent_id"]) == ("assigned", "quinn")

    await until(accepted)
    status, conversation = await router_get(http, stack, f"/v1/tenants/offers/conversations/{conversation_id}")
    assert status == 200
    assert sorted(conversation["declined_by"]) == ["olga"]
    # every offer was about the one conversation, each agent was offered it once, in order
    offers = [d for d in await dispatches(stack, "offers") if d.kind is DispatchKind.OFFER]
    assert [d.agent_id for d in offers] == ["olga", "pete", "quinn"]
    assert {d.conversation.conversation_id for d in offers} == {conversation_id}
    assert receivers.webhooks.rejected == 0
