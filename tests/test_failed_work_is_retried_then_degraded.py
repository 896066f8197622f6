"""Work that raises fails the attempt: the error is recorded, the resource is
retried after ``retry_policy(attempt)`` and degraded once out of attempts."""

from __future__ import annotations

from datetime import timedelta

import trio

import trio_delta as delta

from .models import RecordingController, User, controllers_for, wait_for_state

S = delta.ResourceState
RETRY = 0.4


def _config(schema: str, calls: list[int]) -> delta.Config:
    def retry_policy(attempt: int) -> float:
        calls.append(attempt)
        return RETRY * attempt

    return delta.Config(schema=schema, poll_interval=0.2, retry_policy=retry_policy)


async def test_failing_work_is_failed_with_backoff_then_retried_then_degraded(
    pg_dsn: str, schema: str
) -> None:
    calls: list[int] = []
    controller = RecordingController()
    controller.fail["bad@x.io"] = 99
    async with delta.open_delta_client(
        pg_dsn, controllers_for(controller), config=_config(schema, calls)
    ) as c:
        result = await c.inform(User("bad@x.io", "Bad"), delta.InformOpts(max_attempts=2))
        assert result.resource.max_attempts == 2

        failed = await wait_for_state(c, "user", "bad@x.io", S.FAILED)
        assert failed.attempt == 1
        assert failed.attempted_by == c.id
        assert len(failed.errors) == 1
        error = failed.errors[0]
        assert error.attempt == 1
        assert "RuntimeError" in error.error
        assert "boom bad@x.io" in error.error
        assert "Traceback" in error.trace
        assert "boom bad@x.io" in error.trace
        assert "in work" in error.trace  # the user's frame is in the trace
        # scheduled_at = (time of failure) + retry_policy(1)
        assert failed.attempted_at is not None
        assert failed.attempted_at <= error.at
        assert abs((failed.scheduled_at - error.at) - timedelta(seconds=RETRY)) < timedelta(
            milliseconds=20
        )

        degraded = await wait_for_state(c, "user", "bad@x.io", S.DEGRADED)
        assert degraded.attempt == 2
        assert [e.attempt for e in degraded.errors] == [1, 2]
        assert all("boom bad@x.io" in e.error for e in degraded.errors)
        # the retry did not run before it was due
        assert degraded.attempted_at is not None
        assert degraded.attempted_at >= failed.scheduled_at

        # degraded is final: not retried however long we wait
        await trio.sleep(3 * 0.2 + 2 * RETRY)
        again = await c.get_resource("user", "bad@x.io")
        assert again is not None
        assert again.state is S.DEGRADED
    assert controller.worked == [("bad@x.io", 1), ("bad@x.io", 2)]
    assert calls == [1]  # the last attempt degrades without asking for a delay


async def test_retry_policy_gets_each_attempt_number(pg_dsn: str, schema: str) -> None:
    calls: list[int] = []
    controller = RecordingController()
    controller.fail["thrice@x.io"] = 99
    config = delta.Config(
        schema=schema,
        poll_interval=0.2,
        retry_policy=lambda attempt: calls.append(attempt) or 0.05 * attempt,
    )
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        await c.inform(User("thrice@x.io", "T"), delta.InformOpts(max_attempts=3))
        row = await wait_for_state(c, "user", "thrice@x.io", S.DEGRADED)
    assert row.attempt == 3
    assert [e.attempt for e in row.errors] == [1, 2, 3]
    assert calls == [1, 2]
    assert [a for _, a in controller.worked] == [1, 2, 3]


async def test_failure_then_success_is_synced(pg_dsn: str, config: delta.Config) -> None:
    controller = RecordingController()
    controller.fail["flaky@x.io"] = 1
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        await c.inform(User("flaky@x.io", "F"), delta.InformOpts(max_attempts=2))
        row = await wait_for_state(c, "user", "flaky@x.io", S.SYNCED)
    assert row.attempt == 2
    assert controller.worked == [("flaky@x.io", 1), ("flaky@x.io", 2)]


async def test_degraded_resource_is_worked_again_when_its_object_changes(
    pg_dsn: str, config: delta.Config
) -> None:
    controller = RecordingController()
    controller.fail["d@x.io"] = 1
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        await c.inform(User("d@x.io", "D", 1), delta.InformOpts(max_attempts=1))
        degraded = await wait_for_state(c, "user", "d@x.io", S.DEGRADED)
        assert degraded.attempt == 1
        assert len(degraded.errors) == 1

        result = await c.inform(User("d@x.io", "D2", 2), delta.InformOpts(max_attempts=1))
        assert result.changed
        # Attempts start over: scheduled, or already claimed by the inform
        # itself when the client was idle (Config.claim_on_inform).
        assert (result.resource.state, result.resource.attempt) in {
            (S.SCHEDULED, 0),
            (S.PENDING, 1),
        }
        assert result.resource.errors == ()
        synced = await wait_for_state(c, "user", "d@x.io", S.SYNCED)
    assert synced.object == User("d@x.io", "D2", 2)
    assert synced.attempt == 1
    assert controller.worked == [("d@x.io", 1), ("d@x.io", 1)]
