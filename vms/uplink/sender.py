"""The sender loop: drains the outbox to each receiver, in order per camera, forever.

One task per receiver.  Each round takes the due head of every ordering key (a camera for
Table 4) and posts that key's items one after another, keys in parallel up to
``uplink.concurrency``; the first failure of a key stops that key until its retry time.
A Table 4 item waits until its picture is in the object store (it may still be spooled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.models import OutboxItem
from storage.objects import ObjectNotFound, ObjectStoreError
from vms.config import UplinkReceiver
from vms.logging import get_logger
from vms.services import Services

from . import outbox
from .transport import HttpTransport, PostResult

log = get_logger("vms.uplink.sender")

PER_KEY_BATCH = 50  # items of one camera posted in one round
KEYS_PER_ROUND = 500  # cameras looked at in one round


@dataclass
class ReceiverStats:
    sent: int = 0
    failures: int = 0
    last_success_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    waiting_for_image: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failures": self.failures,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
            "waiting_for_image": self.waiting_for_image,
        }


@dataclass
class _Lane:
    receiver: UplinkReceiver
    transport: HttpTransport
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stats: ReceiverStats = field(default_factory=ReceiverStats)
    task: asyncio.Task[None] | None = None


class UplinkSender:
    """``services.uplink``: call :meth:`wake` after committing outbox rows."""

    name = "uplink-sender"

    def __init__(
        self,
        services: Services,
        transport_factory: Callable[[UplinkReceiver], HttpTransport] = HttpTransport,
    ) -> None:
        self.services = services
        self.settings = services.settings.uplink
        self._factory = transport_factory
        self._lanes: dict[str, _Lane] = {}
        self.on_delivered: list[Callable[[OutboxItem, PostResult], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def receiver_names(self) -> list[str]:
        return [r.name for r in self.settings.receivers]

    def wake(self) -> None:
        for lane in self._lanes.values():
            lane.wake.set()

    def wake_threadsafe(self) -> None:
        """:meth:`wake` from a worker thread (a sync API handler)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.wake)

    def stats(self) -> dict[str, Any]:
        return {name: lane.stats.as_dict() for name, lane in self._lanes.items()}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for receiver in self.settings.receivers:
            lane = _Lane(receiver, self._factory(receiver))
            lane.task = asyncio.create_task(self._run(lane), name=f"uplink-{receiver.name}")
            self._lanes[receiver.name] = lane

    async def stop(self) -> None:
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        await asyncio.gather(
            *(lane.task for lane in self._lanes.values() if lane.task), return_exceptions=True
        )
        for lane in self._lanes.values():
            await lane.transport.aclose()
        self._lanes.clear()

    async def _run(self, lane: _Lane) -> None:
        name = lane.receiver.name
        while True:
            lane.wake.clear()
            try:
                progressed = await self._round(lane)
                if progressed:
                    continue
                due = await self.services.db.run(lambda s: outbox.next_due(s, name))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
                log.error("uplink round failed", receiver=name, error=repr(exc))
                due = None
            delay = self.settings.poll_s
            if due is not None:
                delay = max(0.0, min(delay, (due - outbox.now_utc()).total_seconds()))
            try:
                await asyncio.wait_for(lane.wake.wait(), delay)
            except TimeoutError:
                pass

    async def _round(self, lane: _Lane) -> bool:
        """One pass over the due keys; True when something was delivered."""
        name = lane.receiver.name
        now = outbox.now_utc()
        batches = await self.services.db.run(
            lambda s: outbox.due_batches(s, name, now, KEYS_PER_ROUND, PER_KEY_BATCH)
        )
        if not batches:
            return False
        sem = asyncio.Semaphore(self.settings.concurrency)

        async def drain(items: list[OutboxItem]) -> int:
            async with sem:
                done = 0
                for item in items:
                    if not await self._deliver(lane, item):
                        break
                    done += 1
                return done

        results = await asyncio.gather(*(drain(items) for items in batches.values()))
        return sum(results) > 0

    async def _load_image(self, key: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self.services.objects.get, key)
        except (ObjectNotFound, ObjectStoreError, OSError):
            return None

    async def _deliver(self, lane: _Lane, item: OutboxItem) -> bool:
        s = self.settings
        image: bytes | None = None
        if item.image_key:
            image = await self._load_image(item.image_key)
            if image is None:
                lane.stats.waiting_for_image += 1
                await self.services.db.run(
                    lambda ses: outbox.mark_failed(
                        ses,
                        item.id,
                        f"waiting for image {item.image_key}",
                        outbox.now_utc(),
                        s.retry_base_s,
                        s.retry_max_s,
                        s.dead_after_s,
                        count_attempt=False,
                    )
                )
                return False
        result = await lane.transport.post(item.table, item.payload, image)
        at = outbox.now_utc()
        if result.ok:
            await self.services.db.run(lambda ses: outbox.mark_sent(ses, item.id, at))
            lane.stats.sent += 1
            lane.stats.last_success_at = at
            for fn in self.on_delivered:
                fn(item, result)
            return True
        lane.stats.failures += 1
        lane.stats.last_error = result.error
        lane.stats.last_error_at = at
        state = await self.services.db.run(
            lambda ses: outbox.mark_failed(
                ses, item.id, result.error, at, s.retry_base_s, s.retry_max_s, s.dead_after_s
            )
        )
        if state.value == "dead":
            log.warning("uplink dead letter", receiver=lane.receiver.name, item=item.id)
        return False
