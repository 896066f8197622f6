"""``trio-delta pause`` and ``resume``: stop and restart the claiming of a
kind's or a namespace's work by every client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

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

F = TypeVar("F", bound=Callable[..., Any])


def pause_options(f: F) -> F:
    """The options of pause and resume: what is (to be) paused."""
    f = json_option(f)
    f = click.option(
        "--namespace",
        callback=check_namespace_option,
        help="The namespace (every kind in it, or only --kind).",
    )(f)
    f = click.option(
        "--kind",
        callback=check_kind_option,
        help="The kind (in every namespace, or in --namespace).",
    )(f)
    f = schema_option(f)
    return dsn_option(f)


def _target(kind: str | None, namespace: str | None) -> Pause:
    if kind is None and namespace is None:
        raise click.UsageError("give --kind, --namespace, or both")
    return Pause(kind, namespace)


@cli.command(epilog=EPILOG)
@pause_options
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
        click.echo(f"paused {target}" + ("" if added else " (it was already)"))
    return EXIT_OK


@cli.command(epilog=EPILOG)
@pause_options
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
        raise CliFailure(f"{target} is not paused")
    if as_json:
        echo_json({"kind": kind, "namespace": namespace, "paused": False})
    else:
        click.echo(f"resumed {target}")
    return EXIT_OK
