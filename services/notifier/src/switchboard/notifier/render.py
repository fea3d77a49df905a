"""Text shared by every sink: the headline and the facts of a dispatch, in plain words."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from switchboard.common.events import Dispatch, DispatchKind

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def one_line(text: str, limit: int = 200) -> str:
    """``text`` on one line without control characters, cut to ``limit`` characters."""
    flat = " ".join(_CONTROL.sub(" ", _LINE_BREAKS.sub(" ", text)).split())
    return truncate(flat, limit)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, with an ellipsis when cut."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def clean_multiline(text: str) -> str:
    """Preview text: line breaks kept (normalised to ``\\n``), other control characters removed."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def headline(dispatch: Dispatch) -> str:
    conv = dispatch.conversation
    channel = conv.channel.value
    match dispatch.kind:
        case DispatchKind.OFFER:
            return f"New {channel} conversation offered to you"
        case DispatchKind.ASSIGNMENT:
            return f"New {channel} conversation assigned to you"
        case DispatchKind.FOLLOW_UP:
            return "New message in your conversation"
        case DispatchKind.OFFER_WITHDRAWN:
            return "Offer withdrawn"
        case DispatchKind.ESCALATION:
            return f"Escalation: {_target(dispatch)}"
        case DispatchKind.SLA_WARNING:
            return f"SLA warning: {_target(dispatch)}"
    raise AssertionError(f"unhandled dispatch kind {dispatch.kind!r}")  # pragma: no cover


def _target(dispatch: Dispatch) -> str:
    esc = dispatch.escalation
    if esc is None:
        return "conversation"
    state = "breached" if esc.breached else "due soon"
    return f"{esc.target.replace('_', ' ')} {state}"


def format_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M %Z").strip()


@dataclass(frozen=True, slots=True)
class Fact:
    label: str
    value: str


def facts(dispatch: Dispatch) -> list[Fact]:
    """The labelled facts shown in every card and message."""
    conv = dispatch.conversation
    out = [Fact("Channel", conv.channel.value)]
    if conv.customer_name:
        out.append(Fact("Customer", one_line(conv.customer_name, 120)))
    if conv.subject:
        out.append(Fact("Subject", one_line(conv.subject, 250)))
    if conv.queue_id:
        out.append(Fact("Queue", one_line(conv.queue_id, 120)))
    if conv.sla_due_at is not None:
        out.append(Fact("SLA due", format_time(conv.sla_due_at)))
    if dispatch.offer_expires_at is not None and dispatch.kind is DispatchKind.OFFER:
        out.append(Fact("Offer expires", format_time(dispatch.offer_expires_at)))
    if dispatch.escalation is not None:
        esc = dispatch.escalation
        out.append(Fact("Policy", one_line(f"{esc.policy} / {esc.step}", 200)))
        if esc.due_at is not None:
            out.append(Fact("Target due", format_time(esc.due_at)))
    return out


def wants_actions(dispatch: Dispatch) -> tuple[bool, bool, bool]:
    """Which of (accept, decline, resolve) make sense for this dispatch."""
    match dispatch.kind:
        case DispatchKind.OFFER:
            return True, True, False
        case DispatchKind.ASSIGNMENT | DispatchKind.FOLLOW_UP:
            return False, False, True
        case _:
            return False, False, False
