"""The routing rules file: tenants, queues, SLA policies, business-hours calendars.

The file is YAML (see ``docs/rules.md``). :func:`load_rules` reads and validates it and
raises :class:`RulesError` whose issues name the file, the line and the field of every
problem. CEL expressions (``match_expr``, ``agent_filter``) are compiled while loading,
so a bad expression is a load error, never a runtime surprise.
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cel
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from switchboard.common.events import Channel, DeliveryEndpoint

__all__ = [
    "BusinessHours",
    "CelExpression",
    "EscalationAction",
    "EscalationStep",
    "MatchConditions",
    "Mode",
    "Queue",
    "RelaxationStep",
    "RouterOptions",
    "Rules",
    "RulesError",
    "RulesIssue",
    "SlaPolicy",
    "SlaTarget",
    "Strategy",
    "TenantRules",
    "load_rules",
    "parse_duration",
    "parse_rules",
]

# --------------------------------------------------------------------------- durations

_DURATION_RE = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(value: object) -> object:
    """Accept ``90``, ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` (and timedelta) as a duration."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '5m', '1h30m', '2d'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not value.strip() or match is None or not any(match.groups()):
            raise ValueError(f"{value!r} is not a duration; write for example '45s', '5m', '1h30m', '2d'")
        days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), Field(gt=timedelta(0))]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
SkillLevel = Annotated[int, Field(ge=1, le=10)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- CEL


class CelExpression:
    """A CEL expression compiled at load time; evaluates to a boolean over a mapping of variables."""

    __slots__ = ("_program", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._program = cel.compile(source)
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"invalid CEL expression: {exc}") from None

    def evaluate(self, variables: Mapping[str, Any]) -> bool:
        """True only when the expression yields ``true``; raises :class:`ValueError` on an error."""
        try:
            result = self._program.execute(dict(variables))
        except Exception as exc:  # the CEL runtime raises KeyError, TypeError, RuntimeError, ...
            raise ValueError(f"CEL evaluation failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(result, bool):
            raise ValueError(f"CEL expression yielded {type(result).__name__}, not bool")
        return result

    def __repr__(self) -> str:
        return f"CelExpression({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CelExpression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


def _compile_cel(value: object) -> CelExpression:
    if isinstance(value, CelExpression):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a CEL expression must be a non-empty string")
    return CelExpression(value)


Cel = Annotated[
    CelExpression,
    PlainValidator(_compile_cel),
    PlainSerializer(lambda expr: expr.source, return_type=str),
]

# --------------------------------------------------------------------------- calendars

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_INTERVAL_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _parse_interval(value: object) -> object:
    if not isinstance(value, str):
        return value
    match = _INTERVAL_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not an interval; write 'HH:MM-HH:MM', for example '09:00-17:30'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{value!r} is not a valid time interval")
    start = h1 * 60 + m1
    end = h2 * 60 + m2
    if end <= start:
        raise ValueError(f"interval {value!r} ends before it starts")
    return (start, end)


Interval = Annotated[tuple[int, int], BeforeValidator(_parse_interval)]
"""A daily interval in minutes after local midnight, ``[start, end)``; end may be 24:00."""


class BusinessHours(_Frozen):
    """A business-hours calendar: local intervals per weekday, and holidays (closed all day)."""

    timezone: str
    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], tuple[Interval, ...]]
    holidays: frozenset[date] = frozenset()

    _zone: ZoneInfo = PrivateAttr()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("hours")
    @classmethod
    def _no_overlap(cls, value: dict[str, tuple[tuple[int, int], ...]]) -> dict[str, tuple[tuple[int, int], ...]]:
        out: dict[str, tuple[tuple[int, int], ...]] = {}
        for day, intervals in value.items():
            ordered = tuple(sorted(intervals))
            for (_, end), (start, _) in itertools.pairwise(ordered):
                if start < end:
                    raise ValueError(f"intervals on {day} overlap")
            out[day] = ordered
        if not any(out.values()):
            raise ValueError("a calendar needs at least one open interval in the week")
        return out

    def model_post_init(self, context: Any, /) -> None:
        self._zone = ZoneInfo(self.timezone)

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    def intervals_on(self, day: date) -> tuple[tuple[int, int], ...]:
        """The open intervals (minutes after local midnight) on a local date."""
        if day in self.holidays:
            return ()
        return self.hours.get(_WEEKDAYS[day.weekday()], ())  # type: ignore[call-overload,no-any-return]


# --------------------------------------------------------------------------- SLA


class SlaTarget(enum.StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


class EscalationAction(enum.StrEnum):
    WARN_AGENT = "warn_agent"
    RAISE_PRIORITY = "raise_priority"
    RELAX = "relax"
    MOVE_QUEUE = "move_queue"
    REASSIGN = "reassign"
    NOTIFY_SUPERVISOR = "notify_supervisor"


def _parse_at(value: object) -> object:
    """``at``: a fraction of the target (``0.75`` or ``"75%"``) or a duration (``"30m"``)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage") from None
    if isinstance(value, str):
        return parse_duration(value)
    return value


class EscalationStep(_Frozen):
    """One escalation: when the clock of ``target`` reaches ``at``, do ``action``."""

    name: Identifier | None = None
    target: SlaTarget
    at: Annotated[float | timedelta, BeforeValidator(_parse_at)] = Field(
        description="a fraction of the target (0.75, '75%') or an absolute business duration ('30m')"
    )
    action: EscalationAction
    raise_by: Annotated[int, Field(ge=1, le=100)] = 1
    to_queue: Identifier | None = None
    supervisor: DeliveryEndpoint | None = None

    @field_validator("at")
    @classmethod
    def _positive(cls, value: float | timedelta) -> float | timedelta:
        if isinstance(value, timedelta):
            if value <= timedelta(0):
                raise ValueError("an absolute escalation time must be positive")
        elif not 0.0 < value <= 10.0:
            raise ValueError("a fraction must be above 0 and at most 10 (1.0 is the target)")
        return value

    @model_validator(mode="after")
    def _action_fields(self) -> EscalationStep:
        if self.action is EscalationAction.MOVE_QUEUE and self.to_queue is None:
            raise ValueError("action move_queue needs to_queue")
        if self.action is EscalationAction.NOTIFY_SUPERVISOR and self.supervisor is None:
            raise ValueError("action notify_supervisor needs supervisor (a delivery endpoint)")
        return self

    def label(self, index: int) -> str:
        return self.name or f"{self.target.value}#{index}:{self.action.value}"


class SlaPolicy(_Frozen):
    calendar: Identifier | None = Field(default=None, description="business hours; none means 24x7")
    first_response: PositiveDuration | None = None
    next_response: PositiveDuration | None = None
    resolution: PositiveDuration | None = None
    escalations: tuple[EscalationStep, ...] = ()

    def target(self, which: SlaTarget) -> timedelta | None:
        value: timedelta | None = getattr(self, which.value)
        return value

    @model_validator(mode="after")
    def _targets_exist(self) -> SlaPolicy:
        for step in self.escalations:
            if isinstance(step.at, float) and self.target(step.target) is None:
                raise ValueError(f"an escalation at a fraction of {step.target.value}, which has no target")
        return self


# --------------------------------------------------------------------------- queues


class Strategy(enum.StrEnum):
    LEAST_LOADED = "least_loaded"
    LONGEST_IDLE = "longest_idle"
    HIGHEST_PROFICIENCY = "highest_proficiency"


class Mode(enum.StrEnum):
    PUSH = "push"
    OFFER = "offer"


class MatchConditions(_Frozen):
    """Structured match: every field given must hold; a list matches when any of its items does."""

    channels: frozenset[Channel] | None = None
    providers: frozenset[str] | None = None
    languages: frozenset[str] | None = None
    inboxes: frozenset[str] | None = None
    keywords: tuple[str, ...] | None = Field(default=None, description="in the subject or the text")
    subject_keywords: tuple[str, ...] | None = None
    attributes: dict[str, JsonValue] | None = Field(
        default=None, description="customer attributes: equal to the value, or to one of a list of values"
    )

    @field_validator("languages")
    @classmethod
    def _lower_languages(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        return None if value is None else frozenset(v.lower() for v in value)

    @field_validator("keywords", "subject_keywords")
    @classmethod
    def _lower_keywords(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(v.lower() for v in value)


class RelaxationStep(_Frozen):
    """After ``after`` in the queue, drop or lower skill requirements and widen to other queues."""

    name: Identifier | None = None
    after: PositiveDuration
    drop_skills: frozenset[str] = frozenset()
    lower_skills: dict[str, SkillLevel] = Field(default_factory=dict)
    widen_to: tuple[Identifier, ...] = ()

    def label(self, index: int) -> str:
        return self.name or f"step{index + 1}"


class Queue(_Frozen):
    id: Identifier
    match: MatchConditions = MatchConditions()
    match_expr: Cel | None = None
    agent_filter: Cel | None = None
    skills: dict[str, SkillLevel] = Field(default_factory=dict)
    priority: Annotated[int, Field(ge=0, le=1000)] = 0
    strategy: Strategy = Strategy.LEAST_LOADED
    mode: Mode = Mode.PUSH
    offer_timeout: PositiveDuration = timedelta(seconds=60)
    sla_policy: Identifier | None = None
    relaxation: tuple[RelaxationStep, ...] = ()

    @field_validator("relaxation")
    @classmethod
    def _ordered(cls, value: tuple[RelaxationStep, ...]) -> tuple[RelaxationStep, ...]:
        for earlier, later in itertools.pairwise(value):
            if later.after <= earlier.after:
                raise ValueError("relaxation steps must be ordered by strictly increasing 'after'")
        return value


class RouterOptions(_Frozen):
    sticky_window: Duration = timedelta(days=7)
    reopen_window: Duration = timedelta(days=3)
    offline_grace: Duration = timedelta(minutes=5)


class TenantRules(_Frozen):
    options: RouterOptions | None = None
    calendars: dict[Identifier, BusinessHours] = Field(default_factory=dict)
    sla_policies: dict[Identifier, SlaPolicy] = Field(default_factory=dict)
    queues: tuple[Queue, ...] = Field(min_length=1)
    default_queue: Identifier | None = Field(
        default=None, description="where a conversation goes when no queue matches"
    )

    _by_id: dict[str, Queue] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        self._by_id = {q.id: q for q in self.queues}

    def queue(self, queue_id: str) -> Queue | None:
        return self._by_id.get(queue_id)


TenantKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class Rules(_Frozen):
    version: Literal[1] = 1
    options: RouterOptions = RouterOptions()
    tenants: dict[TenantKey, TenantRules]

    def tenant(self, tenant_id: str) -> TenantRules | None:
        return self.tenants.get(tenant_id)

    def options_for(self, tenant_id: str) -> RouterOptions:
        tenant = self.tenants.get(tenant_id)
        return tenant.options if tenant is not None and tenant.options is not None else self.options


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class RulesIssue:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field or '<root>'}: {self.message}"


class RulesError(ValueError):
    """The rules file cannot be used; ``issues`` lists every problem with its line and field."""

    def __init__(self, issues: Sequence[RulesIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("invalid rules:\n" + "\n".join(f"  {issue}" for issue in self.issues))


Path_ = tuple[str | int, ...]


def _line_map(node: yaml.Node, path: Path_, out: dict[Path_, int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            # the key's line names the field better than its value's (which may be on the next line)
            out[(*path, key)] = key_node.start_mark.line + 1
            _line_map(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), out)


def _format_path(path: Path_) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _lookup_line(lines: Mapping[Path_, int], path: Path_) -> int | None:
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def _cross_check(rules: Rules) -> list[tuple[Path_, str]]:
    problems: list[tuple[Path_, str]] = []
    for tenant_id, tenant in rules.tenants.items():
        base: Path_ = ("tenants", tenant_id)
        ids = [q.id for q in tenant.queues]
        for index, queue in enumerate(tenant.queues):
            if ids.index(queue.id) != index:
                problems.append(((*base, "queues", index, "id"), f"duplicate queue id {queue.id!r}"))
            if queue.sla_policy is not None and queue.sla_policy not in tenant.sla_policies:
                problems.append(((*base, "queues", index, "sla_policy"), f"unknown SLA policy {queue.sla_policy!r}"))
            for s_index, step in enumerate(queue.relaxation):
                for target in step.widen_to:
                    if target not in ids or target == queue.id:
                        problems.append(
                            (
                                (*base, "queues", index, "relaxation", s_index, "widen_to"),
                                f"widen_to names {target!r}, which is not another queue of this tenant",
                            )
                        )
        if tenant.default_queue is not None and tenant.default_queue not in ids:
            problems.append(((*base, "default_queue"), f"unknown queue {tenant.default_queue!r}"))
        for name, policy in tenant.sla_policies.items():
            where: Path_ = (*base, "sla_policies", name)
            if policy.calendar is not None and policy.calendar not in tenant.calendars:
                problems.append(((*where, "calendar"), f"unknown calendar {policy.calendar!r}"))
            for e_index, escalation in enumerate(policy.escalations):
                if escalation.to_queue is not None and escalation.to_queue not in ids:
                    problems.append(
                        (
                            (*where, "escalations", e_index, "to_queue"),
                            f"unknown queue {escalation.to_queue!r}",
                        )
                    )
    return problems


def parse_rules(text: str, source: str = "<rules>") -> Rules:
    """Validate rules from YAML text; ``source`` names the file in error messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise RulesError([RulesIssue(source, line, "", f"YAML syntax: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise RulesError([RulesIssue(source, None, "", f"YAML error: {exc}")]) from None
    lines: dict[Path_, int] = {}
    if node is not None:
        _line_map(node, (), lines)
    if not isinstance(data, dict):
        raise RulesError([RulesIssue(source, 1, "", "the rules file must be a mapping with 'tenants'")])
    try:
        rules = Rules.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        locs = [tuple(err["loc"]) for err in errors]
        issues = [
            RulesIssue(source, _lookup_line(lines, loc), _format_path(loc), err["msg"])
            for err, loc in zip(errors, locs, strict=True)
            # a list whose items failed is also reported as too short: keep only the real cause
            if not (
                err["type"] == "too_short" and any(other[: len(loc)] == loc and len(other) > len(loc) for other in locs)
            )
        ]
        raise RulesError(issues) from None
    problems = _cross_check(rules)
    if problems:
        raise RulesError(
            [RulesIssue(source, _lookup_line(lines, path), _format_path(path), msg) for path, msg in problems]
        )
    return rules


def load_rules(path: str | Path) -> Rules:
    """Read and validate a rules file; raises :class:`RulesError` (also for an unreadable file)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError([RulesIssue(str(file), None, "", f"cannot read: {exc}")]) from None
    return parse_rules(text, str(file))
