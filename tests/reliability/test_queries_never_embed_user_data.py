"""No SQL text is ever built from user data: values go only as bound parameters.

Three checks:

* At run time: every statement psycopg is asked to run (``Cursor.execute``
  and ``AsyncCursor.execute``, and their ``executemany``) is recorded while a
  client, its informer, its workers, the leader's maintenance, the user's
  transactions, ``migrate`` and the ``trio-delta`` command handle ids, kinds,
  namespaces, tags, metadata, field values, error messages, informer options
  and a client id that all carry a unique marker and SQL fragments. The
  marker must turn up in the parameters and never in the SQL text.
* Statically: every ``sql.SQL(...)`` in src/ is made from a constant or from
  the package's own SQL files, every ``execute`` gets a constant, a named
  query or a composed statement (never an f-string of anything but module
  constants, never ``%`` or ``+`` or ``str.format``), and every
  ``sql.Identifier`` gets a constant or the validated schema.
* The schema name reaches SQL only as a ``psycopg.sql.Identifier`` after
  validation: bad names are ``ConfigError`` before any connection, and names
  that are SQL keywords work because they are quoted.
"""

from __future__ import annotations

import ast
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
import trio
from psycopg import sql

import trio_delta as delta
from tests.conftest import drop_schema
from tests.reliability.pgcontrol import OwnServer
from trio_delta.cli import main as cli_main

SRC = Path(delta.__file__).resolve().parent
MARK = f"zq{uuid.uuid4().hex[:10]}"  # lower-case hex: fits kind and namespace names
HOSTILE = f'{MARK}\'); drop table resources; -- $1 %s {{schema}} "x"'

KIND = f"k-{MARK}"
NAMESPACE = f"ns-{MARK}"  # resources here expire and are worked again
STILL = f"nx-{MARK}"  # and here they stay synced


@dataclass
class Thing:
    kind: ClassVar[str] = KIND
    key: str
    note: str = ""

    def id(self) -> str:
        return self.key

    def inform_opts(self) -> delta.InformOpts:
        return delta.InformOpts(namespace=NAMESPACE)


class ThingController(delta.Controller[Thing]):
    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Thing]) -> None:
        async with send:
            for i in range(3):
                await send.send(Thing(f"informed-{i}-{HOSTILE}", f"{opts.labels}"))

    async def work(self, resource: delta.Resource[Thing]) -> None:
        key = resource.object.key
        self.seen[key] = self.seen.get(key, 0) + 1
        if key.startswith("fails-once") and self.seen[key] == 1:
            raise RuntimeError(f"failed with {HOSTILE}")
        if key.startswith("delete"):
            raise delta.ResourceDelete(f"deleted because {HOSTILE}")


@dataclass
class Statement:
    text: str
    params: Any


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[Statement]:
    """Every statement handed to psycopg from now on, with its SQL as text."""
    recorded: list[Statement] = []

    def render(query: Any, conn: Any) -> str:
        if isinstance(query, sql.Composable):
            return query.as_string(conn)
        if isinstance(query, bytes | bytearray | memoryview):
            return bytes(query).decode("utf-8", "replace")
        return str(query)

    def spy_async(name: str) -> Any:
        original = getattr(psycopg.AsyncCursor, name)

        async def spy(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            recorded.append(Statement(render(query, self.connection), params))
            return await original(self, query, params, **kwargs)

        return spy

    def spy_sync(name: str) -> Any:
        original = getattr(psycopg.Cursor, name)

        def spy(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            recorded.append(Statement(render(query, self.connection), params))
            return original(self, query, params, **kwargs)

        return spy

    for name in ("execute", "executemany"):
        monkeypatch.setattr(psycopg.AsyncCursor, name, spy_async(name))
        monkeypatch.setattr(psycopg.Cursor, name, spy_sync(name))
    return recorded


@pytest.fixture
def plain_schema(pg_dsn: str) -> Iterator[str]:
    name = f"q_{uuid.uuid4().hex[:16]}"  # no marker: the schema is ours, not user data
    yield name
    drop_schema(pg_dsn, name)


def _carries_mark(value: Any) -> bool:
    if isinstance(value, str):
        return MARK in value
    if isinstance(value, bytes):
        return MARK.encode() in value
    if isinstance(value, dict):
        return any(_carries_mark(k) or _carries_mark(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_carries_mark(v) for v in value)
    return False


async def _wait(predicate: Any, within: float = 15.0) -> None:
    with trio.fail_after(within):
        while not await predicate():
            await trio.sleep(0.05)


async def test_user_data_reaches_sql_only_as_parameters(
    pg_dsn: str,
    plain_schema: str,
    statements: list[Statement],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await delta.migrate(pg_dsn, schema=plain_schema)
    controller = ThingController()
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    config = delta.Config(
        schema=plain_schema,
        client_id=f"client-{HOSTILE}",
        poll_interval=0.1,
        leader_ttl=1.0,
        maintenance_interval=0.2,
        retry_policy=lambda attempt: 0.05,
        deleted_retention=0.0,
        inform_interval=-1,
        shutdown_grace=1.0,
    )
    namespaces = {
        NAMESPACE: delta.NamespaceConfig(resource_expiry=0.5),
        STILL: delta.NamespaceConfig(),
    }
    opts = delta.InformOpts(
        namespace=NAMESPACE,
        tags=[f"tag_{MARK}"],
        metadata={f"key {HOSTILE}": [HOSTILE, {HOSTILE: 1}]},
    )
    async with delta.open_delta_client(
        pg_dsn, controllers, namespaces=namespaces, config=config
    ) as client:
        await client.inform(Thing(f"plain-{HOSTILE}", HOSTILE), opts)
        await client.inform(Thing(f"fails-once-{HOSTILE}", HOSTILE), opts)
        await client.inform(Thing(f"delete-{HOSTILE}", HOSTILE), opts)
        async with client.transaction() as tx:
            await tx.execute("select %s::text", [HOSTILE])
            await client.inform_tx(
                tx, Thing(f"in-tx-{HOSTILE}", HOSTILE), delta.InformOpts(namespace=STILL)
            )
        await client.schedule_inform(
            KIND, options=delta.InformOptions(labels={HOSTILE: HOSTILE}, limit=5, order_by=HOSTILE)
        )

        async def all_done() -> bool:
            rows = await client.list_resources(kind=KIND, namespace=NAMESPACE)
            keys = {r.object_id: r.state for r in rows}
            return (
                len([k for k in keys if k.startswith("informed-")]) == 3
                and f"delete-{HOSTILE}" not in keys  # deleted, then cleaned
                and all(
                    s
                    in (
                        delta.ResourceState.SYNCED,
                        delta.ResourceState.EXPIRED,
                        delta.ResourceState.PENDING,
                        delta.ResourceState.SCHEDULED,
                    )
                    for s in keys.values()
                )
                and controller.seen.get(f"fails-once-{HOSTILE}", 0) >= 2
            )

        await _wait(all_done)
        row = await client.get_resource(KIND, f"plain-{HOSTILE}")
        assert row is not None
        assert row.metadata == {f"key {HOSTILE}": [HOSTILE, {HOSTILE: 1}]}

        async def expired_and_reworked() -> bool:
            return controller.seen.get(f"plain-{HOSTILE}", 0) >= 2  # resource_expiry

        await _wait(expired_and_reworked)
        await _wait(lambda: _synced(client, f"in-tx-{HOSTILE}"))
        await client.invalidate(Thing(f"in-tx-{HOSTILE}", HOSTILE))
        assert await client.get_resource(KIND, f"missing-{HOSTILE}") is None
        await client.list_resources(
            kind=KIND, namespace=NAMESPACE, state=delta.ResourceState.SYNCED, limit=2, after_id=1
        )
        stats = client.stats
        assert stats.maintenance.cleaned, "the cleaner never ran"
        assert stats.maintenance.expired, "the expirer never ran"

    # The command line, on the same rows.
    for args in (
        ["status", "--kind", KIND, "--namespace", NAMESPACE],
        ["resources", "list", "--kind", KIND, "--tag", f"tag_{MARK}", "--json"],
        ["resources", "show", KIND, f"plain-{HOSTILE}"],
        ["resources", "retry", "--kind", KIND, f"plain-{HOSTILE}"],
        ["resources", "invalidate", "--kind", KIND, f"plain-{HOSTILE}", "--dry-run"],
        ["resources", "delete", "--kind", KIND, "--hard", f"fails-once-{HOSTILE}"],
    ):
        cli_main([*args, "--dsn", pg_dsn, "--schema", plain_schema])
    capsys.readouterr()

    assert len(statements) > 50, "the spy saw too little to mean anything"
    leaks = [s.text for s in statements if MARK in s.text]
    assert not leaks, f"user data in SQL text: {leaks[:3]}"
    carried = [s for s in statements if _carries_mark(s.params)]
    texts = {s.text for s in carried}
    # The marker did reach Postgres - as parameters - on each of these paths.
    for fragment in (
        "insert into",
        "pending",
        "jsonb_build_array",
        "leader",
        "controllers",
        "delete from",
    ):
        assert any(fragment in t for t in texts), f"no parameterised statement with {fragment!r}"


async def _synced(client: delta.Client, key: str) -> bool:
    row = await client.get_resource(KIND, key)
    return row is not None and row.state is delta.ResourceState.SYNCED


# -- static: how SQL is built in src/ ---------------------------------------------------

#: Non-constant arguments of ``sql.SQL`` that are package data, not user data.
SQL_FROM_PACKAGE_DATA = {
    ("_store/queries.py", "body"): "a named query or fragment from _store/sql/*.sql",
    ("_migrate.py", "migration.sql"): "a migration file from trio_delta/migrations/",
    ("_migrate.py", "fresh_schema()"): "trio_delta/migrations/schema.sql",
}
#: Arguments of ``sql.Identifier`` that are the schema after ``check_schema``.
VALIDATED_IDENTIFIERS = {
    ("_store/queries.py", "schema"): "Queries(schema): PostgresStore's, from a checked Config",
    ("_migrate.py", "schema"): "_apply: migrate_to() calls check_schema first",
    ("_store/postgres/queue.py", "self._c.channel"): "notify_channel(schema) of the checked schema",
}


def _module_constants(tree: ast.Module) -> set[str]:
    """Module-level names bound once to expressions of constants only."""
    constants: set[str] = set()
    assigned: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    assigned[t.id] = assigned.get(t.id, 0) + 1
    changed = True
    while changed:
        changed = False
        for node in tree.body:
            if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if not names or any(n in constants or assigned[n] != 1 for n in names):
                continue
            if _constant_expr(node.value, constants):
                constants.update(names)
                changed = True
    return constants


def _constant_expr(node: ast.AST, constants: set[str]) -> bool:
    """Built only from literals, module constants and ``sql.*(...)`` of those."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id not in constants and sub.id != "sql":
            return False
        if isinstance(sub, ast.Call):
            func = ast.unparse(sub.func)
            if not (func.startswith("sql.") or func.endswith(".as_string")):
                return False
    return True


def _is_sql_call(node: ast.AST, what: str) -> bool:
    return isinstance(node, ast.Call) and ast.unparse(node.func) in (
        f"sql.{what}",
        f"psycopg.sql.{what}",
    )


def _is_composed_sql_dict(node: ast.AST | None) -> bool:
    """A dict comprehension whose values are ``sql.SQL(...).format(...)``
    (whose own arguments this checker sees where they are written)."""
    if not isinstance(node, ast.DictComp):
        return False
    value = node.value
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr == "format"
        and _is_sql_call(value.func.value, "SQL")
    )


def _local_bindings(func: ast.AST) -> dict[str, ast.AST]:
    out: dict[str, ast.AST] = {}
    for node in ast.walk(func):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            out[node.targets[0].id] = node.value
    return out


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        yield rel, ast.parse(path.read_text(), filename=rel)


class _SqlBuilding(ast.NodeVisitor):
    """Checks each call that builds or runs SQL, knowing the enclosing
    functions' local bindings (``ident = sql.Identifier(schema)``)."""

    def __init__(self, rel: str, constants: set[str]) -> None:
        self.rel = rel
        self.constants = constants
        self.scopes: list[dict[str, ast.AST]] = [{}]
        self.problems: list[str] = []
        self.package_data: set[tuple[str, str]] = set()
        self.identifiers: set[tuple[str, str]] = set()

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append(_local_bindings(node))
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def _bound(self, node: ast.AST) -> ast.AST | None:
        if isinstance(node, ast.Name):
            for scope in reversed(self.scopes):
                if node.id in scope:
                    return scope[node.id]
            return None
        return node

    def visit_Call(self, node: ast.Call) -> None:
        where = f"{self.rel}:{node.lineno}"
        if _is_sql_call(node, "SQL"):
            arg = node.args[0]
            text = ast.unparse(arg)
            if (isinstance(arg, ast.Constant) and isinstance(arg.value, str)) or (
                isinstance(arg, ast.Name) and arg.id in self.constants
            ):
                pass
            elif (self.rel, text) in SQL_FROM_PACKAGE_DATA:
                self.package_data.add((self.rel, text))
            else:
                self.problems.append(f"{where}: sql.SQL({text}) is not a constant")
        elif _is_sql_call(node, "Identifier"):
            arg = node.args[0]
            text = ast.unparse(arg)
            if isinstance(arg, ast.Constant) or (
                isinstance(arg, ast.Name) and arg.id in self.constants
            ):
                pass
            elif (self.rel, text) in VALIDATED_IDENTIFIERS:
                self.identifiers.add((self.rel, text))
            else:
                self.problems.append(f"{where}: sql.Identifier({text}) is not the validated schema")
        elif (
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
            and _is_sql_call(node.func.value, "SQL")
        ):
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                bound = self._bound(arg)
                if _is_composed_sql_dict(bound):
                    continue  # **fragments: each one sql.SQL(...).format(...)
                if not (_is_sql_call(bound, "Identifier") or _is_sql_call(bound, "SQL")):
                    self.problems.append(
                        f"{where}: SQL.format({ast.unparse(arg)}) is not an Identifier or SQL"
                    )
        elif (
            isinstance(node.func, ast.Attribute)
            and node.func.attr in ("execute", "executemany")
            and node.args
        ):
            self.problems += _check_statement(where, node.args[0], self.constants)
        self.generic_visit(node)


def test_sql_is_composed_only_from_constants_and_package_data() -> None:
    problems: list[str] = []
    package_data: set[tuple[str, str]] = set()
    identifiers: set[tuple[str, str]] = set()
    for rel, tree in _sources():
        checker = _SqlBuilding(rel, _module_constants(tree))
        checker.visit(tree)
        problems += checker.problems
        package_data |= checker.package_data
        identifiers |= checker.identifiers
    assert not problems, "\n".join(problems)
    # The allow-lists hold only what is still there.
    assert package_data == set(SQL_FROM_PACKAGE_DATA)
    assert identifiers == set(VALIDATED_IDENTIFIERS)


def _check_statement(where: str, arg: ast.AST, constants: set[str]) -> list[str]:
    text = ast.unparse(arg)
    if isinstance(arg, ast.JoinedStr):
        names = [v.value for v in arg.values if isinstance(v, ast.FormattedValue)]
        if all(isinstance(n, ast.Name) and n.id in constants for n in names):
            return []
        return [f"{where}: execute(f-string of non-constants): {text[:80]}"]
    if isinstance(arg, ast.BinOp):
        if _constant_expr(arg, constants):
            return []
        return [f"{where}: execute(text built with an operator): {text[:80]}"]
    if (
        isinstance(arg, ast.Call)
        and isinstance(arg.func, ast.Attribute)
        and arg.func.attr == "format"
        and not _is_sql_call(arg.func.value, "SQL")
    ):
        return [f"{where}: execute(str.format(...)): {text[:80]}"]
    return []


PLACEHOLDER = re.compile(r"(?<!\{)\{([^{}]*)\}(?!\})")


@pytest.mark.parametrize(
    ("package", "name"),
    [
        ("trio_delta._store", "sql/queries.sql"),
        ("trio_delta._store", "sql/insights.sql"),
        *[("trio_delta.migrations", p.name) for p in sorted((SRC / "migrations").glob("*.sql"))],
    ],
)
def test_package_sql_has_only_schema_and_column_placeholders(package: str, name: str) -> None:
    text = resources.files(package).joinpath(name).read_text("utf-8")
    # {name} may also be a fragment of the package's own SQL files.
    sql_dir = resources.files("trio_delta._store").joinpath("sql")
    fragments = {
        m
        for f in ("queries.sql", "insights.sql")
        for m in re.findall(
            r"^-- fragment: (\w+)", sql_dir.joinpath(f).read_text("utf-8"), re.MULTILINE
        )
    }
    assert fragments  # the pattern still finds them
    assert set(PLACEHOLDER.findall(text)) <= {"schema", "columns"} | fragments
    # Values are named parameters (%(name)s, or %(name)b in binary), never
    # positional ones or Python-formatted text.
    stripped = re.sub(r"%\(\w+\)[sbt]", "", text.replace("%%", ""))
    assert "%" not in stripped, "a positional parameter or a bare % in package SQL"


# -- the schema name ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        "",
        "Delta",
        "1delta",
        "delta; drop table x",
        'de"lta',
        "de'lta",
        "delta.resources",
        "a" * 41,
        "d\x00",
        "d\u00e9lta",
        "{schema}",
        "$1",
        "%s",
        " delta",
        "delta ",
    ],
)
async def test_bad_schema_names_are_config_errors_before_any_connection(schema: str) -> None:
    unreachable = "host=127.0.0.1 port=1 connect_timeout=1"
    with pytest.raises(delta.ConfigError):
        delta.Config(schema=schema)
    with pytest.raises(delta.ConfigError):
        await delta.migrate(unreachable, schema=schema)
    assert cli_main(["migrate", "--dsn", unreachable, "--schema", schema]) == 2


@pytest.mark.parametrize("schema", ["select", "user", "order", "_"])
async def test_schema_names_that_are_keywords_work_quoted(own_pg: OwnServer, schema: str) -> None:
    # On the session's own server: these fixed names must not meet another run's.
    pg_dsn = own_pg.dsn
    name = f"{schema}_{uuid.uuid4().hex[:8]}" if schema == "_" else schema
    try:
        await delta.migrate(pg_dsn, schema=name)
        controllers = delta.Controllers()
        delta.add_controller(controllers, ThingController())
        config = delta.Config(schema=name, poll_interval=0.1, inform_interval=-1)
        async with delta.open_delta_client(
            pg_dsn,
            controllers,
            config=config,
            namespaces={NAMESPACE: delta.NamespaceConfig()},
        ) as client:
            await client.inform(Thing("k"))
            await _wait(lambda: _synced(client, "k"), within=10)
    finally:
        drop_schema(pg_dsn, name)
