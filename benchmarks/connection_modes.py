"""What each way of connecting costs: trio_delta alone, mode against mode.

    python benchmarks/connection_modes.py [--rounds 3] [--dsn DSN] [--json FILE]
    python benchmarks/connection_modes.py --group observer   # metrics on vs off

Modes (docs/deployment.md): ``direct`` (the defaults), ``poll-only``
(``listen=False``), ``small-footprint`` (``dedicated_connections=False``,
``listen=False``, ``pool_size=2``), and through a real PgBouncer in
transaction mode (started here; Debian's ``pgbouncer``) with
``prepared_statements=False``: LISTEN on the server itself
(``pooler-listen-direct``) or polling only (``pooler-poll-only``).

Scenarios, each a fresh schema: ``drain`` (rows claimed, worked and synced
per second), ``inform_many`` (objects per second in one call) and
``latency`` (one ``inform`` call, and call to work start, p50 in ms, at
one inform every 20 ms), and ``drain_io`` (5,000 works each awaiting
20 ms, 200 at once: rows per second against an ideal 10,000). Modes run
interleaved, round by round; the table gives each mode's median over the
rounds and its ratio to ``direct``.
``--group observer`` compares ``direct`` with ``metrics`` (a
``PrometheusMetrics`` observer) and ``tracing`` (``OpenTelemetryTracing``)
instead: every trace recorded, 10 % of them (each work a root span, asked
of the sampler), and 10 % of them with the rows informed one per call
(``-requests``: each inform a trace of its own, its work following it),
beside ``direct-requests``, the same seeding without an observer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._common import RESULT_PREFIX  # noqa: E402
from benchmarks.run import IO_SETTINGS, IO_WORK_S  # noqa: E402
from tests.pgbouncer import PgBouncer  # noqa: E402

MODES: dict[str, dict[str, Any]] = {
    "direct": {},
    "poll-only": {"listen": False},
    "small-footprint": {"listen": False, "dedicated_connections": False, "pool_size": 2},
    "pooler-listen-direct": {"prepared_statements": False},
    "pooler-poll-only": {"prepared_statements": False, "listen": False},
    "metrics": {"metrics": True},
    "tracing": {"tracing": True},
    "tracing-10%": {"tracing": True, "tracing_ratio": 0.1},
    # The rows informed one per call (requests), each inform a trace of its
    # own sampled at 10 %: a work follows its inform's decision.
    "tracing-10%-requests": {"tracing": True, "tracing_ratio": 0.1, "seed": "requests"},
    # The same seeding without an observer: the baseline for the above.
    "direct-requests": {"seed": "requests"},
}
GROUPS = {
    "connections": [
        "direct",
        "poll-only",
        "small-footprint",
        "pooler-listen-direct",
        "pooler-poll-only",
    ],
    "observer": [
        "direct",
        "metrics",
        "tracing",
        "tracing-10%",
        "direct-requests",
        "tracing-10%-requests",
    ],
}
SCENARIOS: dict[str, tuple[list[str], list[str]]] = {
    # scenario: (child arguments, figures reported)
    "drain": (["--count", "20000"], ["drain"]),
    "inform_many": (["--count", "20000"], ["inform_many"]),
    "latency": (["--samples", "300"], ["inform_call_p50", "call_to_start_p50"]),
    # run.py's drain_io: works that await 20 ms, 200 at once (ideal 10,000/s).
    "drain_io": (["--count", "5000"], ["drain"]),
}
#: Scenarios that are another child scenario with settings of their own
#: (and their own size: ``--count`` is not theirs).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "drain_io": ("drain", {"work_seconds": IO_WORK_S, **IO_SETTINGS["trio_delta"]}),
}


def run_child(
    scenario: str, dsn: str, mode: str, listen_dsn: str | None, count: int
) -> dict[str, float]:
    child, extra = VARIANTS.get(scenario, (scenario, {}))
    settings = {**MODES[mode], **extra}
    if listen_dsn is not None:
        settings["listen_dsn"] = listen_dsn
    schema = f"cm_{uuid.uuid4().hex[:10]}"
    args, _ = SCENARIOS[scenario]
    if "--count" in args and scenario not in VARIANTS:
        args = ["--count", str(count)]
    command = [
        sys.executable,
        str(HERE / "bench_trio_delta.py"),
        child,
        "--dsn",
        dsn,
        "--schema",
        schema,
        "--settings",
        json.dumps(settings),
        *args,
    ]
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{scenario} {mode} failed:\n{exc.stderr[-3000:]}") from None
    finally:
        with psycopg.connect(DIRECT, autocommit=True) as conn:
            conn.execute(f'drop schema if exists "{schema}" cascade')
    for line in out.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX) :]))
    raise RuntimeError(f"{scenario} {mode}: no result line")


DIRECT = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def main() -> int:
    global DIRECT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DIRECT)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--group", choices=list(GROUPS), default="connections")
    parser.add_argument(
        "--count", type=int, default=20_000, help="drain and inform_many size (drain_io: 5,000)"
    )
    args = parser.parse_args()
    modes = GROUPS[args.group]
    DIRECT = args.dsn
    bouncer = PgBouncer(DIRECT)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for round_no in range(args.rounds):
            for scenario in args.scenarios:
                for mode in modes:
                    pooled = mode.startswith("pooler")
                    dsn = bouncer.dsn if pooled else DIRECT
                    listen_dsn = DIRECT if mode == "pooler-listen-direct" else None
                    figures = run_child(scenario, dsn, mode, listen_dsn, args.count)
                    results.setdefault((scenario, mode), []).append(figures)
                    print(f"round {round_no + 1} {scenario:<12} {mode:<21} {figures}", flush=True)
    finally:
        bouncer.stop()
    lines = [f"{'scenario':<12} {'figure':<18} " + " ".join(f"{m:>22}" for m in modes)]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for scenario in args.scenarios:
        for figure in SCENARIOS[scenario][1]:
            medians = {
                m: statistics.median(r[figure] for r in results[(scenario, m)]) for m in modes
            }
            base = medians["direct"]
            cells = [f"{medians[m]:>12.2f} ({medians[m] / base:4.2f}x)" for m in modes]
            lines.append(f"{scenario:<12} {figure:<18} " + " ".join(f"{c:>22}" for c in cells))
            table.setdefault(scenario, {})[figure] = medians
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"rounds": args.rounds, "medians": table}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
