"""Instructions per request of the webhook server (or the bare handler), counted by callgrind.

Wall-clock CPU time on a shared machine swings by a third from run to run; the number of
instructions the server executes per request does not (within about 1 %). This runs the
server of ``bench_webhooks.py`` under ``valgrind --tool=callgrind`` with collection off,
drives ``--warmup`` requests, switches collection on (``callgrind_control -i on``), drives
``--requests`` more, dumps, and prints the instructions per request. Slow (the server runs
about 50 times slower under valgrind): 2,000 requests take one to two minutes.

    python services/ingest_social/bench/count_instructions.py webhook --bootstrap HOST:PORT
    python services/ingest_social/bench/count_instructions.py bare

Needs ``valgrind`` (with ``callgrind_control``) on ``PATH``. For an old/new comparison run
it twice, once with ``PYTHONPATH`` naming the old source trees.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[2] / "bench"))
import bench_webhooks  # noqa: E402
from httpload import drive  # type: ignore[import-not-found]  # noqa: E402

SERVER = """
import sys
sys.path.insert(0, {here!r})
import bench_webhooks as b
class Ready:
    def set(self): print("READY", flush=True)
b.serve({kind!r}, {port}, {bootstrap!r}, None, Ready(), b.DEFAULT_GEN0_THRESHOLD)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("kind", choices=["webhook", "bare"])
    parser.add_argument("--bootstrap", default=os.environ.get("SWITCHBOARD_KAFKA_BOOTSTRAP"))
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if args.kind == "webhook" and not args.bootstrap:
        raise SystemExit("the webhook server needs --bootstrap (or SWITCHBOARD_KAFKA_BOOTSTRAP)")

    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if valgrind is None or control is None:
        raise SystemExit("valgrind and callgrind_control must be on PATH")
    port = bench_webhooks.free_port()
    bootstrap = args.bootstrap if args.kind == "webhook" else None
    code = SERVER.format(here=str(HERE), kind=args.kind, port=port, bootstrap=bootstrap)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        server = subprocess.Popen(  # noqa: S603  # valgrind running this interpreter on a fixed script
            [
                valgrind,
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}.%p",
                sys.executable,
                "-c",
                code,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != "READY":
                raise SystemExit("the server did not start")
            warmup = bench_webhooks.signed_requests(port, 10_000_000, args.warmup)
            asyncio.run(drive(port, warmup, args.connections))
            subprocess.run([control, "-i", "on", str(server.pid)], check=True, capture_output=True)  # noqa: S603
            requests = bench_webhooks.signed_requests(port, 0, args.requests)
            _, load = asyncio.run(drive(port, requests, args.connections))
            subprocess.run([control, "-d", str(server.pid)], check=True, capture_output=True)  # noqa: S603
        finally:
            server.terminate()
            server.wait(120)
        time.sleep(0.1)
        dumps = sorted(Path(tmp).glob("callgrind.out.*.1"))
        if not dumps:
            raise SystemExit("no callgrind dump was written")
        match = re.search(r"^summary: (\d+)", dumps[0].read_text(), re.MULTILINE)
        if match is None:
            raise SystemExit("the dump has no summary line")
    per_request = int(match.group(1)) / args.requests
    print(
        f"{args.kind}: {per_request:,.0f} instructions per request "
        f"({args.requests} requests, {args.connections} connections, errors {load.errors})"
    )


if __name__ == "__main__":
    main()
