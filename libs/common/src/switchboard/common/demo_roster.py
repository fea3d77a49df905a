"""The example roster: read ``examples/dev/roster.yaml`` and load it through the router API.

Each agent becomes one ``PUT /v1/tenants/{tenant}/agents/{id}``. The router may still be
starting (connection refused, 503 while the broker or its consumers are not ready, 404
until its rules are loaded): those answers are retried with a pause; any other refusal
(400, 415, 422) is final and reported with the router's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, ValidationError, model_validator

from switchboard.common.demo_profile import ProfileError, load_yaml

__all__ = [
    "AgentResult",
    "Roster",
    "RosterAgent",
    "inbox_url",
    "load_roster",
    "put_roster",
    "wait_ready",
]

Sleep = Callable[[float], Awaitable[None]]
TenantId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
AgentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
RETRYABLE = frozenset({404, 429, 500, 502, 503, 504})


class RosterEndpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["slack", "teams", "email", "webhook", "inbox"]
    target: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    options: dict[str, JsonValue] = Field(default_factory=dict)


class RosterAgent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: TenantId
    id: AgentId
    display_name: str | None = None
    skills: dict[str, Annotated[int, Field(ge=1, le=10)]] = Field(default_factory=dict)
    capacity: dict[str, Annotated[int, Field(ge=0, le=1000)]] = Field(default_factory=dict)
    presence: Literal["available", "busy", "away", "offline"] = "available"
    endpoints: tuple[RosterEndpoint, ...] = ()
    attributes: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"/v1/tenants/{self.tenant}/agents/{self.id}"

    def body(self) -> dict[str, JsonValue]:
        """The router API's upsert body (the ``source`` says where the agent came from)."""
        body: dict[str, JsonValue] = {
            "skills": dict(self.skills),
            "capacity": dict(self.capacity),
            "presence": self.presence,
            "endpoints": [e.model_dump(mode="json") for e in self.endpoints],
            "attributes": dict(self.attributes),
            "source": "dev-roster",
        }
        if self.display_name:
            body["display_name"] = self.display_name
        return body

    def inbox_target(self) -> str | None:
        return next((e.target for e in self.endpoints if e.kind == "inbox"), None)


class Roster(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    agents: tuple[RosterAgent, ...]

    @model_validator(mode="after")
    def _unique(self) -> Roster:
        seen: set[tuple[str, str]] = set()
        for agent in self.agents:
            key = (agent.tenant, agent.id)
            if key in seen:
                raise ValueError(f"agent {agent.tenant}/{agent.id} is listed twice")
            seen.add(key)
        return self


def load_roster(path: Path) -> Roster:
    """The roster file, validated; :class:`ProfileError` names the file and the bad fields."""
    data = load_yaml(path)
    try:
        return Roster.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'roster'}: {err['msg']}"
            for err in exc.errors(include_url=False)[:5]
        )
        raise ProfileError(f"invalid roster {path}: {problems}") from None


def inbox_url(notifier_url: str, agent: RosterAgent) -> str | None:
    """The agent's inbox page on the notifier, when the agent has an inbox endpoint."""
    target = agent.inbox_target()
    return f"{notifier_url.rstrip('/')}/inbox/{target}" if target else None


async def wait_ready(
    http: aiohttp.ClientSession,
    base_url: str,
    *,
    timeout: float,
    interval: float = 1.0,
    sleep: Sleep = asyncio.sleep,
) -> bool:
    """Poll ``GET /readyz`` until 200; False after ``timeout`` seconds of polling (``interval`` apart)."""
    attempts = max(1, int(timeout / interval) + 1)
    for attempt in range(attempts):
        try:
            async with http.get(f"{base_url}/readyz") as resp:
                if resp.status == 200:
                    return True
        except (aiohttp.ClientError, TimeoutError):
            pass
        if attempt + 1 < attempts:
            await sleep(interval)
    return False


@dataclass(frozen=True, slots=True)
class AgentResult:
    agent: RosterAgent
    status: int | None
    """The router's last HTTP status, ``None`` when it never answered."""
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def _reason(resp: aiohttp.ClientResponse) -> str:
    try:
        data = await resp.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return f"HTTP {resp.status}"
    if isinstance(data, dict) and data.get("error"):
        details = data.get("details")
        return f"{data['error']}" + (f" {details}" if details else "")
    return f"HTTP {resp.status}"


async def put_agent(
    http: aiohttp.ClientSession,
    base_url: str,
    agent: RosterAgent,
    *,
    attempts: int = 30,
    interval: float = 1.0,
    sleep: Sleep = asyncio.sleep,
) -> AgentResult:
    """Upsert one agent, retrying while the router is starting."""
    status: int | None = None
    reason: str | None = "router unreachable"
    for attempt in range(attempts):
        try:
            async with http.put(f"{base_url}{agent.path}", json=agent.body()) as resp:
                status = resp.status
                if 200 <= status < 300:
                    return AgentResult(agent, status)
                reason = await _reason(resp)
                if status not in RETRYABLE:
                    return AgentResult(agent, status, reason)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, reason = None, f"router unreachable ({type(exc).__name__})"
        if attempt + 1 < attempts:
            await sleep(interval)
    return AgentResult(agent, status, reason)


async def put_roster(
    http: aiohttp.ClientSession,
    base_url: str,
    agents: Sequence[RosterAgent],
    *,
    attempts: int = 30,
    interval: float = 1.0,
    sleep: Sleep = asyncio.sleep,
) -> list[AgentResult]:
    """Upsert every agent in order (one tenant's agents keep their order on its partition)."""
    return [
        await put_agent(http, base_url, agent, attempts=attempts, interval=interval, sleep=sleep) for agent in agents
    ]
