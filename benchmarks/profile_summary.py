"""Summarise a ``py-spy record -f raw`` profile: where the samples go.

Profile one trio_delta scenario in its own process, then summarise::

    py-spy record -r 250 -f raw -o drain.txt -- \\
        python benchmarks/bench_trio_delta.py drain --dsn DSN --schema prof --count 20000
    python benchmarks/profile_summary.py drain.txt [--top 25] [--only fetcher.py]

Prints the share of samples by package (leaf frame), the top functions by
self samples and by inclusive samples (a function counted once per stack).
``--only SUBSTRING`` keeps the stacks passing through a frame that contains
it (e.g. ``Informers.`` for the informer path, ``workers.py`` for workers);
``--exclude`` drops them (e.g. ``importlib`` for start-up imports).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")


def package(file: str) -> str:
    """A short name for where a frame's file lives (py-spy shortens paths to
    the part below site-packages or the stdlib: ``trio/_core/_run.py``)."""
    parts = file.replace("\\", "/").split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    if parts[0] == "trio_delta" and len(parts) > 2:
        return "/".join(parts[:2])
    if len(parts) > 1:
        return parts[0]
    return parts[0] if parts[0].startswith("<") else f"{parts[0]} (script or stdlib module)"


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for raw in path.read_text().splitlines():
        head, _, count = raw.rpartition(" ")
        if not head or not count.isdigit():
            continue
        stacks.append((head.split(";"), int(count)))
    return stacks


def label(frame: str) -> tuple[str, str]:
    m = FRAME.match(frame)
    if not m:
        return frame, frame
    file = m.group("file")
    short = "/".join(file.split("/")[-2:])
    return f"{m.group('func')} ({short})", package(file)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="keep stacks with a frame containing this (repeatable: any)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        help="drop stacks with a frame containing this (repeatable)",
    )
    args = parser.parse_args()
    stacks = parse(args.raw)
    if args.only:
        stacks = [(s, n) for s, n in stacks if any(o in f for o in args.only for f in s)]
    if args.exclude:
        stacks = [(s, n) for s, n in stacks if not any(x in f for x in args.exclude for f in s)]
    total = sum(n for _, n in stacks) or 1
    by_package: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, n in stacks:
        leaf, pkg = label(frames[-1])
        by_package[pkg] += n
        self_time[leaf] += n
        for name in {label(f)[0] for f in frames}:
            inclusive[name] += n
    kept = (f" (through any of {args.only})" if args.only else "") + (
        f" (none of {args.exclude})" if args.exclude else ""
    )
    print(f"{args.raw}: {total} samples{kept}")
    for title, counter in (
        ("by package (self)", by_package),
        ("top self", self_time),
        ("top inclusive", inclusive),
    ):
        print(f"\n{title}:")
        for name, n in counter.most_common(args.top):
            print(f"  {100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
