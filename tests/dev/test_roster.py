"""The example roster and its loading through the router API (a stand-in router over real HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from switchboard.common.demo_profile import ProfileError, find_dev_paths
from switchboard.common.demo_roster import Roster, inbox_url, load_roster, put_roster, wait_ready
from switchboard.common.runtime import running_app

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def roster() -> Roster:
    paths = find_dev_paths([REPO])
    assert paths.roster_file is not None
    return load_roster(paths.roster_file)


def _eligible(roster: Roster, tenant: str, skills: dict[str, int], team: str | None = None) -> list[str]:
    out = []
    for agent in roster.agents:
        if agent.tenant != tenant or any(agent.skills.get(s, 0) < level for s, level in skills.items()):
            continue
        teams = agent.attributes.get("teams")
        if team is not None and not (isinstance(teams, list) and team in teams):
            continue
        out.append(agent.id)
    return out


def test_every_example_queue_has_an_agent(roster: Roster) -> None:
    rules = yaml.safe_load((REPO / "services/router/examples/rules.yaml").read_text())
    for tenant, spec in rules["tenants"].items():
        for queue in spec["queues"]:
            team = "vip" if "vip" in (queue.get("agent_filter") or "") else None
            assert _eligible(roster, tenant, queue.get("skills", {}), team), f"{tenant}/{queue['id']}"
    # relaxation shows: someone joins the spanish and billing pools only after their steps
    assert set(_eligible(roster, "acme", {"spanish": 3})) > set(_eligible(roster, "acme", {"spanish": 6}))
    assert set(_eligible(roster, "acme", {"billing": 1})) > set(_eligible(roster, "acme", {"billing": 4}))


def test_every_agent_has_an_inbox_page(roster: Roster) -> None:
    assert len(roster.agents) >= 8
    assert {a.tenant for a in roster.agents} == {"acme", "globex"}
    for agent in roster.agents:
        assert agent.presence == "available"
        assert agent.inbox_target() == f"{agent.tenant}/{agent.id}"
        assert inbox_url("http://127.0.0.1:8084", agent) == f"http://127.0.0.1:8084/inbox/{agent.tenant}/{agent.id}"
        body = agent.body()
        assert body["endpoints"] == [{"kind": "inbox", "target": f"{agent.tenant}/{agent.id}", "options": {}}]
        assert body["capacity"] == agent.capacity


def test_a_bad_roster_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text("agents:\n  - {tenant: acme, id: a, skills: {billing: 11}}\n")
    with pytest.raises(ProfileError, match=r"agents\.0\.skills\.billing"):
        load_roster(path)
    path.write_text("agents:\n  - {tenant: acme, id: a}\n  - {tenant: acme, id: a}\n")
    with pytest.raises(ProfileError, match="listed twice"):
        load_roster(path)


class StandInRouter:
    """Answers ``/readyz`` and agent upserts the way the router does while it starts."""

    def __init__(self, *, not_ready: int = 0, unavailable: int = 0) -> None:
        self.not_ready = not_ready
        self.unavailable = unavailable
        self.bodies: dict[str, dict[str, Any]] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/readyz", self.readyz)
        app.router.add_put("/v1/tenants/{tenant}/agents/{agent}", self.put)
        return app

    async def readyz(self, _request: web.Request) -> web.Response:
        if self.not_ready > 0:
            self.not_ready -= 1
            return web.json_response({"status": "not ready"}, status=503)
        return web.json_response({"status": "ready"})

    async def put(self, request: web.Request) -> web.Response:
        tenant, agent = request.match_info["tenant"], request.match_info["agent"]
        if self.unavailable > 0:
            self.unavailable -= 1
            return web.json_response({"error": "broker unavailable"}, status=503)
        if tenant not in ("acme", "globex"):
            return web.json_response({"error": f"tenant {tenant!r} is not in the routing rules"}, status=404)
        body = await request.json()
        if body.get("presence") == "sleeping":
            return web.json_response({"error": "validation failed", "details": ["presence"]}, status=422)
        self.bodies[f"{tenant}/{agent}"] = body
        return web.json_response({"event_id": "e1", "schema": "agent-upserted/v1"}, status=202)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_the_roster_is_loaded_once_the_router_accepts(roster: Roster, http: aiohttp.ClientSession) -> None:
    router = StandInRouter(not_ready=2, unavailable=3)
    sleeps = Sleeps()
    async with running_app(router.app()) as url:
        assert await wait_ready(http, url, timeout=10, interval=1, sleep=sleeps)
        assert sleeps.calls == [1, 1]
        results = await put_roster(http, url, roster.agents, attempts=5, interval=0.5, sleep=sleeps)
    assert [r.ok for r in results] == [True] * len(roster.agents)
    assert sleeps.calls[2:] == [0.5, 0.5, 0.5]  # three 503s retried
    ava = router.bodies["acme/ava"]
    assert ava["skills"]["support"] >= 5
    assert "vip" in ava["attributes"]["teams"]
    assert ava["source"] == "dev-roster"


async def test_refusals_are_reported_not_retried_forever(roster: Roster, http: aiohttp.ClientSession) -> None:
    agents = [
        roster.agents[0],
        roster.agents[0].model_copy(update={"tenant": "initech"}),
        roster.agents[1].model_copy(update={"presence": "sleeping"}),
    ]
    sleeps = Sleeps()
    async with running_app(StandInRouter().app()) as url:
        results = await put_roster(http, url, agents, attempts=3, interval=1, sleep=sleeps)
    assert [(r.ok, r.status) for r in results] == [(True, 202), (False, 404), (False, 422)]
    assert results[1].reason is not None
    assert "not in the routing rules" in results[1].reason
    assert results[2].reason == "validation failed ['presence']"
    assert sleeps.calls == [1, 1]  # 404 retried (the router may still be loading its rules), 422 not


async def test_an_absent_router_is_reported(roster: Roster, http: aiohttp.ClientSession) -> None:
    sleeps = Sleeps()
    assert not await wait_ready(http, "http://127.0.0.1:1", timeout=3, interval=1, sleep=sleeps)
    assert len(sleeps.calls) == 3
    [result] = await put_roster(http, "http://127.0.0.1:1", roster.agents[:1], attempts=2, sleep=sleeps)
    assert result.status is None
    assert result.reason is not None
    assert result.reason.startswith("router unreachable")
