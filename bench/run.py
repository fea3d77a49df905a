"""``make bench``: run every benchmark on one broker and print each figure beside its same-run baseline.

Run: ``.venv/bin/python bench/run.py [--quick] [--only NAME ...] [--json FILE]``

Each benchmark runs as its own subprocess (``--json`` tells it where to write its figures)
against one shared broker: ``SWITCHBOARD_KAFKA_BOOTSTRAP`` when set, otherwise an embedded
Tansu broker started here for the whole run. The table shows, for every measure, the
figure, the baseline measured in the same run (what it is is named in the row), their
ratio, the target from the issues and whether it is met. ``--quick`` runs smaller loads
and skips the low-rate end-to-end run and the email benchmark (under about a minute in
all; the figures are noisier and some are scaled, which the row says).
A benchmark that fails is reported as failed with the end of its output, and the runner
exits non-zero. What each benchmark does and the figures of one run: docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
Figures = dict[str, Any]


@dataclass(frozen=True)
class Row:
    measure: str
    figure: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: no target


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    rows: Callable[[Figures, bool], list[Row]]
    timeout: float
    in_quick: bool = True


def _rate(value: float, unit: str = "/s") -> str:
    return f"{value:,.0f}{unit}"


def _ms(value: float) -> str:
    return f"{value:,.1f} ms"


def ingest_rows(f: Figures, quick: bool) -> list[Row]:
    rps, bare, ratio = f["webhook_rps"], f["bare_rps"], f["ratio"]
    # issue #4's target is per core: requests per CPU-second of the server process
    per_cpu, bare_cpu = 1e6 / f["webhook_cpu_us"], 1e6 / f["bare_cpu_us"]
    return [
        Row(
            "ingest_social: signed webhooks to the broker, per CPU-second of the server",
            _rate(per_cpu, " req/s"),
            f"bare aiohttp handler {_rate(bare_cpu, ' req/s')}",
            f"{per_cpu / bare_cpu:.2f}x",
            ">= 6,000 req/s and >= 0.70x",
            per_cpu >= 6000 and per_cpu / bare_cpu >= 0.7,
        ),
        Row(
            "  the same, wall clock",
            _rate(rps, " req/s"),
            f"bare aiohttp handler {_rate(bare, ' req/s')}",
            f"{ratio:.2f}x",
            "",
            None,
        ),
        Row(
            f"ingest_social: p99 at {f['connections']} connections",
            _ms(f["webhook_p99_ms"]),
            f"bare handler {_ms(f['bare_p99_ms'])}",
            f"{f['webhook_p99_ms'] / f['bare_p99_ms']:.1f}x",
            "<= 20 ms",
            f["webhook_p99_ms"] <= 20,
        ),
    ]


def decision_rows(f: Figures, quick: bool) -> list[Row]:
    scale = 100_000 / f["conversations"]
    size = f"{f['agents']:,} agents, {f['conversations']:,} conversations"
    restore = f["decode_restore_s"] * scale
    return [
        Row(
            f"router: assignment decisions ({size})",
            _rate(f["decisions_per_s"]),
            f"scan of every agent {_rate(f['scan_decisions_per_s'])}",
            f"{f['decisions_per_s'] / f['scan_decisions_per_s']:,.0f}x",
            ">= 50,000/s",
            f["decisions_per_s"] >= 50_000,
        ),
        Row(
            "router: resident memory per 100,000 open conversations",
            f"{f['state_mib_per_100k']:.0f} MiB",
            f"changelog bytes {f['changelog_mib_per_100k']:.0f} MiB",
            f"{f['state_mib_per_100k'] / f['changelog_mib_per_100k']:.2f}x",
            "<= 100 MiB",
            f["state_mib_per_100k"] <= 100,
        ),
        *(
            [
                Row(
                    "  the same in a fresh process: decoded list / lazily",
                    f"{f['fresh_state_mib_per_100k_list_decode']:.0f} / "
                    f"{f['fresh_state_mib_per_100k_lazy_decode']:.0f} MiB",
                    "",
                    "",
                    "",
                    None,
                )
            ]
            if "fresh_state_mib_per_100k_lazy_decode" in f
            else []
        ),
        Row(
            "router: decode + restore of 100,000 conversations" + (" (scaled)" if scale != 1 else ""),
            f"{restore:.2f} s",
            f"collector left on {f['decode_restore_collector_on_s'] * scale:.2f} s",
            f"{f['decode_restore_collector_on_s'] / f['decode_restore_s']:.2f}x faster",
            "< 10 s",
            restore < 10,
        ),
    ]


def notifier_rows(f: Figures, quick: bool) -> list[Row]:
    full, bare = f["deliverer_wall_per_s"], f["bare_wall_per_s"]
    per_core, bare_core = f["deliverer_cpu_per_s"], f["bare_cpu_per_s"]
    return [
        Row(
            "notifier: signed webhook deliveries (deliverer)",
            _rate(full),
            f"bare aiohttp client {_rate(bare)}",
            f"{full / bare:.2f}x",
            ">= 2,000/s and >= 0.50x",
            full >= 2000 and full / bare >= 0.5,
        ),
        Row(
            "  the same per CPU second of the client",
            _rate(per_core),
            f"bare client {_rate(bare_core)}",
            f"{per_core / bare_core:.2f}x",
            "",
            None,
        ),
    ]


def email_rows(f: Figures, quick: bool) -> list[Row]:
    rows = []
    for key, what in (
        ("sendgrid", "ingest_email: SendGrid webhook, 10 KB MIME"),
        ("mailgun", "ingest_email: Mailgun signed route, 10 KB MIME"),
    ):
        # issue #3's webhook target is per core: messages per CPU-second of the service process
        per_cpu, base_cpu = f[f"{key}_per_cpu_s"], f[f"{key}_baseline_per_cpu_s"]
        full, base = f[f"{key}_per_s"], f[f"{key}_baseline_per_s"]
        rows += [
            Row(
                f"{what}, per CPU-second of the service",
                _rate(per_cpu),
                f"read-only handler {_rate(base_cpu)}",
                f"{per_cpu / base_cpu:.2f}x",
                ">= 1,000/s per core",
                per_cpu >= 1000,
            ),
            Row(
                "  the same, wall clock",
                _rate(full),
                f"read-only handler {_rate(base)}",
                f"{full / base:.2f}x",
                "",
                None,
            ),
        ]
    full, base = f["smtp_per_s"], f["smtp_baseline_per_s"]
    rows.append(
        Row(
            "ingest_email: SMTP, 16 clients",
            _rate(full),
            f"accept-only SMTP handler {_rate(base)}",
            f"{full / base:.2f}x",
            ">= 300/s",
            full >= 300,
        )
    )
    normalize_us = f["normalize_us"]
    rows.append(
        Row(
            "  of which normalization alone, per message (one core)",
            f"{normalize_us:,.0f} us",
            f"= {1e6 / normalize_us:,.0f} messages/s",
            "",
            "",
            None,
        )
    )
    return rows


def service_rows(f: Figures, quick: bool) -> list[Row]:
    router, relay = f["router_messages_per_s"], f["relay_messages_per_s"]
    return [
        Row(
            f"router: inbound through the whole service ({f['messages']:,} msgs)",
            _rate(router, " msg/s"),
            f"consume-decode-produce relay {_rate(relay, ' msg/s')}",
            f"{router / relay:.2f}x",
            ">= 15,000 msg/s",
            router >= 15_000,
        )
    ]


def e2e_rows(f: Figures, quick: bool) -> list[Row]:
    at = f"{f['rate_target']:,.0f}/s"
    acked = f"acked at {f['rate_achieved']:,.0f}/s, delivered at {f['delivered_per_s']:,.0f}/s"
    delivered = f["delivered"] == f["messages"]
    targeted = f["rate_target"] >= 500
    met = f["p99_ms"] <= 300 and f["rate_achieved"] >= 0.95 * f["rate_target"] and delivered
    return [
        Row(
            f"end to end p99, ingest ack to delivery, sent at {at} ({acked})",
            _ms(f["p99_ms"]),
            f"one broker hop p99 {_ms(f['hop_p99_ms'])}",
            f"{f['p99_ms'] / f['hop_p99_ms']:,.0f}x",
            "<= 300 ms at 500/s" if targeted else "",
            met if targeted else None,
        ),
        Row(
            f"end to end p50 at {at}",
            _ms(f["p50_ms"]),
            f"one broker hop p50 {_ms(f['hop_p50_ms'])}",
            f"{f['p50_ms'] / f['hop_p50_ms']:,.0f}x",
            "",
            None,
        ),
        Row(
            "  of which ack -> dispatch written (router), p50 / p99",
            f"{f['ack_to_dispatch_p50_ms']:,.0f} / {f['ack_to_dispatch_p99_ms']:,.0f} ms",
            "",
            "",
            "",
            None,
        ),
        Row(
            "  of which dispatch -> delivered (notifier), p50 / p99",
            f"{f['dispatch_to_delivery_p50_ms']:,.0f} / {f['dispatch_to_delivery_p99_ms']:,.0f} ms",
            "",
            "",
            "",
            None,
        ),
        Row(
            f"  messages delivered / acknowledged / sent at {at}",
            f"{f['delivered']:,} / {f['acknowledged']:,} / {f['messages']:,}",
            "not acknowledged: " + (", ".join(f"{k} x{v}" for k, v in f.get("failed_by", {}).items()) or "none"),
            "",
            "every acked one delivered",
            f["delivered"] == f["acknowledged"],
        ),
    ]


QUICK_DECISIONS = (
    *("--agents", "1000", "--conversations", "10000"),
    *("--decisions", "5000", "--scan-decisions", "100", "--inbound", "1000", "--waiting", "5000"),
)

BENCHES = (
    Bench(
        "ingest",
        "services/ingest_social/bench/bench_webhooks.py",
        ("--requests", "12000", "--connections", "64", "--rounds", "3"),
        ("--requests", "2000", "--connections", "64", "--rounds", "1"),
        ingest_rows,
        300,
    ),
    Bench(
        "decisions",
        "services/router/bench/bench_decisions.py",
        ("--waiting", "20000"),
        QUICK_DECISIONS,
        decision_rows,
        300,
    ),
    Bench(
        "router",
        "services/router/bench/bench_service.py",
        ("--messages", "10000"),
        ("--messages", "2000"),
        service_rows,
        400,
    ),
    Bench(
        "e2e",
        "bench/bench_e2e.py",
        ("--rate", "500", "--seconds", "15"),
        ("--rate", "500", "--seconds", "2"),
        e2e_rows,
        400,
    ),
    Bench(  # the same below saturation, to show what the latency is when nothing queues
        "e2e-low",
        "bench/bench_e2e.py",
        ("--rate", "100", "--seconds", "10"),
        ("--rate", "100", "--seconds", "3"),
        e2e_rows,
        300,
        in_quick=False,
    ),
    Bench(
        "notifier",
        "services/notifier/bench/bench_webhooks.py",
        ("--count", "3000", "--rounds", "3"),
        ("--count", "1000", "--rounds", "1"),
        notifier_rows,
        200,
    ),
    Bench(
        "email",
        "services/ingest_email/bench/bench_ingest.py",
        ("--messages", "1000", "--smtp-messages", "480"),
        ("--messages", "300", "--smtp-messages", "160"),
        email_rows,
        300,
        in_quick=False,
    ),
)


@contextlib.contextmanager
def shared_broker() -> Iterator[str]:
    existing = os.environ.get("SWITCHBOARD_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    from switchboard.common.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.bootstrap


def run_one(bench: Bench, quick: bool, env: dict[str, str], workdir: Path) -> tuple[Figures | None, str, float]:
    """Run one benchmark; its figures (None when it failed), the tail of its output, seconds taken."""
    out = workdir / f"{bench.name}.json"
    log = workdir / f"{bench.name}.log"
    command = [sys.executable, str(ROOT / bench.script), *(bench.quick if quick else bench.full), "--json", str(out)]
    started = time.monotonic()
    with log.open("wb") as output:
        try:
            code = subprocess.run(  # noqa: S603  # this interpreter running our own scripts
                command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=bench.timeout, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    took = time.monotonic() - started
    text = log.read_text(encoding="utf-8", errors="replace")
    tail = "\n".join(text.splitlines()[-15:])
    if code != 0 or not out.exists():
        return None, f"exit {code}; last lines of {log}:\n{tail}", took
    figures: Figures = json.loads(out.read_text(encoding="utf-8"))
    return figures, tail, took


def table(rows: Sequence[Row]) -> str:
    head = ("measure", "figure", "baseline (same run)", "ratio", "target", "met")
    cells = [head, *((r.measure, r.figure, r.baseline, r.ratio, r.target, _met(r.met)) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip() for cell in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _met(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def machine() -> str:
    cpus = os.cpu_count() or 0
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.python_implementation()} {platform.python_version()}, {cpus} CPUs {model}, load {load}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small loads: under a minute, noisier figures")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run only these benchmarks")
    parser.add_argument("--json", type=Path, default=None, help="also write every benchmark's figures here")
    args = parser.parse_args()
    if args.only:
        selected = [b for b in BENCHES if b.name in args.only]
    else:
        selected = [b for b in BENCHES if b.in_quick or not args.quick]
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    print(f"switchboard bench{' --quick' if args.quick else ''}: {machine()}", flush=True)
    rows: list[Row] = []
    results: dict[str, Figures] = {}
    failures: list[str] = []
    started = time.monotonic()
    with shared_broker() as bootstrap:
        env = {**os.environ, "SWITCHBOARD_KAFKA_BOOTSTRAP": bootstrap, "SWITCHBOARD_KAFKA_FETCH_MAX_WAIT_MS": "10"}
        print(f"broker {bootstrap}; outputs in {workdir}", flush=True)
        for bench in selected:
            print(f"running {bench.name} ({bench.script}) ...", end=" ", flush=True)
            figures, tail, took = run_one(bench, args.quick, env, workdir)
            print(f"{took:.0f} s", flush=True)
            if figures is None:
                failures.append(bench.name)
                rows.append(Row(f"{bench.name}: FAILED", "", "", "", "", False))
                print(tail, file=sys.stderr)
                continue
            results[bench.name] = figures
            rows.extend(bench.rows(figures, args.quick))
    print()
    print(table(rows))
    print(f"\n{time.monotonic() - started:.0f} s in all; machine load now {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"quick": args.quick, "results": results}, indent=2), encoding="utf-8")
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
