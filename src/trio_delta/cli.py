"""The ``trio-delta`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import trio

from ._errors import DeltaError
from ._store.dsn import redact

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _find_dsn(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    if os.environ.get("TRIO_DELTA_DSN"):
        return os.environ["TRIO_DELTA_DSN"]
    if any(os.environ.get(v) for v in ("PGHOST", "PGDATABASE", "PGSERVICE")):
        return ""  # libpq reads its environment variables
    return None


def _reachable(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _cmd_migrate(args: argparse.Namespace) -> int:
    from ._migrate import migrate

    dsn = _find_dsn(args.dsn)
    if dsn is None:
        print("trio-delta: no database: pass --dsn or set TRIO_DELTA_DSN", file=sys.stderr)
        return EXIT_USAGE
    applied = trio.run(lambda: migrate(dsn, schema=args.schema))
    print(f"schema {args.schema!r}: " + (f"applied {applied}" if applied else "already current"))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    dsn = _find_dsn(args.dsn)
    if dsn is None:
        local = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
        if _reachable(local):
            dsn = local
    if dsn is not None:
        return trio.run(lambda: run_demo(dsn, users=args.users))
    try:
        import pgserver  # type: ignore[import-untyped]
    except ImportError:
        print("trio-delta: no database reachable and pgserver is not installed: "
              "pip install 'trio-delta[embedded]' or pass --dsn", file=sys.stderr)
        return EXIT_FAILED
    import tempfile

    print("no database configured or reachable: starting an embedded Postgres (pgserver)")
    with tempfile.TemporaryDirectory(prefix="trio-delta-demo-") as tmp:
        server = pgserver.get_server(tmp, cleanup_mode="stop")  # pyright: ignore
        try:
            uri: str = server.get_uri()  # pyright: ignore
            return trio.run(lambda: run_demo(uri, users=args.users))
        finally:
            server.cleanup()  # pyright: ignore


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-delta", description="Resource synchronization control loops on PostgreSQL."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="create or upgrade trio_delta's schema")
    m.add_argument("--dsn", help="libpq connection string or URL (default: $TRIO_DELTA_DSN)")
    m.add_argument("--schema", default="delta", help="schema name (default: delta)")
    m.set_defaults(func=_cmd_migrate)
    d = sub.add_parser("demo", help="run the self-contained demo")
    d.add_argument("--dsn", help="database to use (default: $TRIO_DELTA_DSN, local, embedded)")
    d.add_argument("--users", type=int, default=2000, help="users in the fake directory")
    d.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except DeltaError as exc:
        print(f"trio-delta: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
