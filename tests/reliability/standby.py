"""A streaming standby of an :class:`OwnServer`, for failover tests.

``make_standby(primary)`` copies the primary with ``pg_basebackup -R`` (the
primary's own binaries, run as the user its Postgres runs as), starts the
copy on a socket directory of its own and waits until it streams and has
replayed everything the primary had written. ``make_synchronous`` then
makes the primary wait for it on every commit that asks to wait
(``synchronous_commit`` on): the configuration under which an acknowledged
commit survives the loss of the primary. ``multi_host_dsn`` is the libpq
connection string a client uses to follow the primary across a failover.

Like the primary, the standby lives in a new directory outside pytest's
temporary directory, owned by the server's user (see ``start_own_server``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from tests.reliability.pgcontrol import OwnServer

#: The standby's port: the port only names its socket file (no TCP), and the
#: standby's socket lives in a directory of its own, so it may be the primary's.
STANDBY_PORT = 5432


def _run(binary: Path, args: list[str], user: str, cwd: Path, timeout: float = 60) -> None:
    """Run one of the server's programs as the server's user; raise with its output."""
    # Output to a file, not a pipe: a Postgres that pg_ctl starts would hold a pipe open.
    with tempfile.TemporaryFile("w+") as out:
        done = subprocess.run(
            [str(binary), *args],
            user=user,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            out.seek(0)
            raise RuntimeError(f"{binary.name} {' '.join(args)} failed: {out.read().strip()}")


def socket_of(server_dsn: str) -> tuple[str, int]:
    """The socket directory and port of the server at ``server_dsn``."""
    with psycopg.connect(server_dsn, autocommit=True, connect_timeout=5) as conn:
        dirs = str(conn.execute("show unix_socket_directories").fetchone()[0])  # type: ignore[index]
        port = int(conn.execute("show port").fetchone()[0])  # type: ignore[index]
    return dirs.split(",")[0].strip(), port


def wait_until(predicate: Callable[[], bool], within: float, what: str) -> float:
    """Poll ``predicate`` until true; the seconds it took. Raises after ``within``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            raise RuntimeError(f"{what}: not within {within}s")
        time.sleep(0.02)
    return time.monotonic() - start


def _query(dsn: str, query: str, params: object = None) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


class Standby:
    """A hot standby in ``home/pgdata``, reached on a socket in ``home/socket``."""

    def __init__(self, primary: OwnServer, home: Path) -> None:
        self.primary = primary
        self.home = home
        self.pgdata = home / "pgdata"
        self.socket_dir = home / "socket"
        self.port = STANDBY_PORT
        self.log = home / "postgres.log"
        # The primary's binaries, and the user its Postgres runs as.
        self._bin: Path = primary.bin_path
        self._user: str = primary.system_user
        self.dsn = make_conninfo(
            host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres"
        )

    def _pg_ctl(self, *args: str) -> None:
        _run(self._bin / "pg_ctl", ["-D", str(self.pgdata), *args], self._user, self.home)

    def base_backup(self) -> None:
        """Copy the primary with ``pg_basebackup -R`` (streaming its WAL as it copies)."""
        host, port = socket_of(self.primary.dsn)
        source = make_conninfo(host=host, port=port, user="postgres")
        _run(
            self._bin / "pg_basebackup",
            ["-R", "-X", "stream", "-c", "fast", "-D", str(self.pgdata), "-d", source],
            self._user,
            self.home,
            timeout=120,
        )
        # The primary's socket lies in its data directory: the copy took its
        # lock file along, which would stop a server on the same port.
        for stale in self.pgdata.glob(".s.PGSQL.*"):
            stale.unlink()
        self.socket_dir.mkdir()
        shutil.chown(self.socket_dir, self._user, self._user)

    def start(self) -> None:
        """Start the standby; returns once it accepts (read-only) connections."""
        options = f"-h '' -k {self.socket_dir} -p {self.port}"
        self._pg_ctl("-w", "-t", "30", "-o", options, "-l", str(self.log), "start")
        wait_until(self.accepts, 30, f"the standby at {self.pgdata} accepting connections")

    def accepts(self) -> bool:
        try:
            _query(self.dsn, "select 1")
        except psycopg.Error:
            return False
        return True

    def in_recovery(self) -> bool:
        return bool(_query(self.dsn, "select pg_is_in_recovery()")[0][0])

    def replayed(self, lsn: str) -> bool:
        """Whether the standby has replayed the primary's WAL up to ``lsn``."""
        rows = _query(
            self.dsn,
            "select coalesce(pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= 0, false)",
            (lsn,),
        )
        return bool(rows[0][0])

    def wait_caught_up(self, within: float = 30) -> None:
        """Wait until the standby has replayed all the primary has written so far."""
        lsn = str(_query(self.primary.dsn, "select pg_current_wal_lsn()")[0][0])
        wait_until(lambda: self.replayed(lsn), within, f"the standby replaying up to {lsn}")

    def wait_replay_settled(self, within: float = 30) -> None:
        """After the primary stopped cleanly (``fast`` or ``smart``: it sent
        all its WAL, up to its shutdown checkpoint, before it exited): wait
        until the standby has replayed everything it received.

        Not for a crashed primary (``immediate``): the standby may then hold
        the start of a record that never comes whole, and never replays it.
        """

        def settled() -> bool:
            rows = _query(
                self.dsn,
                "select pg_last_wal_receive_lsn() is not null"
                " and pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()",
            )
            return bool(rows[0][0])

        wait_until(settled, within, "the standby replaying all the WAL it received")

    def promote(self) -> None:
        """Make the standby a primary; returns once it accepts writes."""
        self._pg_ctl("-w", "-t", "30", "promote")
        wait_until(lambda: not self.in_recovery(), 30, "the promoted standby leaving recovery")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-w", "stop", "-m", mode)

    def cleanup(self) -> None:
        """Stop the server if it runs (``immediate``) and remove its directory."""
        try:
            if (self.pgdata / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.home, ignore_errors=True)


def _ensure_replication_allowed(primary: OwnServer) -> None:
    """A ``local replication`` line in the primary's pg_hba.conf (initdb's
    default has one, with trust); added and reloaded if missing."""
    lines = [line.split() for line in primary.hba_path.read_text().splitlines()]
    if any(f[:2] == ["local", "replication"] for f in lines if f and not f[0].startswith("#")):
        return
    with primary.hba_path.open("a") as hba:
        hba.write("\nlocal   replication     all                                     trust\n")
    primary.reload()


def _home_for(user: str | None) -> Path:
    home = Path(tempfile.mkdtemp(prefix="td-standby-"))
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    return home


def make_standby(primary: OwnServer) -> Standby:
    """A running hot standby of ``primary``, streaming and caught up.

    On failure, whatever was made is stopped and removed before raising.
    """
    _ensure_replication_allowed(primary)
    standby = Standby(primary, _home_for(primary.system_user))
    try:
        standby.base_backup()
        standby.start()
        wait_until(standby.in_recovery, 30, "the standby in recovery")
        wait_until(
            lambda: bool(
                _query(
                    primary.dsn,
                    "select count(*) from pg_stat_replication where state = 'streaming'",
                )[0][0]
            ),
            30,
            "the standby streaming from the primary",
        )
        standby.wait_caught_up()
    except Exception as exc:
        log = standby.log.read_text() if standby.log.exists() else "(no log)"
        standby.cleanup()
        raise RuntimeError(f"no standby: {exc}\nits log:\n{log[-4000:]}") from exc
    except BaseException:
        standby.cleanup()
        raise
    return standby


def make_synchronous(primary: OwnServer, within: float = 30) -> None:
    """Make every standby of ``primary`` synchronous (``synchronous_standby_names
    = '*'``, in the primary's postgresql.auto.conf only: a promoted standby
    must not wait for a standby it does not have); returns once one is ``sync``.

    Call it once the standby streams: before that, commits would hang.
    """
    _query(primary.dsn, "alter system set synchronous_standby_names = '*'")
    _query(primary.dsn, "select pg_reload_conf()")
    wait_until(
        lambda: bool(
            _query(
                primary.dsn, "select count(*) from pg_stat_replication where sync_state = 'sync'"
            )[0][0]
        ),
        within,
        "a synchronous standby",
    )


def multi_host_dsn(primary: OwnServer, standby: Standby, connect_timeout: int = 2) -> str:
    """libpq's multi-host string for both servers: it connects to whichever
    accepts writes (``target_session_attrs=read-write``)."""
    host, port = socket_of(primary.dsn)
    return make_conninfo(
        host=f"{host},{standby.socket_dir}",
        port=f"{port},{standby.port}",
        user="postgres",
        dbname="postgres",
        target_session_attrs="read-write",
        connect_timeout=connect_timeout,
    )
