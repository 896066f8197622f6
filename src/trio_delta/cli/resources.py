"""``trio-delta resources``: list, show, retry, invalidate and delete
resources, through the store port's insights."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import click
import trio
from rich.table import Table
from rich.text import Text

from .._admin import STATES, Admin, selection
from .._store.params import Change, ResourceFilter

if TYPE_CHECKING:
    pass

from ._common import (
    EPILOG,
    EXIT_OK,
    CliFailure,
    F,
    check_kind_option,
    check_known_kind,
    cli,
    dsn_option,
    echo_json,
    filter_options,
    json_option,
    new_console,
    require_dsn,
    schema_option,
)

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
    """``iso`` in this machine's local time: the store's times come in UTC,
    whatever the database's zone."""
    if iso is None:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%m-%d %H:%M:%S")


def _print_resources(rows: list[dict[str, Any]], title: str) -> None:
    with_errors = any(r["errors"] for r in rows)
    # Shown when any row has one: most deployments use neither.
    with_priority = any(r["priority"] for r in rows)
    with_snoozes = any(r["snoozes"] for r in rows)
    table = Table(title=title, title_justify="left")
    table.add_column("id", no_wrap=True, justify="right")
    table.add_column("kind", min_width=8, max_width=24)
    table.add_column("object id", min_width=10, overflow="fold")
    table.add_column("namespace", min_width=7, max_width=16)
    table.add_column("state", no_wrap=True)
    table.add_column("due", no_wrap=True)
    if with_priority:
        table.add_column("priority", justify="right")
    if with_snoozes:
        table.add_column("snoozes", justify="right")
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
        if with_priority:
            cells.append(str(r["priority"]))
        if with_snoozes:
            cells.append(str(r["snoozes"]))
        if with_errors:
            cells.append(Text(_last_error(r), style="red"))
        table.add_row(*cells)
    new_console().print(table)


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
    """List resources matching the filters, lowest id first: state,
    attempts, due time (in this machine's local time), and priority and
    snoozes when any has them."""
    flt = _selection(kind, namespace, states, tags, (), limit)

    async def read() -> list[dict[str, Any]]:
        async with Admin.connect(require_dsn(dsn), schema) as admin:
            await admin.require_current()
            await check_known_kind(admin, kind)
            return await admin.list_resources(flt)

    rows = trio.run(read)
    if as_json:
        echo_json(rows)
    else:
        more = f" (the first {limit}; see --limit)" if len(rows) == limit else ""
        _print_resources(rows, f"{len(rows)} resource{'s' if len(rows) != 1 else ''}{more}")
    return EXIT_OK


@resources.command(epilog=EPILOG)
@dsn_option
@schema_option
@click.argument("kind", callback=check_kind_option)
@click.argument("object_id")
@json_option
def show(dsn: str | None, schema: str, kind: str, object_id: str, as_json: bool) -> int:
    """Show one resource: its state, priority, snoozes, object, tags,
    metadata and errors."""

    async def read() -> dict[str, Any]:
        async with Admin.connect(require_dsn(dsn), schema) as admin:
            await admin.require_current()
            found = await admin.get_resource(kind, object_id)
            if found is None:
                await check_known_kind(admin, kind)
                raise CliFailure(f"no {kind} resource with id {object_id!r}")
            return found

    resource = trio.run(read)
    if as_json:
        echo_json(resource)
        return EXIT_OK
    console = new_console()
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
        "priority",
        "snoozes",
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
        async with Admin.connect(require_dsn(dsn), schema) as admin:
            await admin.require_current()
            await check_known_kind(admin, flt.kind)
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
    done_verb = {
        "retry": "retried",
        "invalidate": "invalidated",
        "delete": "deleted",
        "cancel": "cancelled",
    }[verb]
    if as_json:
        echo_json(
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


def _restart_command(
    name: str, change: Change, *, states: tuple[str, ...], state_help: str, doc: str
) -> click.Command:
    """A command that starts a new round of work for the selected
    resources (retry, invalidate): the same options, one query."""

    @resources.command(name, epilog=EPILOG, help=doc)
    @dsn_option
    @schema_option
    @filter_options(states=states, limit_default=None, state_help=state_help)
    @change_options
    @click.argument("object_ids", nargs=-1, metavar="[OBJECT_ID]...")
    def command(
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
        selection = _selection(kind, namespace, states, tags, object_ids, limit)
        return _change(name, dsn, schema, selection, all_, as_json, dry_run, change)

    return command


retry = _restart_command(
    "retry",
    Change.RETRY,
    states=("failed", "degraded"),
    state_help="Only failed or only degraded resources [default: both].",
    doc="""Retry failed and degraded resources now.

They become scheduled, due now, with their attempts counted from 0
again; running clients are woken at once.""",
)

invalidate = _restart_command(
    "invalidate",
    Change.INVALIDATE,
    states=("synced",),
    state_help="Accepted for symmetry: only synced resources are invalidated.",
    doc="""Have synced resources worked again.

They become expired, due now (as Client.invalidate does); running
clients are woken at once.""",
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
    rows are removed at once. Work running on a deleted resource is
    cancelled (see cancel).
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


@resources.command(epilog=EPILOG)
@dsn_option
@schema_option
@click.option("--dry-run", is_flag=True, help="Only show what would change.")
@json_option
@click.argument("kind", callback=check_kind_option)
@click.argument("object_ids", nargs=-1, required=True, metavar="OBJECT_ID...")
def cancel(
    dsn: str | None,
    schema: str,
    dry_run: bool,
    as_json: bool,
    kind: str,
    object_ids: tuple[str, ...],
) -> int:
    """Stop syncing resources, cancelling the work running on them.

    The resources become deleted, as with `delete` (the cleaner removes them
    after deleted_retention; a changed object brings one back), and the
    client working on one cancels that work within moments: its finally
    blocks run, and whatever it would have written is refused.
    """
    return _change(
        "cancel",
        dsn,
        schema,
        _selection(kind, None, (), None, object_ids, None),
        False,
        as_json,
        dry_run,
        Change.DELETE,
    )
