"""Stopping background tasks: a task that loses its cancellation does not hang the stop."""

from __future__ import annotations

import asyncio

from vms.tasks import cancel_task


async def test_a_task_that_swallows_its_first_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as asyncio.wait_for in Python 3.11 may do

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0.05)
    await asyncio.wait_for(cancel_task(task), 10)
    assert task.cancelled() and swallowed == 1


async def test_done_and_missing_tasks_are_fine() -> None:
    async def quick() -> int:
        return 1

    task = asyncio.create_task(quick())
    await task
    await cancel_task(task)
    await cancel_task(None)
