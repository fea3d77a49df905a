"""The fast paths of a decision against their plain definitions, over seeded random populations.

- :func:`select_agent` (which checks skill levels before anything else and shares the logged
  candidates of agents it passes over) chooses the same agent, with the same candidates and
  reason, as the plain walk that checks every agent it meets with :func:`check_agent`;
- :class:`AgentIndex` (which files an agent by a lookup of the needs its skills cover)
  holds, after any sequence of changes, exactly the buckets the definition gives;
- a queue's keywords found by one search match exactly when one search per word would;
- a restore freezes what it built, and what a later revocation drops is freed.
"""

from __future__ import annotations

import gc
import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from switchboard.common.events import Candidate, Channel, DeliveryEndpoint, EndpointKind, Presence
from switchboard.router.assignment import (
    MAX_LOGGED_CANDIDATES,
    Requirement,
    Selection,
    SkillSet,
    _describe,
    check_agent,
    compile_requirements,
    index_needs,
    select_agent,
)
from switchboard.router.engine import RouterEngine, _keywords
from switchboard.router.rules import Queue, parse_rules
from switchboard.router.snapshot import AgentRecord, ConversationRecord
from switchboard.router.state import Agent, AgentIndex, ConversationStatus, strategy_key
from switchboard.router.testing import FakeClock

SKILLS = ["billing", "spanish", "tech", "vip"]
CHANNELS = [Channel.EMAIL, Channel.CHAT, Channel.SMS]
RULES = parse_rules("""
tenants:
  acme:
    default_queue: general
    queues:
      - id: billing
        match: {keywords: [invoice]}
        skills: {billing: 5, tech: 2}
        strategy: least_loaded
        relaxation:
          - {after: 2m, lower_skills: {billing: 2}}
          - {after: 4m, drop_skills: [tech], widen_to: [spanish]}
      - id: spanish
        match: {languages: [es]}
        skills: {spanish: 4}
        strategy: longest_idle
      - id: vip
        skills: {vip: 3, billing: 1}
        strategy: highest_proficiency
        relaxation:
          - {after: 1m, widen_to: [billing, spanish]}
      - id: emea
        skills: {tech: 3}
        strategy: least_loaded
        agent_filter: '"emea" in agent.attributes.regions'
      - id: general
        strategy: least_loaded
""")
TENANT = RULES.tenants["acme"]
REQUIREMENTS = compile_requirements(TENANT)
ENDPOINTS = (DeliveryEndpoint(kind=EndpointKind.SLACK, target="U1"),)
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def random_agent(rng: random.Random, agent_id: str) -> Agent:
    capacity = {channel: rng.randint(0, 3) for channel in rng.sample(CHANNELS, rng.randint(1, 3))}
    return Agent(
        id=agent_id,
        skills={skill: rng.randint(1, rng.choice([3, 10])) for skill in rng.sample(SKILLS, rng.randint(0, 4))},
        capacity=capacity,
        load={channel: rng.randint(0, cap) for channel, cap in capacity.items()},
        presence=rng.choice([Presence.AVAILABLE, Presence.AVAILABLE, Presence.AVAILABLE, Presence.BUSY]),
        idle_since=rng.choice([None, START + timedelta(seconds=rng.randint(0, 50))]),
        endpoints=ENDPOINTS if rng.random() < 0.95 else (),
        attributes={"regions": rng.sample(["emea", "amer", "apac"], rng.randint(0, 2))},
    )


def reference_select(
    agents: Mapping[str, Agent],
    index: AgentIndex,
    channel: Channel,
    requirement: Requirement,
    queue: Queue,
    declined: frozenset[str],
    conv_vars: Any,
) -> Selection:
    """The plain walk (no stickiness): every agent met is checked with check_agent and,
    while there is room in the log, logged with a candidate of its own."""
    candidates: list[Candidate] = []
    best: tuple[tuple[Any, ...], Agent, SkillSet] | None = None
    for skillset in requirement.alternatives:
        bucket = index.bucket(channel, skillset.signature, queue.strategy)
        if bucket is None:
            continue
        for sort_key in bucket:
            agent = agents[sort_key[-1]]
            why = check_agent(agent, channel, skillset, declined, queue.agent_filter, conv_vars)
            if why is None:
                if best is None or sort_key < best[0]:
                    best = (sort_key, agent, skillset)
                break
            if len(candidates) < MAX_LOGGED_CANDIDATES:
                candidates.append(Candidate(agent_id=agent.id, eligible=False, reason=why))
    if best is None:
        return Selection(None, candidates, "no eligible agent")
    _, agent, skillset = best
    reason = _describe(queue.strategy, agent, channel, skillset.primary)
    if skillset.origin != queue.id:
        reason += f", widened to queue {skillset.origin}"
    candidates.insert(0, Candidate(agent_id=agent.id, eligible=True, reason=f"chosen: {reason}"))
    return Selection(agent, candidates, reason)


def conv_vars() -> Mapping[str, Any]:
    return {"conversation": {"channel": "email"}, "contact": {"attributes": {}}}


def test_select_agent_matches_the_plain_walk() -> None:
    rng = random.Random(5)
    compared = chosen = long_logs = 0
    for _ in range(30):
        agents = {f"a{i:03d}": random_agent(rng, f"a{i:03d}") for i in range(rng.randint(1, 200))}
        index = AgentIndex(index_needs(TENANT, REQUIREMENTS))
        for agent in agents.values():
            index.update(agent)
        # entries the index has not caught up with yet: the walk still says why each one fails
        for agent in rng.sample(sorted(agents.values(), key=lambda a: a.id), len(agents) // 10):
            if rng.random() < 0.5:
                agent.presence = Presence.AWAY
            else:
                agent.load = dict(agent.capacity)
        for _ in range(40):
            queue = rng.choice(TENANT.queues)
            requirement = rng.choice(REQUIREMENTS[queue.id])
            channel = rng.choice(CHANNELS)
            declined = frozenset(rng.sample(sorted(agents), min(len(agents), rng.randint(0, 5))))
            new = select_agent(agents, index, channel, requirement, queue, declined, conv_vars)
            old = reference_select(agents, index, channel, requirement, queue, declined, conv_vars)
            assert (new.agent, new.candidates, new.reason, new.sticky) == (old.agent, old.candidates, old.reason, False)
            compared += 1
            chosen += new.agent is not None
            long_logs += len(new.candidates) >= MAX_LOGGED_CANDIDATES
    # the population exercises both outcomes and the log limit
    assert 0 < chosen < compared
    assert long_logs > 0


def test_a_passed_over_candidate_is_shared_but_equal_to_a_new_one() -> None:
    agents = {
        agent_id: Agent(
            id=agent_id,
            skills={"billing": billing, "tech": 9},
            capacity={Channel.EMAIL: 1},
            presence=Presence.AVAILABLE,
            endpoints=ENDPOINTS,
        )
        for agent_id, billing in (("a1", 1), ("a2", 9))
    }
    index = AgentIndex(index_needs(TENANT, REQUIREMENTS))
    for agent in agents.values():
        index.update(agent)
    queue = TENANT.queue("billing")
    assert queue is not None
    first = select_agent(agents, index, Channel.EMAIL, REQUIREMENTS["billing"][0], queue, frozenset(), conv_vars)
    second = select_agent(agents, index, Channel.EMAIL, REQUIREMENTS["billing"][0], queue, frozenset(), conv_vars)
    assert first.agent is agents["a2"]
    passed = Candidate(agent_id="a1", eligible=False, reason="skill billing 1 below 5")
    assert first.candidates[1] == passed
    assert second.candidates[1] is first.candidates[1]


def expected_buckets(index: AgentIndex, agents: Mapping[str, Agent]) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
    """The index by its definition: per (channel, signature, strategy) needed, every agent who
    takes work, has room on the channel and has every skill of the signature, in key order."""
    out: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for strategy, signatures in index.needs.items():
        for signature in signatures:
            for channel in CHANNELS:
                keys = sorted(
                    strategy_key(strategy, agent, channel, signature[0])
                    for agent in agents.values()
                    if agent.takes_work() and agent.has_room(channel) and set(signature[1]) <= set(agent.skills)
                )
                if keys:
                    out[(channel, signature, strategy)] = keys
    return out


def actual_buckets(index: AgentIndex) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
    out: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for strategy, signatures in index.needs.items():
        for signature in signatures:
            for channel in CHANNELS:
                bucket = index.bucket(channel, signature, strategy)
                if bucket:
                    out[(channel, signature, strategy)] = list(bucket)
    return out


def test_agent_index_after_random_changes_is_what_the_definition_gives() -> None:
    rng = random.Random(11)
    agents = {f"a{i:02d}": random_agent(rng, f"a{i:02d}") for i in range(40)}
    index = AgentIndex(index_needs(TENANT, REQUIREMENTS))
    for agent in agents.values():
        index.update(agent)
    assert actual_buckets(index) == expected_buckets(index, agents)
    for step in range(600):
        agent = agents[rng.choice(sorted(agents))]
        change = rng.randrange(6)
        if change == 0:
            agent.skills = {skill: rng.randint(1, 10) for skill in rng.sample(SKILLS, rng.randint(0, 4))}
        elif change == 1:
            agent.presence = rng.choice(list(Presence))
        elif change == 2 and agent.capacity:
            channel = rng.choice(sorted(agent.capacity))
            agent.load[channel] = rng.randint(0, agent.capacity[channel])
        elif change == 3:
            agent.idle_since = START + timedelta(seconds=step)
        elif change == 4:
            agent.capacity[rng.choice(CHANNELS)] = rng.randint(0, 3)
        else:
            index.discard(agent.id)
            del agents[agent.id]
            agents[agent.id] = agent = random_agent(rng, agent.id)
        index.update(agent)
        if step % 25 == 0:
            assert actual_buckets(index) == expected_buckets(index, agents)
    assert actual_buckets(index) == expected_buckets(index, agents)


def test_agents_of_one_skill_set_share_their_bucket_keys() -> None:
    index = AgentIndex(index_needs(TENANT, REQUIREMENTS))
    skills = {"billing": 6, "tech": 4}
    for agent_id in ("a1", "a2"):
        index.update(
            Agent(
                id=agent_id,
                skills=dict(skills),
                capacity={Channel.EMAIL: 2},
                presence=Presence.AVAILABLE,
                endpoints=ENDPOINTS,
            )
        )
    first, second = index._entries["a1"], index._entries["a2"]
    assert [key for key, _ in first] == [key for key, _ in second]
    assert all(a is b for (a, _), (b, _) in zip(first, second, strict=True))


def _keyword(word: str) -> re.Pattern[str]:
    """One word's search, as queue matching ran it (a search per keyword) before ``_keywords``."""
    return re.compile(r"(?<!\w)" + re.escape(word) + r"(?!\w)", re.IGNORECASE)


words = st.lists(st.text(alphabet="ab-é ", min_size=0, max_size=3), min_size=1, max_size=4)


@given(words=words, text=st.text(alphabet="abAB-é \n", max_size=12))
def test_one_search_for_all_keywords_finds_what_a_search_per_keyword_finds(words: list[str], text: str) -> None:
    per_word = any(_keyword(word).search(text) for word in words)
    assert (_keywords(tuple(words)).search(text) is not None) is per_word


def test_a_restore_freezes_what_it_built_and_a_revocation_still_frees_it() -> None:
    clock = FakeClock(START)
    records: list[Any] = [
        AgentRecord(tenant_id="acme", id="a1", skills={"billing": 3}, capacity={Channel.EMAIL: 2}),
        ConversationRecord(
            tenant_id="acme",
            id="c1",
            channel=Channel.EMAIL,
            provider="test",
            contact_id="k1",
            opened_at=START,
            status=ConversationStatus.QUEUED,
            queue_id="general",
            enqueued_at=START,
        ),
    ]
    gc.collect()
    gc.unfreeze()
    try:
        before = gc.get_freeze_count()
        engine = RouterEngine(RULES, clock)
        engine.restore(records)
        assert gc.get_freeze_count() > before
        assert engine.conversation("acme", "c1") is not None
        gc.unfreeze()
        gc.collect()
        engine.forget_tenants(["acme"])
        assert gc.collect() == 0  # no reference cycles: dropping the state frees it
    finally:
        gc.unfreeze()
