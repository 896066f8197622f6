"""How to test a controller deterministically: the memory store and Trio's
autojump clock. Run: python -m pytest examples/test_user_controller.py

Nothing here touches a database or sleeps for real: a day of retries passes
in milliseconds, and every time asserted is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import trio
import trio.testing

import trio_delta as delta
from trio_delta.testing import open_test_client


@dataclass
class User:
    kind: ClassVar[str] = "user"
    email: str
    name: str

    def id(self) -> str:
        return self.email


class Mailer:
    """The outside world our controller acts on (a fake one, in tests)."""

    def __init__(self, *, down_for: int = 0) -> None:
        self.down_for = down_for
        self.sent: list[tuple[str, float]] = []

    async def welcome(self, email: str) -> None:
        await trio.lowlevel.checkpoint()
        if self.down_for:
            self.down_for -= 1
            raise ConnectionError("mail server unavailable")
        self.sent.append((email, trio.current_time()))


class WelcomeController(delta.Controller[User]):
    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    async def work(self, resource: delta.Resource[User]) -> None:
        await self.mailer.welcome(resource.object.email)


def controllers_with(mailer: Mailer) -> delta.Controllers:
    controllers = delta.Controllers()
    delta.add_controller(controllers, WelcomeController(mailer))
    return controllers


async def test_new_user_is_welcomed(autojump_clock: trio.testing.MockClock) -> None:
    mailer = Mailer()
    async with open_test_client(controllers_with(mailer)) as t:
        await t.client.inform(User("bob@hello.com", "Bob"))
        await t.run_until_idle()
        assert await t.state_of("user", "bob@hello.com") is delta.ResourceState.SYNCED
    assert [email for email, _ in mailer.sent] == ["bob@hello.com"]


async def test_outage_is_retried_with_backoff(autojump_clock: trio.testing.MockClock) -> None:
    mailer = Mailer(down_for=2)
    async with open_test_client(controllers_with(mailer)) as t:
        start = trio.current_time()
        await t.client.inform(User("bob@hello.com", "Bob"))
        await t.run_until_idle()
        assert await t.state_of("user", "bob@hello.com") is delta.ResourceState.FAILED
        await t.advance(60)  # the default policy retries after 1 s, then 16 s
        row = await t.client.get_resource("user", "bob@hello.com")
    assert row is not None
    assert row.state is delta.ResourceState.SYNCED
    assert [e.error for e in row.errors] == ["ConnectionError: mail server unavailable"] * 2
    assert mailer.sent == [("bob@hello.com", start + 1 + 16)]
    categories = [e.category for e in t.events]
    assert categories == [delta.EventCategory.OBJECT_FAILED] * 2 + [
        delta.EventCategory.OBJECT_SYNCED
    ]
