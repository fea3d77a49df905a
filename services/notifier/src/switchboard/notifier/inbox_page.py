"""The inbox page: server-rendered HTML, every value escaped, inline CSS and JS allowed by a nonce.

Customer text (names, subjects, previews) is untrusted: every value goes through
:func:`html.escape` (quotes too, so attribute values are safe), links are shown only for
``http``/``https`` URLs, and the Content-Security-Policy allows no script or style but the
page's own (by a per-response nonce), no framing, no forms, and fetches to this origin only.
Live items arrive over Server-Sent Events as JSON plus the same escaped ``<li>`` fragment
this module renders, so the browser never builds markup from untrusted text.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime
from html import escape
from urllib.parse import quote

from switchboard.common.events import DispatchKind
from switchboard.notifier.inbox import InboxItem
from switchboard.notifier.render import format_time

_BADGES = {
    DispatchKind.OFFER: "Offer",
    DispatchKind.ASSIGNMENT: "Assigned",
    DispatchKind.FOLLOW_UP: "Follow-up",
    DispatchKind.OFFER_WITHDRAWN: "Withdrawn",
    DispatchKind.ESCALATION: "Escalation",
    DispatchKind.SLA_WARNING: "SLA warning",
}
_LABELS = {"accept": "Accept", "decline": "Decline", "resolve": "Resolve"}


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def content_security_policy(nonce: str) -> str:
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; "
        f"style-src 'nonce-{nonce}'; "
        "connect-src 'self'; "
        "img-src 'self'; "
        "base-uri 'none'; "
        "form-action 'none'; "
        "frame-ancestors 'none'"
    )


def security_headers(csp: str | None = None) -> dict[str, str]:
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }
    if csp is not None:
        headers["Content-Security-Policy"] = csp
    return headers


def inbox_path(tenant: str, agent: str) -> str:
    return f"/inbox/{quote(tenant, safe='')}/{quote(agent, safe='')}"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _time(value: datetime | None) -> str:
    if value is None:
        return ""
    return f'<time datetime="{_e(value.isoformat())}">{_e(format_time(value))}</time>'


def _safe_link(link: str | None) -> str | None:
    if link and (link.startswith("https://") or link.startswith("http://")):
        return link
    return None


def render_item(item: InboxItem, *, withdrawn: bool = False) -> str:
    """One ``<li>``; ``withdrawn`` shows an offer's buttons disabled (a later withdrawal came)."""
    facts: list[tuple[str, str]] = [("Channel", _e(item.channel))]
    if item.customer_name:
        facts.append(("Customer", _e(item.customer_name)))
    if item.subject:
        facts.append(("Subject", _e(item.subject)))
    if item.queue_id:
        facts.append(("Queue", _e(item.queue_id)))
    if item.sla_due_at is not None:
        facts.append(("SLA due", _time(item.sla_due_at)))
    if item.offer_expires_at is not None:
        facts.append(("Offer expires", _time(item.offer_expires_at)))
    if item.escalation is not None:
        esc = item.escalation
        facts.append(("Policy", _e(f"{esc['policy']} / {esc['step']}")))
    rows = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in facts)
    disabled = " disabled" if withdrawn else ""
    buttons = "".join(
        f'<button type="button" data-action="{_e(action)}"{disabled}>{_LABELS[action]}</button>'
        for action in item.actions
    )
    link = _safe_link(item.link)
    if link is not None:
        buttons += f'<a href="{_e(link)}" target="_blank" rel="noopener noreferrer">Open</a>'
    offer = f' data-offer="{_e(item.offer_id)}"' if item.offer_id else ""
    preview = f'<p class="preview">{_e(item.preview)}</p>' if item.preview else ""
    return (
        f'<li class="item kind-{_e(item.kind.value)}" id="item-{item.seq}" data-seq="{item.seq}" '
        f'data-kind="{_e(item.kind.value)}" data-conversation="{_e(item.conversation_id)}"{offer}>'
        f'<div class="head"><span class="badge">{_BADGES[item.kind]}</span>'
        f"<strong>{_e(item.headline)}</strong>{_time(item.received_at)}</div>"
        f"<dl>{rows}</dl>{preview}"
        f'<div class="actions">{buttons}</div><p class="result" aria-live="polite"></p></li>'
    )


def render_items(items: Iterable[InboxItem]) -> str:
    """Items given newest first; offers withdrawn by a later item are shown without live buttons."""
    withdrawn: set[str] = set()
    out: list[str] = []
    for item in items:
        if item.kind is DispatchKind.OFFER_WITHDRAWN:
            withdrawn.add(item.conversation_id)
        out.append(render_item(item, withdrawn=item.kind is DispatchKind.OFFER and item.conversation_id in withdrawn))
    return "".join(out)


_CSS = """
:root { color-scheme: light dark; font-family: system-ui, sans-serif; }
body { margin: 0 auto; max-width: 56rem; padding: 1rem; }
header { display: flex; gap: 1rem; align-items: baseline; }
header h1 { font-size: 1.3rem; margin: 0; }
#status { margin-left: auto; font-size: .85rem; opacity: .7; }
ul#items { list-style: none; padding: 0; }
li.item { border: 1px solid #8885; border-radius: .5rem; padding: .75rem 1rem; margin: .75rem 0; }
li.kind-offer { border-left: .35rem solid #2a7de1; }
li.kind-assignment, li.kind-follow_up { border-left: .35rem solid #2e9e5b; }
li.kind-escalation, li.kind-sla_warning { border-left: .35rem solid #d9822b; }
li.kind-offer_withdrawn { opacity: .6; }
.head { display: flex; gap: .6rem; align-items: baseline; }
.head time { margin-left: auto; font-size: .8rem; opacity: .7; }
.badge { font-size: .75rem; text-transform: uppercase; letter-spacing: .04em; opacity: .8; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem .8rem; margin: .5rem 0; }
dt { opacity: .7; }
dd { margin: 0; overflow-wrap: anywhere; }
.preview { white-space: pre-wrap; overflow-wrap: anywhere; border-left: 3px solid #8886; padding-left: .6rem; }
.actions { display: flex; gap: .5rem; align-items: center; }
.actions a { margin-left: auto; }
.result { font-size: .85rem; margin: .3rem 0 0; }
"""

_JS = """
(() => {
  const body = document.body;
  const list = document.getElementById("items");
  const empty = document.getElementById("empty");
  const status = document.getElementById("status");
  const disable = (li, off) => li.querySelectorAll("button").forEach((b) => { b.disabled = off; });
  const source = new EventSource(body.dataset.events + "?after=" + encodeURIComponent(body.dataset.after));
  source.addEventListener("open", () => { status.textContent = "live"; });
  source.addEventListener("error", () => { status.textContent = "reconnecting…"; });
  source.addEventListener("item", (event) => {
    const data = JSON.parse(event.data);
    if (document.getElementById("item-" + data.item.seq)) return;
    list.insertAdjacentHTML("afterbegin", data.html);
    empty.hidden = true;
    if (data.item.kind === "offer_withdrawn") {
      list.querySelectorAll('li[data-kind="offer"]').forEach((li) => {
        if (li.dataset.conversation === data.item.conversation_id) disable(li, true);
      });
    }
  });
  list.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const li = button.closest("li");
    const result = li.querySelector(".result");
    const payload = { action: button.dataset.action, conversation_id: li.dataset.conversation };
    if (li.dataset.offer) payload.offer_id = li.dataset.offer;
    disable(li, true);
    result.textContent = "Sending…";
    try {
      const answer = await fetch(body.dataset.actions, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(payload),
      });
      const reply = await answer.json().catch(() => ({}));
      if (answer.ok) {
        result.textContent = button.textContent + ": sent";
      } else {
        result.textContent = "Failed: " + (reply.error || ("HTTP " + answer.status));
        disable(li, false);
      }
    } catch (err) {
      result.textContent = "Failed: " + err;
      disable(li, false);
    }
  });
})();
"""


def render_page(tenant: str, agent: str, items: list[InboxItem], nonce: str) -> str:
    """The whole page; ``items`` newest first."""
    base = inbox_path(tenant, agent)
    after = items[0].seq if items else 0
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Inbox · {_e(agent)}</title>"
        f'<style nonce="{nonce}">{_CSS}</style></head>'
        f'<body data-events="{_e(base)}/events" data-actions="{_e(base)}/actions" data-after="{after}">'
        f"<header><h1>Inbox of {_e(agent)}</h1><span>{_e(tenant)}</span>"
        '<span id="status">connecting…</span></header>'
        f'<ul id="items">{render_items(items)}</ul>'
        f'<p id="empty"{"" if not items else " hidden"}>Nothing here yet.</p>'
        f'<script nonce="{nonce}">{_JS}</script>'
        "</body></html>\n"
    )
