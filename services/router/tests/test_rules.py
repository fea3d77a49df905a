from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from switchboard.router.rules import (
    EscalationAction,
    Mode,
    RulesError,
    SlaTarget,
    Strategy,
    load_rules,
    parse_rules,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rules.yaml"

MINIMAL = """\
version: 1
tenants:
  acme:
    queues:
      - id: general
"""


def test_example_file_loads_with_every_feature() -> None:
    rules = load_rules(EXAMPLE)
    acme = rules.tenants["acme"]
    assert [q.id for q in acme.queues] == ["vip", "spanish", "billing", "technical"]
    vip = acme.queue("vip")
    assert vip is not None
    assert vip.mode is Mode.OFFER
    assert vip.offer_timeout == timedelta(seconds=45)
    assert vip.strategy is Strategy.HIGHEST_PROFICIENCY
    assert vip.agent_filter is not None
    assert vip.agent_filter.evaluate({"agent": {"attributes": {"teams": ["vip"]}}}) is True
    billing = acme.queue("billing")
    assert billing is not None
    assert [s.after for s in billing.relaxation] == [timedelta(minutes=5), timedelta(minutes=20)]
    assert billing.relaxation[1].drop_skills == frozenset({"billing"})
    policy = acme.sla_policies["vip"]
    assert policy.first_response == timedelta(minutes=15)
    assert policy.escalations[0].at == timedelta(minutes=5)
    assert policy.escalations[1].at == pytest.approx(0.5)
    assert policy.escalations[2].action is EscalationAction.NOTIFY_SUPERVISOR
    assert policy.escalations[2].target is SlaTarget.FIRST_RESPONSE
    cal = acme.calendars["berlin-office"]
    assert cal.intervals_on(date(2026, 11, 23)) == ((8 * 60, 12 * 60 + 30), (13 * 60 + 30, 18 * 60))
    assert cal.intervals_on(date(2026, 12, 25)) == ()  # holiday
    assert cal.intervals_on(date(2026, 11, 28)) == ()  # Saturday
    assert rules.options_for("globex").sticky_window == timedelta(days=1)
    assert rules.options_for("acme").sticky_window == timedelta(days=7)


def test_minimal_file_uses_defaults() -> None:
    rules = parse_rules(MINIMAL)
    queue = rules.tenants["acme"].queues[0]
    assert queue.strategy is Strategy.LEAST_LOADED
    assert queue.mode is Mode.PUSH
    assert queue.skills == {}


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        (MINIMAL + "        strategy: fastest\n", 6, "tenants.acme.queues[0].strategy", "least_loaded"),
        (MINIMAL + "        match_expr: 'conversation.channel =='\n", 6, "tenants.acme.queues[0].match_expr", "CEL"),
        (MINIMAL + "        agent_filter: 'agent.'\n", 6, "tenants.acme.queues[0].agent_filter", "CEL"),
        (MINIMAL + "        skills: {billing: 11}\n", 6, "tenants.acme.queues[0].skills.billing", "less than or equal"),
        (MINIMAL + "        offer_timeout: soon\n", 6, "tenants.acme.queues[0].offer_timeout", "not a duration"),
        (MINIMAL + "        colour: red\n", 6, "tenants.acme.queues[0].colour", "Extra inputs"),
        (MINIMAL + "        sla_policy: gold\n", 6, "tenants.acme.queues[0].sla_policy", "unknown SLA policy"),
        (
            MINIMAL + "        relaxation:\n          - {after: 5m}\n          - {after: 2m}\n",
            6,
            "tenants.acme.queues[0].relaxation",
            "increasing",
        ),
        (
            MINIMAL + "        relaxation:\n          - {after: 5m, widen_to: [nowhere]}\n",
            7,
            "tenants.acme.queues[0].relaxation[0].widen_to",
            "nowhere",
        ),
    ],
)
def test_queue_errors_name_file_line_and_field(text: str, line: int, field: str, fragment: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(text, "rules.yaml")
    issues = info.value.issues
    assert len(issues) == 1, issues
    issue = issues[0]
    assert (issue.file, issue.line, issue.field) == ("rules.yaml", line, field)
    assert fragment in issue.message
    assert f"rules.yaml:{line}: {field}:" in str(info.value)


def test_calendar_and_policy_errors_point_at_their_lines() -> None:
    text = """\
tenants:
  acme:
    calendars:
      office:
        timezone: Mars/Olympus
        hours:
          tue: ["17:00-09:00"]
    sla_policies:
      std:
        escalations:
          - {target: first_response, at: 10m, action: move_queue}
    queues:
      - id: general
"""
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.yaml")
    found = {(i.line, i.field): i.message for i in info.value.issues}
    assert set(found) == {
        (5, "tenants.acme.calendars.office.timezone"),
        (7, "tenants.acme.calendars.office.hours.tue[0]"),
        (11, "tenants.acme.sla_policies.std.escalations[0]"),
    }
    assert "Mars/Olympus" in found[(5, "tenants.acme.calendars.office.timezone")]
    assert "ends before it starts" in found[(7, "tenants.acme.calendars.office.hours.tue[0]")]
    assert "to_queue" in found[(11, "tenants.acme.sla_policies.std.escalations[0]")]


def test_overlapping_hours_and_fraction_without_target() -> None:
    text = """\
tenants:
  acme:
    calendars:
      office:
        timezone: Europe/Berlin
        hours:
          mon: ["09:00-12:00", "11:00-13:00"]
    sla_policies:
      std:
        escalations:
          - {target: resolution, at: 50%, action: warn_agent}
    queues:
      - id: general
"""
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.yaml")
    found = {(i.line, i.field): i.message for i in info.value.issues}
    assert set(found) == {(6, "tenants.acme.calendars.office.hours"), (9, "tenants.acme.sla_policies.std")}
    assert "overlap" in found[(6, "tenants.acme.calendars.office.hours")]
    assert "no target" in found[(9, "tenants.acme.sla_policies.std")]


def test_cross_reference_errors_after_structure_is_valid() -> None:
    text = """\
tenants:
  acme:
    default_queue: missing
    sla_policies:
      std:
        calendar: office
        first_response: 1h
        escalations:
          - {target: first_response, at: 1.0, action: move_queue, to_queue: nowhere}
    queues:
      - id: a
      - id: a
"""
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.yaml")
    found = {(i.line, i.field) for i in info.value.issues}
    assert found == {
        (3, "tenants.acme.default_queue"),
        (6, "tenants.acme.sla_policies.std.calendar"),
        (9, "tenants.acme.sla_policies.std.escalations[0].to_queue"),
        (12, "tenants.acme.queues[1].id"),
    }


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(RulesError) as info:
        parse_rules("tenants:\n  acme:\n    queues: [\n      - id: x\n", "bad.yaml")
    assert info.value.issues[0].file == "bad.yaml"
    assert info.value.issues[0].line is not None
    assert "YAML syntax" in info.value.issues[0].message


def test_not_a_mapping_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="must be a mapping"):
        parse_rules("- a\n- b\n")
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "absent.yaml")


def test_bad_tenant_id_is_reported() -> None:
    with pytest.raises(RulesError) as info:
        parse_rules("tenants:\n  Bad Tenant:\n    queues:\n      - id: x\n", "r.yaml")
    assert info.value.issues[0].field.startswith("tenants.Bad Tenant")
    assert info.value.issues[0].line == 2


def test_cel_evaluation_errors_are_value_errors() -> None:
    rules = parse_rules(MINIMAL + "        match_expr: 'contact.attributes.tier == \"gold\"'\n")
    expr = rules.tenants["acme"].queues[0].match_expr
    assert expr is not None
    assert expr.evaluate({"contact": {"attributes": {"tier": "gold"}}}) is True
    with pytest.raises(ValueError, match="CEL evaluation failed"):
        expr.evaluate({"contact": {"attributes": {}}})
    number = parse_rules(MINIMAL + "        match_expr: '1 + 1'\n").tenants["acme"].queues[0].match_expr
    assert number is not None
    with pytest.raises(ValueError, match="not bool"):
        number.evaluate({})
