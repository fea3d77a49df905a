"""``switchboard-dev``: the developer's commands behind ``make run``.

- ``switchboard-dev broker [--port 9092]``: run the embedded broker until Ctrl-C.
- ``switchboard-dev run``: start the embedded broker (unless ``SWITCHBOARD_KAFKA_BOOTSTRAP``
  names one), create the topics, start every installed service as its own process with
  its logs in this terminal, and stop them all on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Sequence

from switchboard.common.broker import EmbeddedBroker
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
    processes: dict[str, asyncio.subprocess.Process] = {}
    pipes: list[asyncio.Task[None]] = []
    try:
        created = await ensure_topics(
            KafkaSettings(bootstrap=bootstrap), Topics(env.get("SWITCHBOARD_TOPIC_PREFIX", "switchboard."))
        )
        _say(f"topics ready ({len(created)} created)")
        services = installed_services(args.services)
        if not services:
            _say("no service package is installed yet; the broker alone is running")
        for name in services:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"switchboard.{name}",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            processes[name] = process
            assert process.stdout is not None
            pipes.append(asyncio.create_task(_pipe(name, process.stdout)))
            _say(f"{name:<14} http://127.0.0.1:{SERVICES[name]}  (/healthz /readyz /metrics)")
        if "ingest_email" in processes:
            _say("ingest_email   smtp://127.0.0.1:2525")
        _say("Ctrl-C stops everything")
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
    args = parser.parse_args(argv)
    if args.command == "broker":
        return _broker(args)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    raise SystemExit(main())
