"""examples/fastapi_app.py, served by uvicorn on 127.0.0.1 with its workers in
``trio-delta run``, answers real HTTP requests: a sign-up commits the user
and its resource together and gets welcomed; a taken or invalid email
writes and informs nothing."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any

import httpx
import trio

import trio_delta as delta

from ..conftest import sql

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def background(
    args: list[str], env: dict[str, str], log: IO[bytes]
) -> AsyncIterator[trio.Process]:
    """``args`` running from examples/ for the block, output to ``log``;
    terminated (SIGTERM, then SIGKILL) when the block ends."""
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(
            partial(
                trio.run_process, args, cwd=EXAMPLES, env=env, stdout=log, stderr=log, check=False
            )
        )
        try:
            yield proc
        finally:
            nursery.cancel_scope.cancel()


async def wait_until_serving(client: httpx.AsyncClient, proc: trio.Process) -> None:
    with trio.fail_after(30):
        while True:
            assert proc.returncode is None, "the web app exited"
            try:
                if (await client.get("/openapi.json")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await trio.sleep(0.1)


async def test_signups_commit_with_the_user_and_are_welcomed(
    pg_dsn: str, schema_name: str, tmp_path: Path
) -> None:
    schema = schema_name
    await delta.migrate(pg_dsn, schema=schema)
    env = {**os.environ, "TRIO_DELTA_DSN": pg_dsn, "EXAMPLE_SCHEMA": schema}
    port = free_port()
    web_log, worker_log = tmp_path / "web.log", tmp_path / "workers.log"

    def logs() -> str:
        return f"web:\n{web_log.read_text()}\nworkers:\n{worker_log.read_text()}"

    run = [sys.executable, "-m", "trio_delta", "run", "signups:controllers", "--schema", schema]
    serve = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--port", str(port)]
    with web_log.open("wb") as web_out, worker_log.open("wb") as worker_out:
        async with (
            background(run, env, worker_out),
            background([*serve, "--host", "127.0.0.1"], env, web_out) as web,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            await wait_until_serving(client, web)

            answer = await client.post("/users", json={"email": "ada@example.com", "name": "Ada"})
            assert answer.status_code == 201, (answer.text, logs())
            assert answer.json() == {"email": "ada@example.com", "signup": "scheduled"}

            welcome: Any = None
            with trio.fail_after(20):
                while welcome is None:
                    user = (await client.get("/users/ada@example.com")).json()
                    welcome = user["welcome"]
                    await trio.sleep(0.05)
            assert welcome == "Welcome aboard, Ada!", logs()

            again = await client.post("/users", json={"email": "ada@example.com", "name": "Bob"})
            assert again.status_code == 409, again.text
            invalid = await client.post("/users", json={"email": "", "name": "Nobody"})
            assert invalid.status_code == 422, invalid.text
            assert "id must be 1-" in invalid.json()["detail"]
            missing = await client.get("/users/nobody@example.com")
            assert missing.status_code == 404

    # One user, one resource, worked once: the refused requests left nothing.
    assert sql(pg_dsn, f"select email, name from {schema}.users") == [("ada@example.com", "Ada")]
    resources = sql(pg_dsn, f"select object_id, state, attempt from {schema}.resources")
    assert resources == [("ada@example.com", "synced", 1)], logs()
