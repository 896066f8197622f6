"""Concurrent single informs share statements; when the server refuses one
(here a trigger of the application's rejects one object), only the call
whose object caused it fails: the others are written, each with its own
result. An error no object caused (the database refusing every write)
goes to every call at once, without a statement per object."""

from __future__ import annotations

import psycopg
import pytest
import trio

import trio_delta as delta
from trio_delta._store.postgres.connections import store_error

from ..conftest import sql
from ..models import RecordingController, User, controllers_for

REJECT = """
create function {schema}.reject_banned() returns trigger language plpgsql as $$
begin
    if new.object_id like 'banned%' then
        raise exception 'the application refuses %', new.object_id;
    end if;
    return new;
end $$;
create trigger reject_banned before insert or update on {schema}.resources
    for each row execute function {schema}.reject_banned();
"""


async def test_a_refused_object_fails_its_own_call_only(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    sql(pg_dsn, REJECT.format(schema=schema))
    emails = [f"u{i}@x" for i in range(20)]
    emails[7] = "banned@x"
    results: dict[str, delta.InformResult[User] | BaseException] = {}
    async with delta.open_delta_client(
        pg_dsn, controllers_for(RecordingController()), config=config
    ) as client:

        async def inform(email: str) -> None:
            try:
                results[email] = await client.inform(User(email, "n", 1))
            except delta.StoreError as exc:
                results[email] = exc

        async with trio.open_nursery() as nursery:
            for email in emails:
                nursery.start_soon(inform, email)
        coalescer = client._writer.coalescer  # pyright: ignore[reportPrivateUsage]
    refused = results.pop("banned@x")
    assert isinstance(refused, delta.StoreError)
    assert "the application refuses banned@x" in str(refused)
    assert not refused.maybe_applied
    assert refused.sqlstate == "P0001"
    for email, result in results.items():
        assert isinstance(result, delta.InformResult), (email, result)
        assert result.changed
    stored = sql(pg_dsn, f"select object_id from {schema}.resources order by object_id")
    assert sorted(r[0] for r in stored) == sorted(results)
    # They did share: fewer statements than calls before the refused batch
    # went again one by one.
    assert coalescer.statements < 2 * len(emails)


@pytest.mark.parametrize("first", ["banned@x", "ok@x"])
async def test_a_lone_refused_call_gets_the_error(
    pg_dsn: str, schema: str, config: delta.Config, first: str
) -> None:
    sql(pg_dsn, REJECT.format(schema=schema))
    async with delta.open_delta_client(
        pg_dsn, controllers_for(RecordingController()), config=config
    ) as client:
        if first == "ok@x":
            await client.inform(User(first, "n", 1))
        with pytest.raises(delta.StoreError, match="refuses banned@x"):
            await client.inform(User("banned@x", "n", 1))


REFUSE_ALL = """
create function {schema}.refuse_all() returns trigger language plpgsql as $$
begin
    raise exception 'writes are off' using errcode = 'read_only_sql_transaction';
end $$;
create trigger refuse_all before insert or update on {schema}.resources
    for each row execute function {schema}.refuse_all();
"""


async def test_an_error_no_object_caused_fails_every_call_at_once(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    sql(pg_dsn, REFUSE_ALL.format(schema=schema))
    failed: list[delta.StoreError] = []
    async with delta.open_delta_client(
        pg_dsn, controllers_for(RecordingController()), config=config
    ) as client:

        async def inform(email: str) -> None:
            with pytest.raises(delta.StoreError) as caught:
                await client.inform(User(email, "n", 1))
            failed.append(caught.value)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(inform, f"u{i}@x")
        coalescer = client._writer.coalescer  # pyright: ignore[reportPrivateUsage]
    assert len(failed) == 20
    assert {e.sqlstate for e in failed} == {"25006"}
    assert coalescer.statements <= 4  # not one more per object


@pytest.mark.parametrize(
    ("error", "maybe_applied"),
    [
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.errors.AdminShutdown("terminating connection"), True),
        (psycopg.errors.DeadlockDetected("deadlock detected"), False),
        (psycopg.errors.SerializationFailure("could not serialize"), False),
        (psycopg.errors.QueryCanceled("canceling statement"), False),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
    ],
)
def test_a_rolled_back_statement_is_not_maybe_applied(
    error: psycopg.Error, maybe_applied: bool
) -> None:
    mapped = store_error(error, "inform")
    assert mapped.maybe_applied is maybe_applied
    assert mapped.sqlstate == error.sqlstate
