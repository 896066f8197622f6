"""A work that raises a BaseException (KeyboardInterrupt, SystemExit, one of
the user's own) ends the client the way it would end any program, but only
after its attempt is recorded as failed and every other claimed row is
handed back. A ``trio.Cancelled`` that nothing in the engine asked for (one
re-raised outside the user's own cancel scope) fails only its attempt.

On the memory store under the autojump clock; the Postgres versions are in
``tests/test_base_exceptions_from_work_hand_in_flight_rows_back.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta._store.params import ResourceFilter
from trio_delta.testing import DEFAULT_ANCHOR, MemoryStore, open_test_client

S = delta.ResourceState


class CustomBase(BaseException):
    pass


RAISES: dict[str, BaseException] = {
    "KeyboardInterrupt": KeyboardInterrupt(),
    "SystemExit": SystemExit(3),
    "CustomBase": CustomBase("custom"),
}


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class Poisoned(delta.Controller[Job]):
    """``poison`` raises ``error`` after 0.5 s; the others take 3 s."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error
        self.done: list[str] = []
        self.leak_cancelled = False

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Job]) -> None:
        await send.aclose()

    async def work(self, resource: delta.Resource[Job]) -> None:
        if resource.object_id == "poison":
            await trio.sleep(0.5)
            if self.leak_cancelled:
                leaked: trio.Cancelled | None = None
                with trio.CancelScope() as own:
                    own.cancel()
                    try:
                        await trio.sleep(1)
                    except trio.Cancelled as exc:
                        leaked = exc
                assert leaked is not None
                raise leaked  # outside the scope it belonged to
            assert self.error is not None
            raise self.error
        await trio.sleep(3)
        self.done.append(resource.object_id)


def _setup(error: BaseException | None) -> tuple[Poisoned, delta.Controllers, delta.Config]:
    ctl = Poisoned(error)
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    config = delta.Config(
        random=random.Random(1),
        client_id="c1",
        inform_interval=-1,
        shutdown_grace=10,
        retry_policy=lambda attempt: 60.0,
    )
    return ctl, controllers, config


@pytest.mark.parametrize("name", list(RAISES))
async def test_base_exception_fails_its_attempt_hands_back_the_rest_and_propagates(
    autojump_clock: trio.testing.MockClock,
    name: str,
) -> None:
    error = RAISES[name]
    ctl, controllers, config = _setup(error)
    store = MemoryStore(anchor=DEFAULT_ANCHOR)
    t0 = trio.current_time()
    with pytest.raises(BaseException) as info:  # noqa: PT012 - the body is the scenario
        async with open_test_client(controllers, config=config, store=store) as t:
            for i in range(5):
                await t.client.inform(Job(f"ok{i}"))
            await t.client.inform(Job("poison"))
            await trio.sleep(60)
    raised_after = trio.current_time() - t0

    # As itself, not wrapped: Trio's convention for KeyboardInterrupt and
    # SystemExit, and a BaseException is not the client's failure to wrap.
    assert info.value is error
    # At once: neither the 10 s grace nor the innocent works' 3 s.
    assert raised_after == pytest.approx(0.5)
    assert ctl.done == []
    rows = {r.object_id: r for r in await store.insights.list_resources(ResourceFilter())}
    poison = rows.pop("poison")
    assert poison.state is S.FAILED
    assert poison.attempt == 1
    (attempt_error,) = poison.errors
    assert attempt_error.error.startswith(f"{name}: ")
    assert "Traceback" in attempt_error.trace
    # Handed back, not left pending for the rescuer.
    assert {(k, r.state, r.attempt, r.errors) for k, r in rows.items()} == {
        (f"ok{i}", S.SCHEDULED, 0, ()) for i in range(5)
    }


async def test_stray_cancelled_fails_its_attempt_and_the_pool_keeps_working(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl, controllers, config = _setup(None)
    ctl.leak_cancelled = True
    async with open_test_client(controllers, config=config) as t:
        await t.client.inform(Job("poison"))
        await t.run_until_idle()
        for i in range(3):
            await t.client.inform(Job(f"after{i}"))
        await t.run_until_idle()
        poison = await t.client.get_resource("job", "poison")
        after = await t.resources(state=S.SYNCED)

    assert sorted(r.object_id for r in after) == ["after0", "after1", "after2"]
    assert sorted(ctl.done) == ["after0", "after1", "after2"]
    assert poison is not None
    assert poison.state is S.FAILED
    (attempt_error,) = poison.errors
    assert "Cancelled" in attempt_error.error
