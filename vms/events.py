"""In-process event bus: device online/offline, alarms, stream changes.

Subscribers get a bounded queue each; a subscriber that falls behind loses
its oldest events rather than slowing the publisher (the SIP or media loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Event:
    kind: str  # device.online, device.offline, device.alarm, alarm.raised, alarm.cleared, ...
    data: dict[str, Any]
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at.isoformat(), "data": self.data}


class EventBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._queue_size = queue_size
        self.dropped = 0

    def publish(self, kind: str, **data: Any) -> Event:
        event = Event(kind, data)
        for q in list(self._subscribers):
            if q.full():
                q.get_nowait()
                self.dropped += 1
            q.put_nowait(event)
        return event

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        q: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        self._subscribers.add(q)
        try:
            yield q
        finally:
            self._subscribers.discard(q)
