"""What ``switchboard-dev run`` prints once everything is up, with and without the router."""

from __future__ import annotations

import pytest

from switchboard.common.demo_roster import AgentResult, Roster, RosterAgent
from switchboard.common.devtools import _after_start, _print_summary, main


def test_summary_lists_urls_inbox_pages_and_agents_not_loaded(capsys: pytest.CaptureFixture[str]) -> None:
    ava = RosterAgent(tenant="acme", id="ava", display_name="Ava", endpoints=({"kind": "inbox", "target": "acme/ava"},))
    bob = RosterAgent(tenant="initech", id="bob")
    envs = {
        "ingest_email": {"SWITCHBOARD_RECIPIENTS": '{"support@acme.example": "acme"}'},
        "router": {},
        "notifier": {},
    }
    roster_results = [AgentResult(ava, 202), AgentResult(bob, 404, "tenant 'initech' is not in the routing rules")]
    _print_summary(envs, Roster(agents=(ava, bob)), roster_results)
    out = capsys.readouterr().out
    assert "smtp://127.0.0.1:2525  (recipients: support@acme.example)" in out
    assert "dashboard      http://127.0.0.1:8083/dashboard" in out
    assert "roster: 1 of 2 agents loaded" in out
    assert "NOT LOADED initech/bob: 404 tenant 'initech' is not in the routing rules" in out
    assert "http://127.0.0.1:8084/inbox/acme/ava" in out


async def test_without_a_router_the_summary_still_prints(capsys: pytest.CaptureFixture[str]) -> None:
    await _after_start({"notifier": {"SWITCHBOARD_HTTP_PORT": "9999"}}, None, ready_timeout=1)
    out = capsys.readouterr().out
    assert "notifier       http://127.0.0.1:9999" in out
    assert "dashboard" not in out
    assert "roster" not in out


def test_demo_refuses_a_rate_of_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--rate", "0"])
    assert "must be greater than 0" in capsys.readouterr().err


def test_demo_without_running_services_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--social-url", "http://127.0.0.1:1", "--smtp-port", "1", "--duration", "0"])
    out = capsys.readouterr().out
    assert code == 2
    assert "ingest_social does not answer at http://127.0.0.1:1" in out
    assert "SMTP listener does not answer at 127.0.0.1:1" in out
    assert "make run" in out
