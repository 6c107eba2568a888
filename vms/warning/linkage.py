"""Camera linkage: a warning that opens or escalates brings up the point's cameras.

For each linked camera: a recording bookmark at the transition (written with the warning,
``vms.warning.store``), a snapshot of the live stream stored at
``warnings/yyyy/mm/dd/{warning_id}-{device}_{channel}.jpg`` (escalations add ``-{level}``) and a
``warning.updated`` event with its URL, so the UI wall can open the camera and show the
moment.  Snapshots start as soon as the engine decides, in parallel with the database write;
the result goes back through the engine's ordered op queue, so it lands after its bookmark.
A camera that cannot be reached is a note in the warning's history, not an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sip.channel_ref import ChannelRef
from storage.objects import ObjectStore, ObjectStoreError
from vms.logging import get_logger
from vms.tasks import cancel_task

from .snapshot import SnapshotError, grab_keyframe, keyframe_jpeg
from .store import Op

log = get_logger("vms.warning.linkage")


def snapshot_key(at: datetime, warning_id: str, channel: ChannelRef, suffix: str = "") -> str:
    tail = f"-{suffix}" if suffix else ""
    return f"warnings/{at:%Y/%m/%d}/{warning_id}-{channel.slug}{tail}.jpg"


class Linkage:
    def __init__(
        self, media: Callable[[], Any], objects: ObjectStore, timeout_s: float = 5.0
    ) -> None:
        self.media = media  # returns the stream hub (services.media) or None
        self.objects = objects
        self.timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self.latencies: list[float] = []  # seconds from decision to stored picture (recent)

    def start(
        self,
        warning_id: str,
        at: datetime,
        channels: list[ChannelRef],
        suffix: str,
        report: Callable[[Op], None],
    ) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): nothing to link
            return
        for channel in channels:
            task = loop.create_task(
                self._one(warning_id, at, channel, suffix, report), name=f"warning-snap-{channel}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _one(
        self,
        warning_id: str,
        at: datetime,
        channel: ChannelRef,
        suffix: str,
        report: Callable[[Op], None],
    ) -> None:
        started = time.monotonic()
        key = snapshot_key(at, warning_id, channel, suffix)
        camera = {"device_id": channel.device_id, "channel_id": channel.channel_id}
        try:
            unit = await grab_keyframe(self.media(), channel, self.timeout_s)
            jpeg = await asyncio.to_thread(keyframe_jpeg, unit)
            await asyncio.to_thread(self.objects.put, key, jpeg, "image/jpeg")
        except (SnapshotError, ObjectStoreError) as exc:
            log.info("warning camera without picture", channel=str(channel), error=str(exc))
            error = f"camera {channel.channel_id}: no snapshot ({exc})"
            report(Op("camera", warning_id, at, detail={**camera, "error": error}))
            return
        latency = time.monotonic() - started
        self.latencies = [*self.latencies[-99:], latency]
        detail = {**camera, "snapshot_key": key, "latency_s": round(latency, 3)}
        report(Op("snapshot", warning_id, at, detail=detail))

    async def stop(self) -> None:
        for task in list(self._tasks):
            await cancel_task(task)
