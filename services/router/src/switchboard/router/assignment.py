"""Agent selection: requirements per relaxation step, the indexed choice, and a scan baseline.

A queue's requirement at relaxation step *k* is the queue's skills after applying its
first *k* relaxation steps (lower or drop skills), plus, as alternatives, the base skills
of every queue it has been widened to (bullseye rings). An agent is eligible when they
take work (available, reachable), have room on the conversation's channel, meet every
skill of one alternative, did not decline the conversation, and pass the queue's agent
filter. The best eligible agent is the one with the smallest strategy key
(:func:`~switchboard.router.state.strategy_key`), ties broken by agent id.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from switchboard.common.events import Candidate, Channel, Presence
from switchboard.router.rules import CelExpression, Queue, Strategy, TenantRules
from switchboard.router.state import Agent, AgentIndex, Signature, strategy_key

__all__ = [
    "MAX_LOGGED_CANDIDATES",
    "Requirement",
    "Selection",
    "SkillSet",
    "check_agent",
    "compile_requirements",
    "select_agent",
    "select_by_scan",
]

MAX_LOGGED_CANDIDATES = 16


@dataclass(frozen=True, slots=True)
class SkillSet:
    """Skills with minimum levels; the first is the primary skill (highest_proficiency orders by it)."""

    skills: tuple[tuple[str, int], ...]
    origin: str
    signature: Signature = field(init=False, repr=False, compare=False)
    """The index bucket walked for this skill set (made once: every decision looks it up)."""

    def __post_init__(self) -> None:
        signature = (self.primary or "", tuple(sorted(name for name, _ in self.skills)))
        object.__setattr__(self, "signature", signature)

    @property
    def primary(self) -> str | None:
        return self.skills[0][0] if self.skills else None


@dataclass(frozen=True, slots=True)
class Requirement:
    """What an agent must meet at one relaxation step of a queue."""

    step: int
    label: str
    alternatives: tuple[SkillSet, ...]


def compile_requirements(tenant: TenantRules) -> dict[str, tuple[Requirement, ...]]:
    """Every queue's requirement at each relaxation step (index 0 is the base requirement)."""
    base = {q.id: SkillSet(tuple(q.skills.items()), q.id) for q in tenant.queues}
    out: dict[str, tuple[Requirement, ...]] = {}
    for queue in tenant.queues:
        skills = dict(queue.skills)
        widened: list[str] = []
        steps = [Requirement(0, "base", (base[queue.id],))]
        for index, step in enumerate(queue.relaxation):
            for skill, level in step.lower_skills.items():
                if skill in skills:
                    skills[skill] = min(skills[skill], level)
            for skill in step.drop_skills:
                skills.pop(skill, None)
            widened.extend(w for w in step.widen_to if w not in widened)
            own = SkillSet(tuple(skills.items()), queue.id)
            alternatives = (own, *(base[w] for w in widened))
            steps.append(Requirement(index + 1, step.label(index), alternatives))
        out[queue.id] = tuple(steps)
    return out


def index_needs(
    tenant: TenantRules, requirements: Mapping[str, tuple[Requirement, ...]]
) -> dict[Strategy, set[Signature]]:
    """Which (strategy, skill signature) buckets selection walks: one per requirement alternative."""
    needs: dict[Strategy, set[Signature]] = {}
    for queue in tenant.queues:
        for requirement in requirements[queue.id]:
            for alternative in requirement.alternatives:
                needs.setdefault(queue.strategy, set()).add(alternative.signature)
    return needs


@dataclass(slots=True)
class Selection:
    agent: Agent | None
    candidates: list[Candidate]
    reason: str
    sticky: bool = False


ConvVars = Callable[[], Mapping[str, Any]]


def check_agent(
    agent: Agent,
    channel: Channel,
    skillset: SkillSet,
    declined: set[str] | frozenset[str],
    agent_filter: CelExpression | None,
    conv_vars: ConvVars,
) -> str | None:
    """None when the agent is eligible, otherwise why not.

    The checks of :meth:`Agent.takes_work` and :meth:`Agent.has_room` are written out here:
    a decision runs this for every agent it walks past.
    """
    if agent.presence is not Presence.AVAILABLE or not agent.endpoints:
        return f"presence {agent.presence.value}" if agent.endpoints else "no delivery endpoint"
    load = agent.load.get(channel, 0)
    capacity = agent.capacity.get(channel, 0)
    if capacity <= load:
        return f"no room on {channel.value} ({load}/{capacity})"
    skills = agent.skills
    for skill, level in skillset.skills:
        have = skills.get(skill, 0)
        if have < level:
            return f"skill {skill} {have} below {level}"
    if agent.id in declined:
        return "declined or timed out on this conversation"
    if agent_filter is not None:
        try:
            passed = agent_filter.evaluate({**conv_vars(), "agent": agent.cel_view()})
        except ValueError as exc:
            return f"agent filter error: {exc}"
        if not passed:
            return "agent filter rejected"
    return None


@functools.lru_cache(maxsize=8192)
def _passed_over(agent_id: str, reason: str) -> Candidate:
    """The logged candidate of an agent a walk passed over (frozen, so shared).

    The same agents head a bucket decision after decision and fail the same check (a skill
    level below the queue's), so most of these are built once, not once per decision.
    """
    return Candidate(agent_id=agent_id, eligible=False, reason=reason)


def _describe(strategy: Strategy, agent: Agent, channel: Channel, skill: str | None) -> str:
    if strategy is Strategy.LEAST_LOADED:
        return f"least loaded ({agent.load.get(channel, 0)}/{agent.capacity.get(channel, 0)} on {channel.value})"
    if strategy is Strategy.LONGEST_IDLE:
        since = agent.idle_since.isoformat() if agent.idle_since else "never busy"
        return f"longest idle (since {since})"
    return f"highest proficiency ({skill or 'any'} {agent.skills.get(skill or '', 0)})"


def select_agent(
    agents: Mapping[str, Agent],
    index: AgentIndex,
    channel: Channel,
    requirement: Requirement,
    queue: Queue,
    declined: set[str] | frozenset[str],
    conv_vars: ConvVars,
    sticky_agent_id: str | None = None,
) -> Selection:
    """The indexed choice: walk each alternative's bucket in strategy order to its first eligible agent.

    The bucket holds the agents with room on the channel who have every skill of the
    alternative; the walk checks levels, declines and the agent filter, and logs the agents
    it passes over (up to :data:`MAX_LOGGED_CANDIDATES` in all).
    """
    strategy = queue.strategy
    candidates: list[Candidate] = []
    if sticky_agent_id is not None:
        sticky = agents.get(sticky_agent_id)
        if sticky is not None:
            reasons = []
            for skillset in requirement.alternatives:
                why = check_agent(sticky, channel, skillset, declined, queue.agent_filter, conv_vars)
                if why is None:
                    candidates.append(Candidate(agent_id=sticky.id, eligible=True, reason="sticky: last agent"))
                    return Selection(sticky, candidates, "sticky: the contact's last agent", sticky=True)
                reasons.append(why)
            candidates.append(
                Candidate(agent_id=sticky.id, eligible=False, reason=f"sticky agent not eligible: {reasons[0]}")
            )
    best: tuple[tuple[Any, ...], Agent, SkillSet] | None = None
    agent_filter = queue.agent_filter
    for skillset in requirement.alternatives:
        bucket = index.bucket(channel, skillset.signature, strategy)
        if bucket is None:
            continue
        levels = skillset.skills
        for sort_key in bucket:
            agent = agents[sort_key[-1]]
            skills = agent.skills
            for skill, level in levels:
                have = skills.get(skill, 0)
                if have < level:
                    break  # not eligible: the reason is only worked out if it is logged
            else:
                why = check_agent(agent, channel, skillset, declined, agent_filter, conv_vars)
                if why is None:
                    if best is None or sort_key < best[0]:
                        best = (sort_key, agent, skillset)
                    break
                if len(candidates) < MAX_LOGGED_CANDIDATES:
                    candidates.append(_passed_over(agent.id, why))
                continue
            if len(candidates) < MAX_LOGGED_CANDIDATES:
                passed_over = check_agent(agent, channel, skillset, declined, agent_filter, conv_vars)
                assert passed_over is not None  # a skill below its level is always a reason
                candidates.append(_passed_over(agent.id, passed_over))
    if best is None:
        return Selection(None, candidates, "no eligible agent")
    _, agent, skillset = best
    reason = _describe(strategy, agent, channel, skillset.primary)
    if skillset.origin != queue.id:
        reason += f", widened to queue {skillset.origin}"
    candidates.insert(0, Candidate(agent_id=agent.id, eligible=True, reason=f"chosen: {reason}"))
    return Selection(agent, candidates, reason)


def select_by_scan(
    agents: Iterable[Agent],
    channel: Channel,
    requirement: Requirement,
    queue: Queue,
    declined: set[str] | frozenset[str],
    conv_vars: ConvVars,
) -> Agent | None:
    """The baseline: check every agent and take the smallest strategy key (for tests and the bench)."""
    best: tuple[tuple[Any, ...], Agent] | None = None
    for agent in agents:
        for skillset in requirement.alternatives:
            if check_agent(agent, channel, skillset, declined, queue.agent_filter, conv_vars) is None:
                key = strategy_key(queue.strategy, agent, channel, skillset.primary or "")
                if best is None or key < best[0]:
                    best = (key, agent)
    return best[1] if best is not None else None
