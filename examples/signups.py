"""Sign-ups and their welcome messages: the controller behind ``fastapi_app.py``.

The web application (asyncio, FastAPI) writes a user and informs a
:class:`Signup` in the same transaction. This module is what runs the work,
on Trio, in its own process::

    trio-delta run signups:controllers --schema fastapi_example

Its worker "sends" each welcome by recording it in the application's
``welcomes`` table, on a connection from ``trio_delta.connect`` (psycopg on
Trio). The insert is idempotent: a retried or repeated work sends nothing
twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import trio_delta as delta

DSN = os.environ.get("TRIO_DELTA_DSN", "host=127.0.0.1 user=postgres dbname=test")
SCHEMA = os.environ.get("EXAMPLE_SCHEMA", "fastapi_example")

#: The application's own tables, in the same schema as trio_delta's.
APP_TABLES = f"""
create table if not exists {SCHEMA}.users (
    email text primary key,
    name text not null,
    created_at timestamptz not null default now()
);
create table if not exists {SCHEMA}.welcomes (
    email text primary key references {SCHEMA}.users,
    message text not null,
    sent_at timestamptz not null default now()
)
"""


@dataclass
class Signup:
    kind: ClassVar[str] = "signup"
    email: str
    name: str

    def id(self) -> str:
        return self.email


class WelcomeController(delta.Controller[Signup]):
    async def work(self, resource: delta.Resource[Signup]) -> None:
        signup = resource.object
        async with delta.connect(DSN) as conn:
            await conn.execute(
                f"insert into {SCHEMA}.welcomes (email, message) values (%s, %s) "
                "on conflict (email) do nothing",
                [signup.email, f"Welcome aboard, {signup.name}!"],
            )


controllers = delta.Controllers()
delta.add_controller(controllers, WelcomeController())
