"""Random sequences of store operations give the same results on the memory
store and on Postgres, step by step.

Each example runs in ``trio.run`` on a fresh memory store and a freshly
migrated Postgres schema (dropped afterwards), so ids line up from 1.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_delta as delta
from trio_delta._objects import PreparedObject, prepare_object
from trio_delta._store.memory import open_memory_store
from trio_delta._store.params import (
    Change,
    ClaimRequest,
    Completed,
    Outcome,
    OutcomeKind,
    RescueParams,
    ResourceFilter,
    UpsertParams,
)
from trio_delta._store.port import Store, StoreTransaction
from trio_delta._store.postgres import open_postgres_store
from trio_delta._types import AttemptError, InformOpts, InformResult, ResourceRow, ResourceState

from ..conftest import drop_schema

T0 = datetime(2030, 1, 1, tzinfo=UTC)
KEYS = ("a", "b", "c")
NAMESPACES = ("n1", "n2")
CLIENTS = ("c1", "c2")


@dataclass
class Thing:
    kind: ClassVar[str] = "thing"
    key: str
    value: int

    def id(self) -> str:
        return self.key


@dataclass
class Widget:
    kind: ClassVar[str] = "widget"
    key: str
    value: int

    def id(self) -> str:
        return self.key


TYPES: dict[str, type[Thing] | type[Widget]] = {"thing": Thing, "widget": Widget}
KINDS = tuple(TYPES)


def stale_by_value(incoming: PreparedObject, stored: bytes) -> bool:
    return bool(msgspec.json.decode(stored)["value"] > incoming.obj.value)


# -- operations -------------------------------------------------------------------


@dataclass(frozen=True)
class Upsert:
    items: list[tuple[str, str, int, str, int]]  # kind, key, value, namespace, metadata
    process_existing: bool
    stale_check: bool

    def prepared(self) -> list[PreparedObject]:
        return [
            prepare_object(
                TYPES[kind](key, value),
                InformOpts(namespace=ns, metadata={"m": meta}),
                default_max_attempts=3,
            )
            for kind, key, value, ns, meta in self.items
        ]


@dataclass(frozen=True)
class Claim:
    requests: list[tuple[str, int, dict[str, int | None]]]
    client: str


@dataclass(frozen=True)
class Complete:
    picks: list[tuple[int, OutcomeKind, int, bool]]  # claim (from latest), kind, retry, own


@dataclass(frozen=True)
class InTransaction:
    """Upserts in a transaction; meanwhile, outside it, ``while_open`` (ops that
    skip locked rows or only read: an upsert of a held row would wait)."""

    batches: list[Upsert]
    while_open: list[Claim | Complete | Maintain | ListResources | NextScheduled]
    commit: bool


@dataclass(frozen=True)
class ListResources:
    kind: str | None
    namespace: str | None
    state: ResourceState | None
    limit: int | None
    after_id: int | None


@dataclass(frozen=True)
class NextScheduled:
    namespaces: list[str]
    kinds: list[str]


@dataclass(frozen=True)
class Invalidate:
    kind: str
    key: str


@dataclass(frozen=True)
class Maintain:
    """One of rescue / expire / clean, with a cut-off ``back`` seconds before now.

    The limit is always large: under a smaller one Postgres picks among rows
    with equal timestamps (and, for clean, among all matches) in no defined
    order, which the conformance suite covers with distinct timestamps."""

    what: str
    back: int
    namespace: str
    state: ResourceState


Op = (
    Upsert
    | Claim
    | Complete
    | InTransaction
    | ListResources
    | NextScheduled
    | Invalidate
    | Maintain
)

upsert_ops = st.builds(
    Upsert,
    items=st.lists(
        st.tuples(
            st.sampled_from(KINDS),
            st.sampled_from(KEYS),
            st.integers(0, 2),
            st.sampled_from(NAMESPACES),
            st.integers(0, 1),
        ),
        max_size=4,
    ),
    process_existing=st.booleans(),
    stale_check=st.booleans(),
)
claim_ops = st.builds(
    Claim,
    requests=st.lists(
        st.tuples(
            st.sampled_from(NAMESPACES),
            st.integers(0, 3),
            st.dictionaries(st.sampled_from(KINDS), st.none() | st.integers(0, 2), max_size=2),
        ),
        min_size=1,
        max_size=2,
    ),
    client=st.sampled_from(CLIENTS),
)
maintain_ops = st.builds(
    Maintain,
    what=st.sampled_from(["rescue", "expire", "clean"]),
    back=st.integers(0, 4),
    namespace=st.sampled_from(NAMESPACES),
    state=st.sampled_from([ResourceState.DELETED, ResourceState.DEGRADED, ResourceState.SYNCED]),
)
list_ops = st.builds(
    ListResources,
    kind=st.none() | st.sampled_from(KINDS),
    namespace=st.none() | st.sampled_from(NAMESPACES),
    state=st.none() | st.sampled_from(list(ResourceState)),
    limit=st.none() | st.integers(0, 3),
    after_id=st.none() | st.integers(0, 6),
)
complete_ops = st.builds(
    Complete,
    picks=st.lists(
        st.tuples(
            st.integers(0, 4),
            st.sampled_from(list(OutcomeKind)),
            st.integers(0, 3),
            st.integers(0, 5).map(lambda n: n > 0),
        ),
        min_size=1,
        max_size=3,
    ),
)
ops: st.SearchStrategy[Op] = st.one_of(
    upsert_ops,
    claim_ops,
    claim_ops,
    complete_ops,
    st.builds(
        InTransaction,
        batches=st.lists(upsert_ops, min_size=1, max_size=2),
        # Outcomes skip the rows the transaction holds, and say which.
        while_open=st.lists(claim_ops | complete_ops | maintain_ops | list_ops, max_size=2),
        commit=st.booleans(),
    ),
    list_ops,
    st.builds(
        NextScheduled,
        namespaces=st.lists(st.sampled_from(NAMESPACES), max_size=2),
        kinds=st.lists(st.sampled_from(KINDS), max_size=2),
    ),
    st.builds(Invalidate, kind=st.sampled_from(KINDS), key=st.sampled_from(KEYS)),
    maintain_ops,
)
# Each step first moves the clock on by 0-2 seconds (ties in scheduled_at matter).
scenarios = st.lists(st.tuples(st.integers(0, 2), ops), max_size=16)


# -- running a scenario on one store ----------------------------------------------


def norm(rec: ResourceRow[Any]) -> tuple[Any, ...]:
    return (
        rec.id,
        rec.kind,
        rec.object_id,
        rec.namespace,
        rec.state,
        rec.attempt,
        rec.max_attempts,
        msgspec.json.decode(rec.encoded_object),
        rec.hash,
        dict(rec.metadata),
        tuple(rec.tags),
        tuple(rec.errors),
        rec.created_at,
        rec.updated_at,
        rec.scheduled_at,
        rec.attempted_at,
        rec.attempted_by,
        rec.synced_at,
    )


#: Outcomes that make a row due again later, at their ``retry_at``.
LATER = (OutcomeKind.FAILED, OutcomeKind.REQUEUE, OutcomeKind.SNOOZE)


def norm_upserts(results: list[InformResult[Any]]) -> list[Any]:
    return [(r.already_exists, r.changed, norm(r.resource)) for r in results]


def norm_applied(done: Completed) -> list[Any]:
    return sorted(
        [(a.id, a.state, a.attempt, a.scheduled_at, a.synced_at) for a in done.applied]
        + [(row_id, "locked") for row_id in done.locked]
    )


@dataclass
class Runner:
    """Applies operations to one store; ``claimed`` is every record it claimed."""

    store: Store
    claimed: list[ResourceRow[Any]] = field(default_factory=list[ResourceRow[Any]])

    async def upsert(self, op: Upsert, now: datetime, tx: StoreTransaction | None) -> Any:
        params = UpsertParams(now, op.process_existing, stale_by_value if op.stale_check else None)
        return norm_upserts(await self.store.queue.upsert(op.prepared(), params, tx))

    async def claim(self, op: Claim, now: datetime) -> Any:
        requests = [ClaimRequest(ns, limit, kinds) for ns, limit, kinds in op.requests]
        records = await self.store.queue.claim(requests, now=now, client_id=op.client)
        self.claimed.extend(records)
        return [norm(r) for r in records]

    async def complete(self, op: Complete, now: datetime) -> Any:
        if not self.claimed:
            return None
        outcomes: dict[int, tuple[Outcome, str]] = {}
        for back, kind, retry, own in op.picks:
            rec = self.claimed[-1 - back % len(self.claimed)]
            err = AttemptError(at=now, attempt=rec.attempt, error=f"{kind.value} {rec.attempt}")
            outcome = Outcome(
                id=rec.id,
                attempt=rec.attempt,
                hash=rec.hash,
                kind=kind,
                error=err if kind in (OutcomeKind.FAILED, OutcomeKind.DEGRADED) else None,
                retry_at=now + timedelta(seconds=retry) if kind in LATER else None,
            )
            client = rec.attempted_by if own and rec.attempted_by else "intruder"
            # One outcome per row and client: Postgres applies only one of duplicates,
            # and not predictably which.
            outcomes.setdefault(rec.id, (outcome, client))
        applied: list[Any] = []
        for client in (*CLIENTS, "intruder"):
            batch = [o for o, c in outcomes.values() if c == client]
            applied += norm_applied(
                await self.store.queue.complete(batch, now=now, client_id=client)
            )
        return applied

    async def run(self, op: Op, now: datetime) -> Any:
        match op:
            case Upsert():
                return await self.upsert(op, now, None)
            case Claim():
                return await self.claim(op, now)
            case Complete():
                return await self.complete(op, now)
            case InTransaction():
                return await self.in_transaction(op, now)
            case ListResources():
                records = await self.store.insights.list_resources(
                    ResourceFilter(
                        kind=op.kind,
                        namespace=op.namespace,
                        states=None if op.state is None else (op.state,),
                        limit=op.limit,
                        after_id=op.after_id,
                    )
                )
                return [norm(r) for r in records]
            case NextScheduled():
                return await self.store.queue.next_scheduled_at(op.namespaces, op.kinds)
            case Invalidate():
                rows = await self.store.insights.change(
                    Change.INVALIDATE, ResourceFilter(kind=op.kind, object_ids=(op.key,)), now=now
                )
                return norm(rows[0]) if rows else None
            case Maintain():
                return await self.maintain(op, now)

    async def maintain(self, op: Maintain, now: datetime) -> int:
        cut_off = now - timedelta(seconds=op.back)
        if op.what == "rescue":
            return await self.store.control.rescue(RescueParams(now, cut_off, 1000, "stuck"))
        if op.what == "expire":
            return await self.store.control.expire(
                op.namespace, now=now, synced_before=cut_off, limit=1000
            )
        return await self.store.control.clean(
            op.namespace, op.state, updated_before=cut_off, limit=1000
        )

    async def in_transaction(self, op: InTransaction, now: datetime) -> Any:
        out: list[Any] = []

        class Rollback(Exception):
            pass

        try:
            async with self.store.queue.transaction() as tx:
                for batch in op.batches:
                    out.append(await self.upsert(batch, now, tx))
                for other in op.while_open:
                    out.append(await self.run(other, now))
                if not op.commit:
                    raise Rollback
        except Rollback:
            out.append("rolled back")
        return out

    async def everything(self) -> Any:
        rows = [norm(r) for r in await self.store.insights.list_resources(ResourceFilter())]
        return rows, await self.store.queue.next_scheduled_at(NAMESPACES, KINDS)


async def run_both(dsn: str, schema: str, scenario: list[tuple[int, Op]]) -> None:
    await delta.migrate(dsn, schema=schema)
    with trio.fail_after(60):  # a store that hangs fails the test instead
        await compare(dsn, schema, scenario)


async def compare(dsn: str, schema: str, scenario: list[tuple[int, Op]]) -> None:
    async with (
        open_memory_store() as memory,
        open_postgres_store(dsn, schema=schema, pool_size=2) as pg,
    ):
        mem, ref = Runner(memory), Runner(pg)
        now = T0
        for step, (advance, op) in enumerate(scenario):
            now += timedelta(seconds=advance)
            expected = await ref.run(op, now)
            got = await mem.run(op, now)
            assert got == expected, f"step {step} at +{(now - T0).seconds}s: {op}"
        assert await mem.everything() == await ref.everything(), "final state differs"


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenario=scenarios)
def test_memory_store_agrees_with_postgres(pg_dsn: str, scenario: list[tuple[int, Op]]) -> None:
    schema = f"t_agree_{uuid.uuid4().hex[:12]}"
    try:
        trio.run(run_both, pg_dsn, schema, scenario)
    finally:
        drop_schema(pg_dsn, schema)


@dataclass(frozen=True)
class Profile:
    """A long run: ``change`` is the chance an upserted object changes."""

    seed: int
    change: float
    kinds: list[OutcomeKind]
    rounds: int = 60
    process_existing: float = 0.1
    keys: int = len(KEYS)
    maintenance: bool = True
    stray: float = 0.1  # chance an outcome names a claim other than the latest ones


PROFILES = [
    Profile(0, 0.5, list(OutcomeKind)),
    Profile(1, 0.3, list(OutcomeKind)),
    # Failures of objects that never change: errors pile up past the cap.
    Profile(
        2,
        0.0,
        [OutcomeKind.FAILED] * 8 + [OutcomeKind.HANDBACK],
        rounds=80,
        process_existing=0.0,
        keys=1,
        maintenance=False,
        stray=0.0,
    ),
    Profile(
        3, 0.2, [OutcomeKind.FAILED, OutcomeKind.SYNCED, OutcomeKind.DELETED, OutcomeKind.DEGRADED]
    ),
]


def long_scenario(profile: Profile) -> list[tuple[int, Op]]:
    rng = random.Random(profile.seed)
    change, kinds = profile.change, profile.kinds
    values = {(kind, key): 0 for kind in KINDS for key in KEYS}

    def upsert() -> Upsert:
        items: list[tuple[str, str, int, str, int]] = []
        keys = KEYS[: profile.keys]
        for key in rng.sample(keys, rng.randint(1, len(keys))):
            kind = rng.choice(KINDS)
            if rng.random() < change:
                values[kind, key] = rng.randint(0, 3)
            items.append(
                (kind, key, values[kind, key], rng.choice(NAMESPACES[:1] * 3 + NAMESPACES), 0)
            )
        return Upsert(
            items,
            process_existing=rng.random() < profile.process_existing,
            stale_check=rng.random() < 0.5,
        )

    def claim() -> Claim:
        return Claim(
            [
                (ns, rng.randint(1, 3), {k: rng.choice([None, 1, 2]) for k in KINDS})
                for ns in NAMESPACES
            ],
            rng.choice(CLIENTS),
        )

    scenario: list[tuple[int, Op]] = []
    for _ in range(profile.rounds):
        scenario.append((rng.randint(0, 2), upsert()))
        if rng.random() < 0.3:  # a transaction holding rows while others claim and maintain
            maintain = Maintain(
                rng.choice(["rescue", "expire"]), 0, rng.choice(NAMESPACES), ResourceState.SYNCED
            )
            scenario.append(
                (
                    rng.randint(0, 2),
                    InTransaction(
                        [upsert()],
                        [claim(), maintain] if profile.maintenance else [claim()],
                        rng.random() < 0.7,
                    ),
                )
            )
        scenario.append((rng.randint(0, 2), claim()))
        scenario.append(
            (
                rng.randint(0, 1),
                Complete(
                    [
                        (
                            rng.randint(0, 3)
                            if rng.random() < profile.stray
                            else rng.randint(0, 1),
                            rng.choice(kinds),
                            rng.randint(0, 2),
                            rng.random() >= profile.stray,
                        )
                        for _ in range(3)
                    ]
                ),
            )
        )
        if rng.random() < 0.15:
            scenario.append((0, Invalidate(rng.choice(KINDS), rng.choice(KEYS))))
        if profile.maintenance and rng.random() < 0.15:
            scenario.append(
                (
                    0,
                    Maintain(
                        rng.choice(["rescue", "expire", "clean"]),
                        rng.randint(0, 6),
                        rng.choice(NAMESPACES),
                        rng.choice([ResourceState.DELETED, ResourceState.DEGRADED]),
                    ),
                )
            )
    return scenario


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: f"seed{p.seed}")
def test_memory_store_agrees_with_postgres_on_a_long_busy_run(
    pg_dsn: str, profile: Profile
) -> None:
    """Longer fixed scenarios, so that deep states (error caps, retries of
    retries, transactions over claimed rows) are reached too."""
    schema = f"t_agree_{uuid.uuid4().hex[:12]}"
    try:
        trio.run(run_both, pg_dsn, schema, long_scenario(profile))
    finally:
        drop_schema(pg_dsn, schema)
