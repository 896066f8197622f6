"""The ``trio-delta`` command.

Commands::

    trio-delta migrate      create or upgrade the schema (--check: only report)
    trio-delta status       resources per kind and namespace, informers, leader
    trio-delta resources    list | show | retry | invalidate | delete | cancel
    trio-delta pause        stop claims of a kind or namespace (resume: restart)
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

import logging
import traceback
from collections.abc import Sequence

import click

from .._errors import DeltaError
from . import control, demo, resources, run, status, ui  # noqa: F401  # pyright: ignore[reportUnusedImport]  (they register their commands)
from ._common import (
    EXIT_BEHIND,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliFailure,
    StderrHandler,
    cli,
    error,
    innermost,
    options,
)

# -- entry point ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); returns
    the exit code."""
    options.verbose = False
    root = logging.getLogger()
    level = root.level
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="trio-delta",
            standalone_mode=False,
        )
    except BaseException as exc:  # every way out gets one line and an exit code
        return _exit_code(innermost(exc))
    finally:  # leave logging as found (main may run inside a larger program)
        for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
            root.removeHandler(handler)
        root.setLevel(level)
    return result if isinstance(result, int) else EXIT_OK


def _exit_code(exc: BaseException) -> int:
    import psycopg

    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    if isinstance(exc, click.UsageError):
        command = exc.ctx.command_path if exc.ctx is not None else "trio-delta"
        error(f"{exc.format_message()} (see '{command} --help')", prefix=command)
        return EXIT_USAGE
    if isinstance(exc, click.ClickException):
        error(exc.format_message())
        return exc.exit_code
    if isinstance(exc, click.Abort | KeyboardInterrupt):
        error("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, CliFailure):
        if options.verbose and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        error(str(exc))
        return exc.code
    if isinstance(exc, DeltaError | psycopg.Error | OSError):
        if options.verbose:
            traceback.print_exception(exc)
        error(str(exc) if isinstance(exc, DeltaError) else f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    if options.verbose:
        traceback.print_exception(exc)
        error(f"unexpected {type(exc).__name__}: {exc}")
    else:
        error(f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)")
    return EXIT_FAILED


__all__ = [
    "EXIT_BEHIND",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "cli",
    "main",
]
