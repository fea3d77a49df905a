"""Conversation lifecycle: open, join, duplicates, automated mail, reopen, contacts, transfer."""

from __future__ import annotations

from switchboard.common.events import (
    AuthorRole,
    AutomatedKind,
    ContactHandle,
    ContactsLinked,
    ConversationResolved,
    ConversationTransferred,
    DispatchKind,
    ReplySent,
    RoutingDecision,
)
from switchboard.router.engine import Effects, RouterEngine
from switchboard.router.rules import parse_rules
from switchboard.router.snapshot import ContactRecord
from switchboard.router.state import ConversationStatus
from switchboard.router.testing import FakeClock, agent_event, inbound

RULES = """
options: {sticky_window: 7d, reopen_window: 1d, offline_grace: 5m}
tenants:
  acme:
    default_queue: general
    queues:
      - id: billing
        match: {keywords: [invoice], channels: [email]}
        skills: {billing: 1}
      - id: vip
        match_expr: 'has(contact.attributes.tier) && contact.attributes.tier == "gold"'
      - id: general
        match: {channels: [chat, sms, whatsapp, telegram]}
"""


def setup() -> tuple[RouterEngine, FakeClock]:
    clock = FakeClock()
    return RouterEngine(parse_rules(RULES), clock), clock


def conv_of(fx: Effects) -> str:
    return fx.log[-1].conversation_id


def test_thread_messages_join_and_follow_ups_go_to_the_assignee() -> None:
    engine, _ = setup()
    engine.handle(agent_event("a1"))
    first = engine.handle(inbound(thread="t-1", text="first"))
    conv_id = conv_of(first)
    fx = engine.handle(inbound(thread="t-1", text="second " + "x" * 1000))
    assert [(d.kind, d.agent_id) for d in fx.dispatches] == [(DispatchKind.FOLLOW_UP, "a1")]
    assert fx.dispatches[0].conversation.conversation_id == conv_id
    assert fx.log[0].decision is RoutingDecision.FOLLOW_UP
    conv = engine.conversation("acme", conv_id)
    assert conv is not None
    assert len(conv.preview) == 300
    assert conv.preview.startswith("second")
    # dispatch ids are stable per conversation and sequence
    assert [d.sequence for d in (*first.dispatches, *fx.dispatches)] == [1, 2]
    assert fx.dispatches[0].dispatch_id == f"{conv_id}.2"


def test_chat_messages_of_one_contact_join_without_a_thread_but_emails_do_not() -> None:
    engine, _ = setup()
    a = conv_of(engine.handle(inbound(channel="chat", handle="u1")))
    b = conv_of(engine.handle(inbound(channel="chat", handle="u1")))
    assert a == b
    c = conv_of(engine.handle(inbound(channel="email", handle="u1@example.com")))
    d = conv_of(engine.handle(inbound(channel="email", handle="u1@example.com")))
    assert c != d


def test_references_and_reply_tokens_find_the_conversation() -> None:
    engine, _ = setup()
    conv_id = conv_of(engine.handle(inbound(message_id="<m1@x>")))
    by_ref = engine.handle(inbound(message_id="<m2@x>", references=("<m1@x>",)))
    assert conv_of(by_ref) == conv_id
    by_token = engine.handle(inbound(message_id="<m3@x>", reply_token=conv_id))
    assert conv_of(by_token) == conv_id


def test_duplicates_and_automated_messages_are_ignored_with_a_log_entry() -> None:
    engine, _ = setup()
    first = engine.handle(inbound(message_id="m-1", thread="t"))
    dup = engine.handle(inbound(message_id="m-1", thread="t"))
    assert [e.decision for e in dup.log] == [RoutingDecision.IGNORED]
    assert "duplicate" in dup.log[0].reason
    assert dup.log[0].conversation_id == conv_of(first)
    assert not dup.dispatches
    assert not dup.state
    bounce = engine.handle(inbound(automated=AutomatedKind.BOUNCE))
    assert [e.decision for e in bounce.log] == [RoutingDecision.IGNORED]
    assert "bounce" in bounce.log[0].reason
    assert not bounce.state
    assert len(engine.snapshot()) == 2  # one contact, one conversation


def test_queue_matching_structured_and_cel() -> None:
    engine, _ = setup()
    assert engine.handle(inbound(text="Your INVOICE, please")).log[-1].queue_id == "billing"
    assert engine.handle(inbound(channel="chat", text="invoice")).log[-1].queue_id == "general"
    invoices = engine.handle(inbound(text="invoices")).log[-1]  # whole words only
    assert (invoices.queue_id, invoices.rule) == ("general", "default_queue")
    gold = engine.handle(inbound(handle="g", attributes={"tier": "gold"}))
    assert gold.log[-1].queue_id == "vip"
    assert gold.log[-1].rule == "match: queue vip"
    assert engine.handle(inbound(handle="s", attributes={"tier": "silver"})).log[-1].rule == "default_queue"


SUBJECT_RULES = """
tenants:
  acme:
    default_queue: general
    queues:
      - id: outage
        match: {subject_keywords: [down, outage]}
      - id: general
"""


def test_subject_keywords_look_at_the_subject_only_and_match_whole_words() -> None:
    engine = RouterEngine(parse_rules(SUBJECT_RULES), FakeClock())
    assert engine.handle(inbound(subject="Site DOWN since 9", text="hi")).log[-1].queue_id == "outage"
    assert engine.handle(inbound(handle="b", subject="Outage?", text="hi")).log[-1].queue_id == "outage"
    in_text = engine.handle(inbound(handle="c", subject="Question", text="the site is down")).log[-1]
    assert in_text.queue_id == "general"
    assert engine.handle(inbound(handle="d", subject="downtime report")).log[-1].queue_id == "general"
    assert engine.handle(inbound(handle="e", subject=None, text="down")).log[-1].queue_id == "general"


def test_reopen_within_window_prefers_last_agent_only_if_available() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1"))
    conv_id = conv_of(engine.handle(inbound(thread="t")))
    engine.handle(ConversationResolved(tenant_id="acme", agent_id="a1", conversation_id=conv_id))
    engine.handle(agent_event("a0"))  # a0 is as free as a1 and sorts first, but a1 is sticky
    clock.tick(hours=3)
    fx = engine.handle(inbound(thread="t", text="it broke again"))
    assert conv_of(fx) == conv_id
    assert [e.decision for e in fx.log] == [RoutingDecision.REOPENED, RoutingDecision.ASSIGNED]
    assert fx.log[-1].agent_id == "a1"
    assert fx.log[-1].reason.startswith("sticky")
    engine.handle(ConversationResolved(tenant_id="acme", agent_id="a1", conversation_id=conv_id))
    engine.handle(agent_event("a1", presence=None, capacity={"email": 0}))
    clock.tick(hours=1)
    fx = engine.handle(inbound(thread="t", text="again"))
    assert fx.log[-1].agent_id == "a0"


def test_after_the_reopen_window_a_new_conversation_opens() -> None:
    engine, clock = setup()
    conv_id = conv_of(engine.handle(inbound(thread="t")))
    engine.handle(ConversationResolved(tenant_id="acme", agent_id="a1", conversation_id=conv_id))
    clock.tick(hours=25)
    fx = engine.handle(inbound(thread="t"))
    assert conv_of(fx) != conv_id
    # the resolved one is purged from state once the reopen window has passed
    assert fx.state[f"acme/conversation/{conv_id}"] is None
    assert engine.conversation("acme", conv_id) is None


def test_agent_reply_waits_for_customer_and_customer_message_resumes() -> None:
    engine, _ = setup()
    engine.handle(agent_event("a1"))
    conv_id = conv_of(engine.handle(inbound(thread="t")))
    engine.handle(ReplySent(tenant_id="acme", agent_id="a1", conversation_id=conv_id))
    conv = engine.conversation("acme", conv_id)
    assert conv is not None
    assert conv.status is ConversationStatus.WAITING_FOR_CUSTOMER
    fx = engine.handle(inbound(thread="t", text="thanks, but"))
    assert conv.status is ConversationStatus.ASSIGNED
    assert fx.dispatches[0].kind is DispatchKind.FOLLOW_UP


def test_agent_authored_inbound_counts_as_a_reply() -> None:
    engine, _ = setup()
    engine.handle(agent_event("a1"))
    conv_id = conv_of(engine.handle(inbound(thread="t")))
    engine.handle(inbound(thread="t", author_role=AuthorRole.AGENT))
    conv = engine.conversation("acme", conv_id)
    assert conv is not None
    assert conv.agent_replied
    assert conv.status is ConversationStatus.WAITING_FOR_CUSTOMER
    orphan = engine.handle(inbound(thread="other", author_role=AuthorRole.AGENT))
    assert orphan.log[0].decision is RoutingDecision.IGNORED


def test_verified_email_links_contacts_across_channels_for_stickiness() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1"))
    engine.handle(agent_event("a2"))
    first = conv_of(engine.handle(inbound(handle="Ann@Example.com", kind="email", channel="email")))
    engine.handle(ConversationResolved(tenant_id="acme", agent_id="a1", conversation_id=first))
    engine.handle(inbound(handle="someone-else"))  # a2: both have no load, a2 has been idle longer
    clock.tick(60)
    fx = engine.handle(inbound(handle="ann@example.com", kind="email", channel="chat"))
    assert fx.log[-1].agent_id == "a1"
    assert fx.log[-1].reason.startswith("sticky")
    # an unverified address does not link
    fx = engine.handle(inbound(handle="ann@example.com", kind="email", verified=False, channel="sms"))
    assert not fx.log[-1].reason.startswith("sticky")


def test_contacts_linked_merges_identities() -> None:
    engine, clock = setup()
    everywhere = {"email": 2, "whatsapp": 2, "telegram": 2}
    engine.handle(agent_event("a1", capacity=everywhere))
    engine.handle(agent_event("a2", capacity=everywhere))
    first = conv_of(engine.handle(inbound(channel="whatsapp", handle="+15550001")))
    engine.handle(ConversationResolved(tenant_id="acme", agent_id="a1", conversation_id=first))
    engine.handle(inbound(handle="filler"))
    fx = engine.handle(
        ContactsLinked(
            tenant_id="acme",
            handles=(
                ContactHandle(kind="whatsapp", value="+15550001"),
                ContactHandle(kind="telegram", value="tg-77"),
            ),
        )
    )
    assert any(k.startswith("acme/contact/") for k in fx.state)
    clock.tick(60)
    fx = engine.handle(inbound(channel="telegram", handle="tg-77"))
    assert fx.log[-1].agent_id == "a1"
    assert fx.log[-1].reason.startswith("sticky")
    records = [r for r in engine.snapshot() if r.kind == "contact"]
    assert all("+15550001" not in str(r.model_dump()) for r in records)  # handles are stored hashed


def test_a_contact_is_written_to_the_changelog_only_when_it_changes() -> None:
    engine, _ = setup()
    engine.handle(agent_event("a1"))

    def contact_keys(fx: Effects) -> list[str]:
        return [k for k in fx.state if k.startswith("acme/contact/")]

    first = engine.handle(inbound(thread="t-1", attributes={"tier": "silver"}))
    (key,) = contact_keys(first)
    # the same customer, the same name and attributes: the follow-up writes its conversation only
    same = engine.handle(inbound(thread="t-1", attributes={"tier": "silver"}))
    assert contact_keys(same) == []
    assert [k for k in same.state if "/conversation/" in k] == [f"acme/conversation/{conv_of(first)}"]
    # a new attribute, a new handle or a new name is written
    richer = engine.handle(inbound(thread="t-1", attributes={"plan": "pro"}))
    assert contact_keys(richer) == [key]
    record = richer.records()[key]
    assert isinstance(record, ContactRecord)
    assert dict(record.attributes) == {"tier": "silver", "plan": "pro"}
    message = inbound(thread="t-1", attributes={"plan": "pro"})
    identity = message.contact.model_copy(
        update={"handles": (*message.contact.handles, ContactHandle(kind="phone", value="+15550009"))}
    )
    assert contact_keys(engine.handle(message.model_copy(update={"contact": identity}))) == [key]
    renamed = message.contact.model_copy(update={"display_name": "Ann"})
    assert contact_keys(
        engine.handle(message.model_copy(update={"contact": renamed, "provider_message_id": "m2"}))
    ) == [key]
    assert contact_keys(engine.handle(inbound(thread="t-1", attributes={"plan": "pro"}))) == [key]  # "Customer" again


def test_transfer_to_agent_and_to_queue() -> None:
    engine, _ = setup()
    engine.handle(agent_event("a1", skills={"billing": 3}))
    engine.handle(agent_event("a2"))
    conv_id = conv_of(engine.handle(inbound()))
    conv = engine.conversation("acme", conv_id)
    assert conv is not None
    assert conv.agent_id == "a1"
    fx = engine.handle(
        ConversationTransferred(tenant_id="acme", agent_id="a1", conversation_id=conv_id, to_agent_id="a2")
    )
    assert [(d.kind, d.agent_id) for d in fx.dispatches] == [(DispatchKind.ASSIGNMENT, "a2")]
    assert conv.agent_id == "a2"
    a1 = engine.agent("acme", "a1")
    assert a1 is not None
    assert sum(a1.load.values()) == 0
    fx = engine.handle(
        ConversationTransferred(tenant_id="acme", agent_id="a2", conversation_id=conv_id, to_queue="billing")
    )
    assert conv.queue_id == "billing"
    assert conv.agent_id == "a1"
    assert [e.decision for e in fx.log] == [RoutingDecision.REROUTED, RoutingDecision.ASSIGNED]
    refused = engine.handle(
        ConversationTransferred(tenant_id="acme", agent_id="a1", conversation_id=conv_id, to_agent_id="ghost")
    )
    assert refused.log[0].decision is RoutingDecision.IGNORED
    assert "unknown agent" in refused.log[0].reason
    refused = engine.handle(
        ConversationTransferred(tenant_id="acme", agent_id="a1", conversation_id=conv_id, to_queue="nope")
    )
    assert "unknown queue" in refused.log[0].reason
