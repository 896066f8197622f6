"""A FastAPI service that informs in its own transaction, with the asyncio producer.

``POST /users`` writes the user and informs a ``Signup`` in one transaction:
both are committed, or neither (a taken email is a 409 and informs nothing;
an invalid one a 422 and writes nothing). The workers run elsewhere, on Trio
(``signups.py``)::

    trio-delta migrate --schema fastapi_example
    trio-delta run signups:controllers --schema fastapi_example   # the workers
    uvicorn fastapi_app:app                                       # the web app

``GET /users/{email}`` shows the user and whether the welcome was sent yet.
Run both from this folder; ``TRIO_DELTA_DSN`` and ``EXAMPLE_SCHEMA`` choose
the database and schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel
from signups import APP_TABLES, DSN, SCHEMA, Signup

import trio_delta as delta
from trio_delta import producer

pool = AsyncConnectionPool(DSN, open=False)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await pool.open()
    async with pool.connection() as conn:
        await conn.execute(APP_TABLES)
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


class NewUser(BaseModel):
    email: str
    name: str


@app.post("/users", status_code=201)
async def create_user(user: NewUser) -> dict[str, Any]:
    async with pool.connection() as conn, conn.transaction():
        try:
            await conn.execute(
                f"insert into {SCHEMA}.users (email, name) values (%s, %s)",
                [user.email, user.name],
            )
            # In this transaction: the workers see the signup only if the
            # user is committed, and are woken when it is.
            result = await producer.inform_async(conn, Signup(user.email, user.name), schema=SCHEMA)
        except psycopg.errors.UniqueViolation:
            raise HTTPException(409, f"{user.email} is already signed up") from None
        except delta.ObjectError as exc:
            raise HTTPException(422, str(exc)) from None
    return {"email": user.email, "signup": result.resource.state.value}


@app.get("/users/{email}")
async def get_user(email: str) -> dict[str, Any]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"select u.name, w.message from {SCHEMA}.users u "
            f"left join {SCHEMA}.welcomes w using (email) where u.email = %s",
            [email],
        )
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, f"no user {email}")
    return {"email": email, "name": row[0], "welcome": row[1]}
