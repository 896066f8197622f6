"""Shared by the benchmark children (``bench_*.py``) and ``run.py``.

A child runs ONE scenario of ONE system in a fresh process and reports on its
last stdout line: ``RESULT {"metric": value, ...}`` (see :func:`emit`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
from collections.abc import Sequence
from typing import Any

RESULT_PREFIX = "RESULT "

#: The payload every system carries: the same small JSON object,
#: ``{"key": "item-<i>", "value": <i>}`` (about 35 bytes).
KEY_PREFIX = "item"


def payload(i: int) -> dict[str, Any]:
    return {"key": f"{KEY_PREFIX}-{i}", "value": i}


def asyncpg_kwargs(dsn: str) -> dict[str, Any]:
    """``asyncpg.connect`` keywords for a libpq connection string or URL."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    names = {
        "host": "host",
        "port": "port",
        "user": "user",
        "password": "password",
        "dbname": "database",
    }
    out: dict[str, Any] = {names[k]: v for k, v in params.items() if k in names and v}
    if "port" in out:
        out["port"] = int(out["port"])
    return out


def emit(**metrics: Any) -> None:
    """Print the child's result line (parsed by run.py)."""
    print(RESULT_PREFIX + json.dumps(metrics), flush=True)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_metrics(delays_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 (and max) of delays in seconds, reported in milliseconds."""
    d = sorted(delays_s)
    return {
        "latency_p50": percentile(d, 50) * 1000,
        "latency_p95": percentile(d, 95) * 1000,
        "latency_p99": percentile(d, 99) * 1000,
        "latency_max": d[-1] * 1000 if d else math.nan,
        "samples": len(d),
    }


def call_metrics(calls_s: Sequence[float], starts_s: Sequence[float]) -> dict[str, float]:
    """What a caller waits for: the inform/enqueue call itself, and from the
    call's start to the handler starting; p50/p99 in milliseconds."""
    calls, starts = sorted(calls_s), sorted(starts_s)
    return {
        "inform_call_p50": percentile(calls, 50) * 1000,
        "inform_call_p99": percentile(calls, 99) * 1000,
        "call_to_start_p50": percentile(starts, 50) * 1000,
        "call_to_start_p99": percentile(starts, 99) * 1000,
    }


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_now_kb() -> int:
    """Current resident set size (Linux: VmRSS; elsewhere the peak so far)."""
    value = _proc_status_kb("VmRSS")
    if value is not None:
        return value
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_peak_kb() -> int:
    """Peak resident set size of this process so far."""
    value = _proc_status_kb("VmHWM")
    if value is not None:
        return value
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_parser(description: str) -> argparse.ArgumentParser:
    """The command line every ``bench_*.py`` child accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "scenario",
        choices=[
            "drain",
            "inform",
            "inform_many",
            "inform_concurrent",
            "latency",
            "scale",
            "memory",
        ],
    )
    parser.add_argument("--dsn", required=True, help="libpq connection string")
    parser.add_argument("--schema", required=True, help="fresh schema for this run")
    parser.add_argument("--count", type=int, default=20_000, help="jobs/objects to drain or inform")
    parser.add_argument(
        "--resident", type=int, default=0, help="scale: other (synced) rows resident in the table"
    )
    parser.add_argument("--samples", type=int, default=300, help="latency: measured informs")
    parser.add_argument(
        "--interval", type=float, default=0.02, help="latency: seconds between informs"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=10,
        help="latency: informs made (and discarded) before measuring",
    )
    parser.add_argument(
        "--settings", default="{}", help="JSON object overriding the system's settings"
    )
    return parser


def settings_from(args: argparse.Namespace, defaults: dict[str, Any]) -> dict[str, Any]:
    """The system's defaults updated with ``--settings``; unknown keys are an error."""
    overrides = json.loads(args.settings)
    unknown = set(overrides) - set(defaults)
    if unknown:
        sys.exit(f"unknown settings {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **overrides}


def quiet_logging() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    for name in ("pgqueuer", "procrastinate", "trio_delta"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
