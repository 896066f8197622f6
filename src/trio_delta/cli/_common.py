"""What every ``trio-delta`` command shares: exit codes, errors, output,
options, and the command group itself."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click
import trio
from rich.console import Console

from .._admin import Admin, one_line
from .._config import check_name, check_schema
from .._errors import ConfigError
from .._objects import check_kind
from .._store.dsn import redact
from .._util import leaf_exceptions

if TYPE_CHECKING:
    pass


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BEHIND = 3
EXIT_INTERRUPTED = 130

EPILOG = """\b
Exit codes: 0 ok, 1 failure (database, not found, client failed),
2 usage error, 3 `migrate --check`: schema behind, 130 interrupted.
"""

#: What `demo` tries when no database is configured.
LOCAL_DEMO_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"

F = TypeVar("F", bound=Callable[..., Any])


class Options:
    """Settings of the whole command, set by the group's options."""

    verbose = False


options = Options()


class CliFailure(Exception):
    """An expected failure: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(redact(self.format(record)) + "\n")
        except Exception:
            self.handleError(record)


def setup_logging(level: int) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, StderrHandler) for h in root.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


def new_console() -> Console:
    return Console(highlight=False, log_path=False)


def error(message: str, prefix: str = "trio-delta") -> None:
    click.echo(f"{prefix}: error: {one_line(message)}", err=True)


def note(message: str) -> None:
    click.echo(f"trio-delta: {redact(message)}", err=True)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# -- options ----------------------------------------------------------------------


def find_dsn(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    if os.environ.get("TRIO_DELTA_DSN"):
        return os.environ["TRIO_DELTA_DSN"]
    if any(os.environ.get(v) for v in ("PGHOST", "PGHOSTADDR", "PGDATABASE", "PGSERVICE")):
        return ""  # libpq reads its environment variables
    return None


def require_dsn(explicit: str | None) -> str:
    dsn = find_dsn(explicit)
    if dsn is None:
        raise CliFailure(
            "no database given: pass --dsn DSN or set TRIO_DELTA_DSN "
            "(or libpq's PGHOST/PGDATABASE)",
            EXIT_USAGE,
        )
    return dsn


def check_schema_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_schema(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def check_kind_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_kind(value, error=ConfigError)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def check_namespace_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    if value is None:
        return None
    try:
        return check_name("namespace", value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def check_tags(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...] | None:
    for tag in value:
        if not tag or len(tag) > 255 or "\x00" in tag:
            raise click.BadParameter(f"invalid tag {tag!r}", ctx, param)
    return value or None


def dsn_option(f: F) -> F:
    return click.option(
        "--dsn",
        metavar="DSN",
        help="libpq connection string or postgresql:// URL "
        "[default: $TRIO_DELTA_DSN, else libpq's PG* variables].",
    )(f)


def schema_option(f: F) -> F:
    return click.option(
        "--schema",
        default="delta",
        envvar="TRIO_DELTA_SCHEMA",
        show_default=True,
        metavar="NAME",
        show_envvar=True,
        callback=check_schema_option,
        help="Postgres schema holding trio_delta's tables.",
    )(f)


def json_option(f: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table."
    )(f)


def filter_options(
    *,
    states: Sequence[str],
    state_help: str,
    limit_default: int | None,
) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        # Applied bottom-up: --help lists them in the reverse of this order.
        f = click.option(
            "--limit",
            type=click.IntRange(min=1),
            default=limit_default,
            show_default=limit_default is not None,
            help="At most this many resources (lowest ids first).",
        )(f)
        f = click.option(
            "--tag",
            "tags",
            multiple=True,
            callback=check_tags,
            metavar="TAG",
            help="Only resources with this tag (repeat: with all of them).",
        )(f)
        f = click.option(
            "--state", "states", multiple=True, type=click.Choice(states), help=state_help
        )(f)
        f = click.option(
            "--namespace",
            callback=check_namespace_option,
            metavar="NAME",
            help="Only resources in this namespace.",
        )(f)
        return click.option(
            "--kind",
            callback=check_kind_option,
            metavar="KIND",
            help="Only resources of this kind.",
        )(f)

    return decorate


# -- the group ----------------------------------------------------------------------


@click.group(
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log at INFO level and show tracebacks of unexpected errors.",
)
@click.version_option(package_name="trio-delta", prog_name="trio-delta")
def cli(verbose: bool) -> None:
    """Resource synchronization control loops on PostgreSQL.

    Manage trio_delta's schema, look at and repair resources, run a client
    for your controllers, or try the demo.
    """
    options.verbose = verbose
    setup_logging(logging.INFO if verbose else logging.WARNING)


def innermost(exc: BaseException) -> BaseException:
    """The first exception in a (nested) group that is not a cancellation."""
    return next((e for e in leaf_exceptions(exc) if not isinstance(e, trio.Cancelled)), exc)


async def check_known_kind(admin: Admin, kind: str | None) -> None:
    if kind is None:
        return
    known = await admin.known_kinds()
    if kind not in known:
        listing = ", ".join(known) if known else "none yet"
        raise CliFailure(f"unknown kind {kind!r} in schema {admin.schema!r} (known: {listing})")
