"""Rendering and signing, pure: Slack blocks, Teams cards, email messages, webhook signatures, URL policy."""

from __future__ import annotations

import time
from email import message_from_bytes
from email import policy as email_policy
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from switchboard.common.events import DeliveryEndpoint, DispatchKind, EndpointKind
from switchboard.notifier.render import one_line, truncate
from switchboard.notifier.signing import WebhookSigner
from switchboard.notifier.sinks.mail import EmailRefused, MailIdentity, build_message
from switchboard.notifier.sinks.slack import (
    ACTION_ACCEPT,
    ACTION_DECLINE,
    ACTION_RESOLVE,
    ButtonValue,
    SlackThreads,
    build_blocks,
    fallback_text,
)
from switchboard.notifier.sinks.teams import MAX_CARD_BYTES, build_card, encode_card
from switchboard.notifier.sinks.webhook import webhook_body
from switchboard.notifier.urlguard import UrlPolicy, UrlRefused

SECRET_NEW = "whsec_" + "bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldw=="
SECRET_OLD = "whsec_" + "b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZA=="


def _buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    actions = [b for b in blocks if b["type"] == "actions"]
    return {e["action_id"]: e for block in actions for e in block["elements"]}


# --------------------------------------------------------------------------- text helpers


def test_one_line_removes_line_breaks_and_controls() -> None:
    assert one_line("Hi\r\nBcc: evil@example.com\x00\tthere", 100) == "Hi Bcc: evil@example.com there"
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("abc", 4) == "abc"


# --------------------------------------------------------------------------- slack


def test_offer_blocks_show_the_facts_and_accept_decline(make_dispatch) -> None:  # type: ignore[no-untyped-def]
    dispatch = make_dispatch(DispatchKind.OFFER, subject="<script> & stuff")
    blocks = build_blocks(dispatch)
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "New email conversation offered to you"},
    }
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert "*Customer*\nDana Customer" in fields
    assert "*Subject*\n&lt;script&gt; &amp; stuff" in fields
    assert "*SLA due*\n2026-01-01 13:00 UTC" in fields
    assert "*Offer expires*\n2026-01-01 12:05 UTC" in fields
    preview = blocks[2]["text"]["text"]
    assert preview == "> Hello,\n> my order has not arrived yet."
    buttons = _buttons(blocks)
    assert set(buttons) == {ACTION_ACCEPT, ACTION_DECLINE, "switchboard.open"}
    assert buttons["switchboard.open"]["url"] == "https://desk.example.com/c/conv-1"
    value = ButtonValue.decode(buttons[ACTION_ACCEPT]["value"])
    assert value == ButtonValue("acme", "conv-1", "offer-9", "agent-7")
    assert fallback_text(dispatch) == "New email conversation offered to you: &lt;script&gt; &amp; stuff"


def test_assignment_offers_resolve_and_warnings_offer_no_buttons(make_dispatch) -> None:  # type: ignore[no-untyped-def]
    assert set(_buttons(build_blocks(make_dispatch(DispatchKind.ASSIGNMENT)))) == {ACTION_RESOLVE, "switchboard.open"}
    warning = make_dispatch(DispatchKind.SLA_WARNING, link=None)
    blocks = build_blocks(warning)
    assert _buttons(blocks) == {}
    assert blocks[0]["text"]["text"] == "SLA warning: first response due soon"
    assert "*Policy*\ngold / warn" in [f["text"] for f in blocks[1]["fields"]]


def test_blocks_respect_slack_limits(make_dispatch) -> None:  # type: ignore[no-untyped-def]
    dispatch = make_dispatch(preview="x" * 4000, subject="s" * 2000, customer_name="n" * 500)
    blocks = build_blocks(dispatch)
    assert len(blocks[0]["text"]["text"]) <= 150
    assert all(len(f["text"]) <= 2000 for f in blocks[1]["fields"])
    assert len(blocks[2]["text"]["text"]) <= 3000


def test_a_non_http_link_is_not_rendered(make_dispatch) -> None:  # type: ignore[no-untyped-def]
    assert "switchboard.open" not in _buttons(build_blocks(make_dispatch(link="javascript:alert(1)")))


@pytest.mark.parametrize("raw", ["nope", "[1]", '{"c": "x"}', '{"t": "acme", "c": "x", "o": 5}'])
def test_foreign_button_values_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="button value"):
        ButtonValue.decode(raw)


def test_threads_remember_roots_and_read_refs() -> None:
    threads = SlackThreads(max_entries=2)
    threads.remember_ref("acme", "c1", "U1", "D42:1700000000.000100")
    assert threads.root("acme", "c1", "U1") == ("D42", "1700000000.000100")
    threads.remember_ref("acme", "c2", "U1", "garbage")
    assert threads.root("acme", "c2", "U1") is None
    threads.remember("acme", "c2", "U1", "D42", "1.1")
    threads.remember("acme", "c3", "U1", "D42", "1.2")
    assert threads.root("acme", "c1", "U1") is None  # oldest forgotten


# --------------------------------------------------------------------------- teams


def test_teams_card_is_an_adaptive_card_with_facts(make_dispatch) -> None:  # type: ignore[no-untyped-def]
    message = build_card(make_dispatch(DispatchKind.ESCALATION))
    attachment = message["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["text"] == "Escalation: first response due soon"
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Subject"] == "Order 1234 never arrived"
    assert card["actions"][0] == {
        "type": "Action.OpenUrl",
        "title": "Open conversation",
        "url": "https://desk.example.com/c/conv-1",
    }


def test_teams_card_is_kept_under_the_size_limit_by_cutting_the_preview(make_dispatch) -> None:  # type: ignore[no-untyped-def]
    dispatch = make_dispatch(preview="é" * 4000)
    assert len(encode_card(dispatch)) < MAX_CARD_BYTES  # the schema's longest preview fits as is
    small = encode_card(dispatch, max_bytes=3000)
    assert 2500 < len(small) <= 3000
    preview = orjson.loads(small)["attachments"][0]["content"]["body"][2]["text"]
    assert preview.endswith("…")
    assert preview.startswith("ééé")
    with pytest.raises(ValueError, match="size limit"):
        encode_card(dispatch, max_bytes=200)


# --------------------------------------------------------------------------- email

IDENTITY = MailIdentity(sender="switchboard@support.example.com", reply_domain="reply.example.com")


def test_email_carries_reply_token_and_stable_ids(make_dispatch) -> None:  # type: ignore[no-untyped-def]
    dispatch = make_dispatch(DispatchKind.ASSIGNMENT)
    endpoint = DeliveryEndpoint(kind=EndpointKind.EMAIL, target="agent@example.com")
    msg = build_message(dispatch, endpoint, IDENTITY)
    parsed = message_from_bytes(msg.as_bytes(), policy=email_policy.default)
    assert parsed["To"] == "agent@example.com"
    assert parsed["Reply-To"] == "support+tok123@reply.example.com"
    assert parsed["Message-ID"] == f"<{dispatch.dispatch_id}@support.example.com>"
    assert parsed["X-Switchboard-Dispatch-Id"] == dispatch.dispatch_id
    assert parsed["Subject"] == "New email conversation assigned to you: Order 1234 never arrived"
    body = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "my order has not arrived yet." in body
    assert "Customer: Dana Customer" in body


def test_email_headers_cannot_be_injected(make_dispatch) -> None:  # type: ignore[no-untyped-def]
    dispatch = make_dispatch(subject="Hi\r\nBcc: victim@example.com", customer_name="X\nY")
    endpoint = DeliveryEndpoint(kind=EndpointKind.EMAIL, target="agent@example.com")
    raw = build_message(dispatch, endpoint, IDENTITY).as_bytes()
    parsed = message_from_bytes(raw, policy=email_policy.default)
    assert parsed["Bcc"] is None
    assert "Bcc: victim@example.com" in parsed["Subject"]
    with pytest.raises(EmailRefused, match="line break"):
        build_message(dispatch, endpoint.model_copy(update={"target": "a@example.com\r\nBcc: x@example.com"}), IDENTITY)
    with pytest.raises(EmailRefused, match="reply token"):
        build_message(make_dispatch(reply_token="a@b>\r\nX: y"), endpoint, IDENTITY)
    with pytest.raises(EmailRefused, match="recipient"):
        build_message(dispatch, endpoint.model_copy(update={"target": "not an address"}), IDENTITY)


# --------------------------------------------------------------------------- webhook signing


def test_webhook_signature_verifies_with_either_secret_during_rotation(make_dispatch) -> None:  # type: ignore[no-untyped-def]
    dispatch = make_dispatch()
    now = int(time.time())
    body = webhook_body(dispatch, now)
    headers = WebhookSigner([SECRET_NEW, SECRET_OLD]).headers(dispatch.dispatch_id, now, body)
    assert headers["webhook-id"] == dispatch.dispatch_id
    assert headers["webhook-timestamp"] == str(now)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET_NEW, SECRET_OLD):  # the reference implementation accepts it
        payload = Webhook(secret).verify(body, headers)
        assert payload["type"] == "dispatch.assignment"
        assert payload["data"]["dispatch_id"] == dispatch.dispatch_id
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_NEW).verify(body.replace(b"conv-1", b"conv-2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==").verify(body, headers)


def test_signer_needs_a_valid_secret() -> None:
    with pytest.raises(ValueError, match="at least one"):
        WebhookSigner([])
    with pytest.raises(ValueError, match="invalid webhook secret"):
        WebhookSigner(["whsec_!!!not base64!!!"])


# --------------------------------------------------------------------------- URL policy


async def _resolves_to(*addresses: str):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://desk.example.com/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https://evil.example.org/x", "not in the allowed hosts"),
        ("https://user:pw@desk.example.com/x", "credentials"),
        ("https://127.0.0.1/x", "not in the allowed hosts"),
        ("not a url", "scheme"),
    ],
)
async def test_url_policy_refuses(url: str, reason: str) -> None:
    policy = UrlPolicy(allowed_hosts=("desk.example.com", "*.hooks.example.net"))
    with pytest.raises(UrlRefused, match=reason):
        await policy.check(url, await _resolves_to("93.184.216.34"))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.5.5",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",  # noqa: S104  # the unspecified address must be refused
        "100.64.0.1",
        "fd00::1",
    ],
)
async def test_url_policy_refuses_non_public_addresses(address: str) -> None:
    policy = UrlPolicy(allowed_hosts=("*",))
    with pytest.raises(UrlRefused, match="non-public"):
        await policy.check("https://desk.example.com/x", await _resolves_to("93.184.216.34", address))
    assert UrlPolicy(allowed_hosts=("*",), allow_private=True).address_allowed(address)


async def test_url_policy_checks_ip_literals_without_resolving() -> None:
    policy = UrlPolicy(allowed_hosts=("*",))
    with pytest.raises(UrlRefused, match="non-public"):
        await policy.check("http://[::1]:8080/x", await _resolves_to("93.184.216.34"))
    with pytest.raises(UrlRefused, match="non-public"):
        await policy.check("http://169.254.169.254/latest/meta-data", await _resolves_to("93.184.216.34"))


async def test_url_policy_allows_public_hosts_on_the_list() -> None:
    policy = UrlPolicy(allowed_hosts=("desk.example.com", "*.hooks.example.net"))
    public = await _resolves_to("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    assert (await policy.check("https://desk.example.com/x", public)).host == "desk.example.com"
    assert (await policy.check("https://a.b.hooks.example.net/x", public)).host == "a.b.hooks.example.net"
    with pytest.raises(UrlRefused):
        await policy.check("https://hooks.example.net/x", public)  # the wildcard needs a sub-domain
    with pytest.raises(UrlRefused, match="did not resolve"):
        await policy.check("https://desk.example.com/x", await _resolves_to())
