"""``trio-delta pause`` and ``resume``: stop and restart the claiming of a
kind's or a namespace's work by every client."""

from __future__ import annotations

import click
import trio

from .._admin import Admin
from .._store.params import Pause
from ._common import (
    EPILOG,
    EXIT_OK,
    CliFailure,
    check_kind_option,
    check_namespace_option,
    cli,
    dsn_option,
    echo_json,
    json_option,
    require_dsn,
    schema_option,
)

_KIND = click.option(
    "--kind", callback=check_kind_option, help="The kind (in every namespace, or in --namespace)."
)
_NAMESPACE = click.option(
    "--namespace",
    callback=check_namespace_option,
    help="The namespace (every kind in it, or only --kind).",
)


def _target(kind: str | None, namespace: str | None) -> Pause:
    if kind is None and namespace is None:
        raise click.UsageError("give --kind, --namespace, or both")
    return Pause(kind, namespace)


def _describe(pause: Pause) -> str:
    if pause.kind is None:
        return f"namespace {pause.namespace}"
    if pause.namespace is None:
        return f"kind {pause.kind}"
    return f"kind {pause.kind} in namespace {pause.namespace}"


@cli.command(epilog=EPILOG)
@dsn_option
@schema_option
@_KIND
@_NAMESPACE
@json_option
def pause(
    dsn: str | None, schema: str, kind: str | None, namespace: str | None, as_json: bool
) -> int:
    """Stop every client from claiming work of a kind, a namespace, or a
    kind in a namespace.

    Work already running finishes; the informer of a paused kind does not
    run. Clients hear of it at once (a notification), or at their next
    poll. It lasts, across restarts, until `trio-delta resume`.
    """
    target = _target(kind, namespace)

    async def act() -> bool:
        async with Admin.connect(require_dsn(dsn), schema) as admin:
            await admin.require_current()
            return await admin.pause(target)

    added = trio.run(act)
    if as_json:
        echo_json({"kind": kind, "namespace": namespace, "paused": True, "already": not added})
    else:
        click.echo(f"paused {_describe(target)}" + ("" if added else " (it was already)"))
    return EXIT_OK


@cli.command(epilog=EPILOG)
@dsn_option
@schema_option
@_KIND
@_NAMESPACE
@json_option
def resume(
    dsn: str | None, schema: str, kind: str | None, namespace: str | None, as_json: bool
) -> int:
    """Let clients claim the work `trio-delta pause` stopped (the same
    --kind and --namespace)."""
    target = _target(kind, namespace)

    async def act() -> bool:
        async with Admin.connect(require_dsn(dsn), schema) as admin:
            await admin.require_current()
            return await admin.resume(target)

    if not trio.run(act):
        raise CliFailure(f"{_describe(target)} is not paused")
    if as_json:
        echo_json({"kind": kind, "namespace": namespace, "paused": False})
    else:
        click.echo(f"resumed {_describe(target)}")
    return EXIT_OK
