"""Background tasks of components: one way to stop them."""

from __future__ import annotations

import asyncio
from typing import Any

from sip.tasks import cancel_and_wait


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a component's background task and wait until it has really ended.

    Its exceptions (the cancellation included) are swallowed: a stopping component
    must go on stopping the rest.
    """
    if task is None:
        return
    await cancel_and_wait([task])
