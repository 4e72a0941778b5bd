"""The suite's guard against leftover asyncio tasks and timers (tests/conftest.py)."""

from __future__ import annotations

import asyncio

from tests.helpers.lingering import TrackingLoop, lingering


async def test_the_suite_runs_on_tracking_loops() -> None:
    assert isinstance(asyncio.get_running_loop(), TrackingLoop)


async def test_a_running_task_and_a_pending_timer_are_found() -> None:
    before = asyncio.all_tasks()
    task = asyncio.create_task(asyncio.sleep(3600), name="forgotten")
    timer = asyncio.get_running_loop().call_later(3600, lambda: None)
    tasks, timers = await lingering(before, turns=3)
    assert tasks == [task]
    assert timer in timers
    task.cancel()
    timer.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await lingering(before) == ([], [])


async def test_a_task_that_is_only_finishing_gets_its_turns() -> None:
    before = asyncio.all_tasks()

    async def slow_cleanup() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            for _ in range(3):
                await asyncio.sleep(0)

    task = asyncio.create_task(slow_cleanup())
    await asyncio.sleep(0)
    task.cancel()
    assert await lingering(before) == ([], [])
    assert task.cancelled()
