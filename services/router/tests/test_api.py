"""The router API over real HTTP: validation, events written, OpenAPI covering every route."""

from __future__ import annotations

import asyncio
import io
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from openapi_spec_validator import validate

from switchboard.common.events import (
    AgentUpserted,
    ConversationTransferred,
    OfferDeclined,
    PresenceChanged,
    RecordCodec,
)
from switchboard.common.runtime import running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume, eventually
from switchboard.common.topics import Topics, ensure_topics
from switchboard.router.api import ROUTER
from switchboard.router.app import build_app
from switchboard.router.rules import parse_rules
from switchboard.router.settings import RouterSettings

from .test_service_broker import RULES, settings_for  # type: ignore[import-not-found]

CODEC = RecordCodec()


def _spec() -> dict[str, Any]:
    text = resources.files("switchboard.router").joinpath("openapi.yaml").read_text(encoding="utf-8")
    spec: dict[str, Any] = yaml.safe_load(text)
    return spec


def test_openapi_is_valid_and_documents_every_route(tmp_path: Path) -> None:
    spec = _spec()
    validate(spec)  # type: ignore[arg-type]
    app = build_app(
        RouterSettings(rules_file=tmp_path / "absent.yaml", kafka=KafkaSettings(bootstrap="127.0.0.1:1")),
        rules=parse_rules(RULES),
    )
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(method, path) for path, item in spec["paths"].items() for method in item if method != "parameters"}
    assert routes == documented


async def test_writes_validate_and_land_on_agent_events(
    kafka_settings: KafkaSettings, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    app = build_app(settings_for(kafka_settings, topic_prefix, rules_file))
    async with running_app(app) as url, aiohttp.ClientSession() as http:
        await eventually(lambda: app[ROUTER].restored.is_set(), timeout=30)
        agent = {
            "display_name": "Ann",
            "skills": {"billing": 7},
            "capacity": {"email": 3},
            "presence": "available",
            "endpoints": [{"kind": "inbox", "target": "acme/ann"}],
        }
        async with http.put(f"{url}/v1/tenants/acme/agents/ann", json=agent) as answer:
            assert answer.status == 202
            accepted = await answer.json()
        assert accepted["schema"] == "agent-upserted/v1"
        async with http.put(f"{url}/v1/tenants/acme/agents/ann/presence", json={"presence": "away"}) as answer:
            assert answer.status == 202
        decline = {"agent_id": "ann", "reason": "busy", "source": "inbox"}
        async with http.post(f"{url}/v1/tenants/acme/conversations/c-1/decline", json=decline) as answer:
            assert answer.status == 202
        transfer = {"agent_id": "ann", "to_queue": "general"}
        async with http.post(f"{url}/v1/tenants/acme/conversations/c-1/transfer", json=transfer) as answer:
            assert answer.status == 202
        # under the body limit, but "1e9" is written back as 1000000000.0: the record is over 1 MiB
        bloated = '{"attributes": {"n": [' + ",".join(["1e9"] * 150_000) + "]}}"
        headers = {"Content-Type": "application/json"}
        async with http.put(
            f"{url}/v1/tenants/acme/agents/bob", data=io.BytesIO(bloated.encode()), headers=headers
        ) as answer:
            assert answer.status == 413
            assert "record size limit" in (await answer.json())["error"]
        huge = '{"display_name": "' + "x" * (1024 * 1024) + '"}'
        async with http.put(
            f"{url}/v1/tenants/acme/agents/bob", data=io.BytesIO(huge.encode()), headers=headers
        ) as answer:
            assert answer.status == 413
            assert (await answer.json())["error"] == "the body is over 1048576 bytes"
        events = [CODEC.decode(r.value) for r in await consume(kafka_settings.bootstrap, topics.agent_events, count=4)]
        assert isinstance(events[0], AgentUpserted)
        assert events[0].id == accepted["event_id"]
        assert (events[0].agent_id, events[0].skills, events[0].display_name) == ("ann", {"billing": 7}, "Ann")
        assert isinstance(events[1], PresenceChanged)
        assert events[1].presence.value == "away"
        assert isinstance(events[2], OfferDeclined)
        assert (events[2].conversation_id, events[2].reason, events[2].source) == ("c-1", "busy", "inbox")
        assert isinstance(events[3], ConversationTransferred)
        assert events[3].to_queue == "general"

        # the agent becomes visible once the router consumed its event
        async def agent_seen() -> bool:
            async with http.get(f"{url}/v1/tenants/acme/agents/ann") as answer:
                return answer.status == 200

        seen = False
        for _ in range(200):
            if seen := await agent_seen():
                break
            await asyncio.sleep(0.05)
        assert seen
        async with http.get(f"{url}/v1/tenants/acme/agents/ann") as answer:
            view = await answer.json()
        assert view["presence"] == "away"
        assert view["capacity"] == {"email": 3}

        # bad input: each with its own status and a reason
        async with http.put(f"{url}/v1/tenants/acme/agents/ann", data=b"{nope", headers=_json()) as answer:
            assert answer.status == 400
            assert "not valid JSON" in (await answer.json())["error"]
        async with http.put(
            f"{url}/v1/tenants/acme/agents/ann", data=b"x", headers={"Content-Type": "text/plain"}
        ) as answer:
            assert answer.status == 415
        async with http.put(f"{url}/v1/tenants/acme/agents/ann", json={"skils": {"billing": 3}}) as answer:
            assert answer.status == 422
            assert (await answer.json())["details"][0]["field"] == "skils"
        async with http.put(f"{url}/v1/tenants/acme/agents/ann", json={"skills": {"billing": 11}}) as answer:
            assert answer.status == 422
            assert "skills.billing" in (await answer.json())["details"][0]["field"]
        async with http.post(f"{url}/v1/tenants/acme/conversations/c-1/accept", json={}) as answer:
            assert answer.status == 422
            assert (await answer.json())["details"][0]["field"] == "agent_id"
        async with http.put(f"{url}/v1/tenants/nobody/agents/ann", json=agent) as answer:
            assert answer.status == 404
        async with http.get(f"{url}/v1/tenants/acme/conversations/missing") as answer:
            assert answer.status == 404
        async with http.get(f"{url}/v1/tenants/acme/queues/billing?limit=x") as answer:
            assert answer.status == 400
        async with http.get(f"{url}/v1/tenants/acme/queues/billing") as answer:
            assert answer.status == 200
            assert (await answer.json())["depth"] == 0
        async with http.get(f"{url}/dashboard") as answer:
            assert answer.status == 200
            assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
        async with http.get(f"{url}/openapi.yaml") as answer:
            assert yaml.safe_load(await answer.text())["openapi"].startswith("3.1")


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


async def test_writes_answer_503_while_the_broker_is_away(tmp_path: Path) -> None:
    settings = RouterSettings(
        kafka=KafkaSettings(bootstrap="127.0.0.1:1", request_timeout_ms=1000),
        rules_file=tmp_path / "absent.yaml",
        http_host="127.0.0.1",
        http_port=0,
    )
    app = build_app(settings, rules=parse_rules(RULES))
    async with running_app(app) as url, aiohttp.ClientSession() as http:
        async with http.put(f"{url}/v1/tenants/acme/agents/ann/presence", json={"presence": "available"}) as answer:
            assert answer.status == 503
            assert "broker" in (await answer.json())["error"]
        async with http.get(f"{url}/v1/tenants/acme/overview") as answer:
            assert answer.status == 503  # nobody owns the tenant yet
        async with http.get(f"{url}/readyz") as answer:
            assert answer.status == 503


pytestmark = pytest.mark.broker
