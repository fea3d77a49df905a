"""``switchboard-dev``: the developer's commands behind ``make run``.

- ``switchboard-dev broker [--port 9092]``: run the embedded broker until Ctrl-C.
- ``switchboard-dev run``: start the embedded broker (unless ``SWITCHBOARD_KAFKA_BOOTSTRAP``
  names one), create the topics, start every installed service as its own process with
  its logs in this terminal, and stop them all on Ctrl-C or SIGTERM. The dev profile
  (:mod:`switchboard.common.demo_profile`: example rules, dev tenants' secrets, the inbox
  page) fills in each service's settings the user did not set (``--no-dev-profile`` turns
  it off), and once the router is ready the example roster is loaded through its API.
- ``switchboard-dev demo [--rate N] [--duration S]``: send demo traffic through the real
  ingest endpoints of a running ``switchboard-dev run`` (:mod:`switchboard.common.demo`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp

from switchboard.common.broker import EmbeddedBroker
from switchboard.common.demo_profile import (
    DEFAULT_SMTP_PORT,
    DevPaths,
    ProfileError,
    child_env,
    dev_profile,
    find_dev_paths,
    service_url,
)
from switchboard.common.demo_roster import AgentResult, Roster, inbox_url, load_roster, put_roster, wait_ready
from switchboard.common.settings import KafkaSettings
from switchboard.common.topics import Topics, ensure_topics

SERVICES: dict[str, int] = {"ingest_email": 8081, "ingest_social": 8082, "router": 8083, "notifier": 8084}


def installed_services(wanted: Sequence[str] | None = None) -> list[str]:
    """The services whose package (with a ``__main__``) is installed, in start order."""
    names = list(wanted) if wanted else list(SERVICES)
    found = []
    for name in names:
        if name not in SERVICES:
            raise SystemExit(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
        if importlib.util.find_spec(f"switchboard.{name}") and importlib.util.find_spec(f"switchboard.{name}.__main__"):
            found.append(name)
    return found


def _say(line: str) -> None:
    print(f"switchboard | {line}", flush=True)


async def _pipe(name: str, stream: asyncio.StreamReader) -> None:
    width = max(len(n) for n in SERVICES)
    while line := await stream.readline():
        sys.stdout.write(f"{name:<{width}} | {line.decode(errors='replace')}")
        sys.stdout.flush()


async def _run(args: argparse.Namespace) -> int:
    broker: EmbeddedBroker | None = None
    env = dict(os.environ)
    bootstrap = env.get("SWITCHBOARD_KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = EmbeddedBroker(port=args.broker_port)
        broker.start()
        bootstrap = broker.bootstrap
        env["SWITCHBOARD_KAFKA_BOOTSTRAP"] = bootstrap
        env.setdefault("SWITCHBOARD_KAFKA_FETCH_MAX_WAIT_MS", "10")
        env.setdefault("SWITCHBOARD_KAFKA_ENABLE_IDEMPOTENCE", "false")
        _say(f"embedded broker (Tansu, in memory) on {bootstrap}")
    else:
        _say(f"using the broker at {bootstrap}")
    env.setdefault("SWITCHBOARD_LOG_FORMAT", "console")
    profile: dict[str, dict[str, str]] = {}
    paths = DevPaths(None, None)
    if args.dev_profile:
        paths = find_dev_paths()
        try:
            profile = dev_profile(paths)
        except ProfileError as exc:
            _say(f"dev profile not applied: {exc}")
        else:
            _describe_profile(paths)
    processes: dict[str, asyncio.subprocess.Process] = {}
    envs: dict[str, dict[str, str]] = {}
    pipes: list[asyncio.Task[None]] = []
    after_start: asyncio.Task[None] | None = None
    try:
        created = await ensure_topics(
            KafkaSettings(bootstrap=bootstrap), Topics(env.get("SWITCHBOARD_TOPIC_PREFIX", "switchboard."))
        )
        _say(f"topics ready ({len(created)} created)")
        services = installed_services(args.services)
        if not services:
            _say("no service package is installed yet; the broker alone is running")
        for name in services:
            envs[name] = child_env(env, profile.get(name, {}))
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"switchboard.{name}",
                env=envs[name],
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            processes[name] = process
            assert process.stdout is not None
            pipes.append(asyncio.create_task(_pipe(name, process.stdout)))
            _say(f"{name:<14} {service_url(name, envs[name])}  (/healthz /readyz /metrics)")
        if "ingest_email" in processes:
            _say(f"ingest_email   smtp://127.0.0.1:{_smtp_port(envs['ingest_email'])}")
        _say("Ctrl-C stops everything")
        roster_path = Path(args.roster) if args.roster else paths.roster_file
        after_start = asyncio.create_task(_after_start(envs, roster_path, args.router_ready_timeout))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        exits = [asyncio.create_task(p.wait()) for p in processes.values()]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *exits], return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if stopper not in done:
            for name, process in processes.items():
                if process.returncode is not None:
                    _say(f"{name} exited with {process.returncode}; stopping the rest")
                    code = 1
        stopper.cancel()
        return code
    finally:
        if after_start is not None:
            after_start.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await after_start
        for process in processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                _say(f"{name} did not stop in time; killing it")
                process.kill()
                await process.wait()
        for task in pipes:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 2)
        if broker is not None:
            broker.stop()
        _say("stopped")


def _smtp_port(env: Mapping[str, str]) -> str:
    return env.get("SWITCHBOARD_SMTP_PORT") or str(DEFAULT_SMTP_PORT)


def _describe_profile(paths: DevPaths) -> None:
    if paths.dev_dir is None:
        _say("dev profile: examples/dev not found (run from the checkout); ingest starts without tenants")
    else:
        _say(f"dev profile: {paths.dev_dir} (DEV ONLY secrets; variables you set win)")
    if paths.rules_file is None:
        _say("dev profile: services/router/examples/rules.yaml not found; set SWITCHBOARD_RULES_FILE")
    else:
        _say(f"dev profile: routing rules {paths.rules_file}")


async def _after_start(envs: Mapping[str, Mapping[str, str]], roster_path: Path | None, ready_timeout: float) -> None:
    """Once the router answers ``/readyz``, load the roster; then print where everything is."""
    roster: Roster | None = None
    results: list[AgentResult] = []
    if "router" in envs and roster_path is not None:
        try:
            roster = load_roster(roster_path)
        except ProfileError as exc:
            _say(f"roster not loaded: {exc}")
    if "router" in envs and roster is not None:
        router = service_url("router", envs["router"])
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            if await wait_ready(http, router, timeout=ready_timeout):
                results = await put_roster(http, router, roster.agents)
            else:
                _say(f"the router at {router} was not ready within {ready_timeout:g} s; roster not loaded")
                _say("see the router's log lines above; the roster can be loaded later with the router API")
                roster = None
    _print_summary(envs, roster, results)


def _print_summary(envs: Mapping[str, Mapping[str, str]], roster: Roster | None, results: list[AgentResult]) -> None:
    _say("-" * 72)
    _say("where everything is:")
    for name, env in envs.items():
        _say(f"  {name:<14} {service_url(name, env)}")
    if "ingest_email" in envs:
        env = envs["ingest_email"]
        _say(f"  {'smtp':<14} smtp://127.0.0.1:{_smtp_port(env)}  (recipients: {_recipients(env)})")
    if "ingest_social" in envs:
        _say(f"  {'webhooks':<14} {service_url('ingest_social', envs['ingest_social'])}/v1/<adapter>/<tenant>")
    if "router" in envs:
        _say(f"  {'dashboard':<14} {service_url('router', envs['router'])}/dashboard")
    if roster is not None:
        failed = [r for r in results if not r.ok]
        _say(f"  roster: {len(results) - len(failed)} of {len(results)} agents loaded through the router API")
        for result in failed:
            agent = result.agent
            status = result.status if result.status is not None else "no answer"
            _say(f"    NOT LOADED {agent.tenant}/{agent.id}: {status} {result.reason or ''}".rstrip())
        notifier = service_url("notifier", envs.get("notifier", {}))
        if "notifier" not in envs:
            _say("  (the notifier is not running: the inbox pages below stay empty)")
        for result in results:
            if result.ok:
                agent = result.agent
                page = inbox_url(notifier, agent) or "(no inbox endpoint)"
                _say(f"  inbox {agent.tenant + '/' + agent.id:<14} {agent.display_name or '':<16} {page}")
    if "ingest_social" in envs or "ingest_email" in envs:
        _say("send demo traffic: `make demo` (or `switchboard-dev demo --rate 2 --duration 60`)")
    _say("-" * 72)


def _recipients(env: Mapping[str, str]) -> str:
    raw = env.get("SWITCHBOARD_RECIPIENTS")
    if not raw:
        return "none configured"
    try:
        keys = list(json.loads(raw))
    except ValueError:
        return "SWITCHBOARD_RECIPIENTS is not JSON"
    return ", ".join(str(k) for k in keys) or "none configured"


def _demo(args: argparse.Namespace) -> int:
    try:
        from switchboard.common.demo import demo_main
    except ImportError as exc:  # the demo signs with ingest_social's SDK and sends mail with aiosmtplib
        _say(f"the demo needs switchboard-ingest-social and aiosmtplib installed ({exc.name} is missing)")
        return 2
    paths = find_dev_paths()
    return asyncio.run(
        demo_main(
            rate=args.rate,
            duration=args.duration,
            social_url=args.social_url.rstrip("/"),
            smtp_host=args.smtp_host,
            smtp_port=args.smtp_port,
            seed=args.seed,
            env=os.environ,
            paths=paths,
        )
    )


def _broker(args: argparse.Namespace) -> int:
    broker = EmbeddedBroker(host=args.host, port=args.port)
    broker.start()
    _say(f"embedded broker on {broker.bootstrap}; Ctrl-C stops it")
    stopped = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopped and broker.running:
            time.sleep(0.2)
    finally:
        broker.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard-dev", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_broker = sub.add_parser("broker", help="run the embedded Kafka-compatible broker")
    p_broker.add_argument("--host", default="127.0.0.1")
    p_broker.add_argument("--port", type=int, default=9092)
    p_run = sub.add_parser("run", help="run the broker and every installed service")
    p_run.add_argument("--broker-port", type=int, default=9092)
    p_run.add_argument("--services", nargs="*", help="only these services (default: all installed)")
    p_run.add_argument(
        "--no-dev-profile",
        dest="dev_profile",
        action="store_false",
        help="start the services with your environment only (no example rules, dev secrets or roster)",
    )
    p_run.add_argument(
        "--roster", help="roster YAML to load through the router API (default: examples/dev/roster.yaml)"
    )
    p_run.add_argument("--router-ready-timeout", type=float, default=120.0, help="seconds to wait for the router")
    p_demo = sub.add_parser("demo", help="send demo traffic through the ingest endpoints of a running `run`")
    p_demo.add_argument("--rate", type=_positive, default=1.0, help="messages per second (default 1)")
    p_demo.add_argument(
        "--duration", type=float, default=60.0, help="seconds to send for; the opening tour is always sent whole"
    )
    p_demo.add_argument("--seed", type=int, default=None, help="seed of the random mix (default: random)")
    p_demo.add_argument("--social-url", default="http://127.0.0.1:8082", help="ingest_social base URL")
    p_demo.add_argument("--smtp-host", default="127.0.0.1")
    p_demo.add_argument("--smtp-port", type=int, default=int(os.environ.get("SWITCHBOARD_SMTP_PORT") or 2525))
    args = parser.parse_args(argv)
    if args.command == "broker":
        return _broker(args)
    if args.command == "demo":
        return _demo(args)
    return asyncio.run(_run(args))


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


if __name__ == "__main__":
    raise SystemExit(main())
