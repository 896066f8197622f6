"""A real PgBouncer in transaction mode, in front of a given Postgres.

Debian's ``pgbouncer`` package provides the binary; when it is missing and
we may install packages (root with apt-get), it is installed here, as
``.ci/run`` does. Nothing is skipped: without it, the fixture fails.

PgBouncer refuses to run as root, so as root it runs as ``run_as`` (the
``postgres`` user by default), in a directory of its own that user owns (not under pytest's
temporary directory, which becomes private to root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

#: Where Debian puts the binary (not on a user's PATH).
_CANDIDATES = ("pgbouncer", "/usr/sbin/pgbouncer")


def find_pgbouncer() -> str:
    for candidate in _CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", "pgbouncer"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "pgbouncer"],
                capture_output=True,
                check=False,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        for candidate in _CANDIDATES:
            found = shutil.which(candidate)
            if found:
                return found
    raise RuntimeError(
        "PgBouncer is needed by these tests and is not installed: apt-get install pgbouncer"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """A running PgBouncer; :attr:`dsn` is the upstream DSN, through it."""

    def __init__(self, upstream_dsn: str, *, pool_size: int = 20, run_as: str = "postgres") -> None:
        self.upstream_dsn = upstream_dsn
        self.pool_size = pool_size
        params = conninfo_to_dict(upstream_dsn)
        host = str(params.get("host") or "127.0.0.1")
        port = str(params.get("port") or "5432")
        user = str(params.get("user") or "postgres")
        self.port = _free_port()
        self.home = Path(tempfile.mkdtemp(prefix="td-pgbouncer-"))
        (self.home / "users.txt").write_text(f'"{user}" ""\n')
        (self.home / "pgbouncer.ini").write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={host} port={port}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {self.home / 'users.txt'}",
                    "pool_mode = transaction",
                    "max_client_conn = 2000",
                    f"default_pool_size = {pool_size}",
                    # A server restarted under it is found at once.
                    "server_login_retry = 1",
                    f"logfile = {self.home / 'pgbouncer.log'}",
                    f"pidfile = {self.home / 'pgbouncer.pid'}",
                    "",
                ]
            )
        )
        command = [find_pgbouncer()]
        if os.geteuid() == 0:
            owner = pwd.getpwnam(run_as)
            for path in (self.home, *self.home.iterdir()):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            command += ["-u", run_as]
        command.append(str(self.home / "pgbouncer.ini"))
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.dsn = make_conninfo(upstream_dsn, host="127.0.0.1", port=str(self.port))
        deadline = time.monotonic() + 15
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2, prepare_threshold=None):
                    break
            except psycopg.Error:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PgBouncer did not start: {self.log()}") from None
                time.sleep(0.05)

    def log(self) -> str:
        path = self.home / "pgbouncer.log"
        return path.read_text() if path.exists() else "(no log)"

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self.home, ignore_errors=True)
