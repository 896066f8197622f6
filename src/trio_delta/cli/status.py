"""``trio-delta migrate`` and ``status``: the schema, and what a database
holds and runs, through the store port."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
import trio
from rich.table import Table
from rich.text import Text

from .._admin import STATES, Admin, duration_text, relative_time
from .._store.dsn import describe_dsn, normalize_dsn

if TYPE_CHECKING:
    pass

from ._common import (
    EPILOG,
    EXIT_BEHIND,
    EXIT_OK,
    check_kind_option,
    check_known_kind,
    check_namespace_option,
    cli,
    dsn_option,
    echo_json,
    json_option,
    new_console,
    require_dsn,
    schema_option,
)

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
    conninfo = require_dsn(dsn)
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

    from .._migrate import migrate as apply_migrations

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


@cli.command(epilog=EPILOG)
@dsn_option
@schema_option
@click.option("--kind", callback=check_kind_option, metavar="KIND", help="Only this kind.")
@click.option(
    "--namespace", callback=check_namespace_option, metavar="NAME", help="Only this namespace."
)
@json_option
def status(
    dsn: str | None, schema: str, kind: str | None, namespace: str | None, as_json: bool
) -> int:
    """Show resources and informers of SCHEMA.

    Per kind and namespace: resources by state, those scheduled for later
    (waiting: a run-at, a requeue or a snooze) and the snoozed among them,
    and how long the oldest scheduled one has waited. Per controller: its
    last and next inform, the client informing now and the last error.
    What is paused, and the current leader.
    """

    async def read() -> dict[str, Any]:
        async with Admin.connect(require_dsn(dsn), schema) as admin:
            await admin.require_current()
            await check_known_kind(admin, kind)
            return await admin.status(kind=kind, namespace=namespace)

    data = trio.run(read)
    if as_json:
        echo_json(data)
        return EXIT_OK
    console = new_console()
    leader = data["leader"]
    console.print(
        f"schema [bold]{schema}[/] on {data['database']} (version {data['schema_version']})",
        highlight=False,
    )
    console.print(
        "leader: "
        + (
            f"[bold]{leader['id']}[/] since {relative_time(data['now'], leader['elected_at'])}"
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
        # Scheduled but not yet due (a run-at, a requeue, a snooze), and of
        # those the snoozed: shown when there are any.
        later = [c for c in ("waiting", "snoozed") if data["totals"][c]]
        for column in later:
            table.add_column(column, justify="right")
        table.add_column("oldest scheduled", justify="right")
        for group in data["resources"]:
            table.add_row(
                group["kind"],
                group["namespace"],
                *(str(group["states"][s]) for s in shown),
                str(group["total"]),
                *(str(group[c]) for c in later),
                duration_text(group["oldest_scheduled_age_seconds"]),
            )
        console.print(table)
    else:
        console.print("resources: none")
    for p in data["paused"]:
        what = (
            f"namespace {p['namespace']}"
            if p["kind"] is None
            else f"kind {p['kind']}"
            + ("" if p["namespace"] is None else f" in namespace {p['namespace']}")
        )
        console.print(
            f"[bold yellow]paused[/]: {what} since "
            f"{relative_time(data['now'], p['paused_at'])} by {p['paused_by']}",
            highlight=False,
        )
    if not data["controllers"]:
        console.print("controllers: none registered yet")
        return EXIT_OK
    informers = Table(title="controllers", title_justify="left")
    for column in ("kind", "last inform", "next inform", "informing on", "last error"):
        informers.add_column(column, overflow="fold")
    for c in data["controllers"]:
        informers.add_row(
            c["kind"],
            relative_time(data["now"], c["last_inform_at"]),
            "requested" if c["requested_at"] else relative_time(data["now"], c["next_inform_at"]),
            c["informing_on"] or "-",
            Text(c["last_error"] or "-", style="red" if c["last_error"] else ""),
        )
    console.print(informers)
    return EXIT_OK
