"""Background work of the SIP parts: tracked tasks, and listeners told of events.

Handlers run on the event loop and must not await; what awaits (the store, a query, a
media setup) runs in a task of a :class:`TaskSet`, so closing cancels it and a failure is
logged.  ``len()`` is the server's load-shedding gauge.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import structlog

log = structlog.get_logger("sip.tasks")

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


class TaskSet:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "sip") -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sip task failed", task=task.get_name(), error=repr(task.exception()))

    async def cancel_all(self) -> None:
        await cancel_and_wait(list(self._tasks))


RECANCEL_S = 1.0  # a task still running this long after cancel() is cancelled again


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until every one has really ended, their exceptions swallowed.

    Python 3.11's ``asyncio.wait_for`` can lose a cancellation that arrives as its inner
    future completes (a library's request timeout, say); a task that lost it runs on, and a
    bare ``await`` of it would hang the stop for ever.  So one still running after
    ``RECANCEL_S`` is cancelled again.
    """
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    for task in pending:
        task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
        for task in pending:
            log.warning("task outlived its cancellation, cancelling again", task=task.get_name())
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def tell(listeners: Iterable[Callable[..., Awaitable[None] | None]], *args: Any) -> None:
    """Call each listener (awaiting those that are coroutines); one failing stops no other."""
    for listener in list(listeners):
        try:
            result = listener(*args)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # noqa: BLE001 - logged; the others still hear of it
            log.error("sip listener failed", listener=repr(listener), error=repr(exc))
