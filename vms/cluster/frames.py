"""Keyframes from the media nodes to the analyzer hosts, over core NATS.

A media node publishes the keyframes of the cameras it holds whose analysis is on, one
subject per camera (``vms.frames.<device>.<channel>``); an analyzer host subscribes to the
subjects of the cameras it holds and decodes them itself.  Only keyframes travel: they decode
alone (parameter sets included), a camera's stream is ~1 keyframe per 1–2 s, and a lost one is
replaced by the next.  When a camera moves to another media node its subject stays the same,
so the analyzer does not notice beyond a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from rtp.units import AccessUnit, Codec
from sip.channel_ref import ChannelRef
from vms.cluster.bus import Bus, frame_subject
from vms.logging import get_logger
from vms.media.frames import Subscription
from vms.tasks import cancel_task

log = get_logger("vms.cluster.frames")


def frame_headers(au: AccessUnit) -> dict[str, str]:
    return {
        "pts": str(au.pts),
        "codec": au.codec.value,
        "wallclock": repr(au.wallclock),
        "channel": au.channel_id,
    }


def frame_from_msg(headers: dict[str, str] | None, data: bytes) -> AccessUnit | None:
    """The keyframe a message carries; None for a message that is not one of ours."""
    h = headers or {}
    try:
        return AccessUnit(
            h["channel"],
            int(h["pts"]),
            True,
            data,
            Codec(h.get("codec", "h264")),
            float(h.get("wallclock", "0")),
        )
    except (KeyError, ValueError):
        return None


class FramePublisher:
    """On a media node: the keyframes of the given cameras go onto the bus."""

    def __init__(self, bus: Bus, media: Any) -> None:
        self.bus = bus
        self.media = media
        self.tasks: dict[ChannelRef, asyncio.Task[None]] = {}
        self.published = 0

    def sync(self, channels: set[ChannelRef]) -> None:
        """Publish exactly these cameras from now on."""
        for channel in set(self.tasks) - channels:
            task = self.tasks.pop(channel)
            task.cancel()
        for channel in channels - set(self.tasks):
            self.tasks[channel] = asyncio.create_task(
                self._pump(channel), name=f"bus-frames-{channel}"
            )

    async def _pump(self, channel: ChannelRef) -> None:
        subject = frame_subject(channel.device_id, channel.channel_id)
        sub = self.media.subscribe(channel, "bus-frames", maxlen=4)
        try:
            async for item in sub:
                if isinstance(item, AccessUnit) and item.keyframe:
                    try:
                        await self.bus.publish(subject, item.data, frame_headers(item))
                        self.published += 1
                    except Exception as exc:  # noqa: BLE001 - the bus is away: skip this one
                        log.debug("keyframe not published", channel=str(channel), error=repr(exc))
        finally:
            sub.close()

    async def stop(self) -> None:
        for task in list(self.tasks.values()):
            await cancel_task(task)
        self.tasks.clear()


class BusSubscription(Subscription):
    """One camera's keyframes from the bus, bounded and gap-marked like a hub subscription."""

    def __init__(self, bus: Bus, channel: ChannelRef, name: str, maxlen: int) -> None:
        super().__init__(channel.channel_id, name, maxlen)
        self.channel = channel
        self.bus = bus
        self._nats: Any = None
        self._opening = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        async def on_msg(msg: Any) -> None:
            au = frame_from_msg(msg.headers, msg.data)
            if au is not None:
                self.offer(au)

        subject = frame_subject(self.channel.device_id, self.channel.channel_id)
        self._nats = await self.bus.client.subscribe(subject, cb=on_msg)

    def close(self) -> None:
        super().close()
        self._opening.cancel()
        if self._nats is not None:
            task = asyncio.get_running_loop().create_task(self._unsubscribe(self._nats))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
            self._nats = None

    @staticmethod
    async def _unsubscribe(nats_sub: Any) -> None:
        with contextlib.suppress(Exception):
            await nats_sub.unsubscribe()


class BusFrames:
    """An analyzer host's :class:`analyzers.frame_source.FrameSource`: the bus."""

    def __init__(self, bus: Bus, maxlen: int) -> None:
        self.bus = bus
        self.maxlen = maxlen

    def subscribe(self, channel: ChannelRef, name: str) -> BusSubscription:
        return BusSubscription(self.bus, channel, name, self.maxlen)
