"""Where a forwarded stream's access units come from, and how MANSRTSP steers them.

:class:`LiveSource` is a hub subscription (the camera's live stream, shared with every
other consumer); :class:`RecordingSource` reads our own segments of a range from the
object store and paces them (real time × Scale, or × the download speed), applying
pause, resume, speed and seek itself; :class:`DeviceSource` is the device's own replay
(a Playback/Download INVITE through the hub) with the superior's MANSRTSP passed on.
Each yields ``(unit, pts)`` with ``pts`` on the 90 kHz timeline of what is sent: from 0 for
live, seconds since the range's start for a replay (so holes keep their length).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, Protocol

import av

from sip.channel_ref import ChannelRef
from sip.mansrtsp import RtspCommand
from storage.models import RecordingSegment
from storage.objects import ObjectStore
from vms.logging import get_logger
from vms.media.frames import AccessUnit, Codec, Subscription
from vms.recording.hls import PlaylistEntry, plan
from vms.recording.index import rows_between

log = get_logger("vms.cascade.sources")

CLOCK_HZ = 90000
LIVE_QUEUE = 256  # units a slow superior may lag before it skips to the next keyframe
REPLAY_QUEUE = 1024
HOLE_S = 1.0  # a jump in recorded time bigger than this is a hole: sent at once, not waited
CODECS = {"h264": Codec.h264, "hevc": Codec.h265, "h265": Codec.h265}


class Source(Protocol):
    kind: str  # live / recording / device
    finite: bool  # a range: its end is told upward (MediaStatus 121)

    def units(self) -> AsyncIterator[tuple[AccessUnit, int]]: ...

    async def control(self, command: RtspCommand) -> None: ...

    def close(self) -> None: ...


async def _relative(sub: Subscription) -> AsyncIterator[tuple[AccessUnit, int]]:
    base: int | None = None
    async for item in sub:
        if isinstance(item, AccessUnit):
            if base is None:
                base = item.pts
            yield item, item.pts - base


class LiveSource:
    """The channel's live stream from the hub (a consumer like the recorder or a viewer)."""

    kind = "live"
    finite = False

    def __init__(self, hub: Any, channel: ChannelRef, name: str) -> None:
        self.sub: Subscription = hub.subscribe(channel, name, maxlen=LIVE_QUEUE)
        hub.request_keyframe(channel)  # a superior joining should not wait a whole GOP

    def units(self) -> AsyncIterator[tuple[AccessUnit, int]]:
        return _relative(self.sub)

    async def control(self, command: RtspCommand) -> None:
        return None  # nothing to steer in a live stream

    def close(self) -> None:
        self.sub.close()


class DeviceSource:
    """The device's own recording of a range, pulled through the hub, steered upstream's way."""

    kind = "device"
    finite = True

    def __init__(
        self,
        hub: Any,
        channel: ChannelRef,
        start: datetime,
        end: datetime,
        name: str,
        mode: str,
        speed: int,
    ) -> None:
        self.hub = hub
        self.key, self.sub = hub.open_playback(
            channel, start, end, name, REPLAY_QUEUE, mode=mode, download_speed=speed
        )

    async def started(self, timeout: float) -> None:
        """Return once the device answered the INVITE; raise if it refused or never did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            stream = self.hub.playback_stream(self.key)
            if stream is None or self.sub.closed:
                raise RuntimeError("the device refused or did not answer the replay")
            if stream.state == "receiving":
                return
            if loop.time() > deadline:
                raise TimeoutError("no answer from the device to the replay INVITE")
            await asyncio.sleep(0.05)

    def units(self) -> AsyncIterator[tuple[AccessUnit, int]]:
        return _relative(self.sub)

    async def control(self, command: RtspCommand) -> None:
        if command.method == "PAUSE":
            await self.hub.control_playback(self.key, pause=True)
        elif command.is_resume:
            await self.hub.control_playback(self.key, pause=False)
        else:
            await self.hub.control_playback(
                self.key, scale=command.scale, seek_s=command.range_start
            )

    def close(self) -> None:
        self.sub.close()


def segment_units(data: bytes, entry_start: datetime, channel_id: str) -> list[AccessUnit]:
    """The access units of one TS segment (or its tail from a keyframe), wall time attached."""
    out: list[AccessUnit] = []
    base_ts = entry_start.timestamp()
    with av.open(io.BytesIO(data), format="mpegts") as container:
        stream = container.streams.video[0]
        codec = CODECS.get(stream.codec_context.name, Codec.h264)
        tb = float(stream.time_base)
        base: int | None = None
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            if base is None:
                base = packet.pts
            wall = base_ts + (packet.pts - base) * tb
            out.append(
                AccessUnit(channel_id, 0, bool(packet.is_keyframe), bytes(packet), codec, wall)
            )
    return out


def recorded_entries(
    session: Any, channel: ChannelRef, start: datetime, end: datetime
) -> list[PlaylistEntry]:
    return plan(rows_between(session, channel, start, end), start, end)


def has_recording(session: Any, channel: ChannelRef, start: datetime, end: datetime) -> bool:
    return any(not r.is_gap for r in rows_between(session, channel, start, end))


def recorded_bytes(session: Any, channel: ChannelRef, start: datetime, end: datetime) -> int:
    rows: list[RecordingSegment] = rows_between(session, channel, start, end)
    return sum(r.size for r in rows if not r.is_gap)


class RecordingSource:
    """Our segments of ``[start, end]``, sent at ``speed`` × real time; holes are skipped."""

    kind = "recording"
    finite = True

    def __init__(
        self,
        db: Any,
        objects: ObjectStore,
        channel: ChannelRef,
        start: datetime,
        end: datetime,
        speed: float = 1.0,
    ) -> None:
        self.db = db
        self.objects = objects
        self.channel = channel
        self.channel_id = channel.channel_id
        self.start = start
        self.end = end
        self.speed = max(speed, 0.01)
        self.running = asyncio.Event()
        self.running.set()  # cleared while paused
        self._seek: datetime | None = None
        self._rebase = True
        self._clock = (0.0, 0.0)  # (monotonic, wall seconds) the pacing counts from
        self.position: float = start.timestamp()  # wall seconds of the last unit sent

    async def units(self) -> AsyncIterator[tuple[AccessUnit, int]]:
        cursor = self.start
        t0 = self.start.timestamp()
        while True:
            entries = await self.db.run(
                lambda s, c=cursor: recorded_entries(s, self.channel, c, self.end)
            )
            restart = False
            for entry in entries:
                data = await asyncio.to_thread(
                    self.objects.get_range,
                    entry.segment.object_key,
                    entry.byte_offset,
                    entry.byte_length,
                )
                units = await asyncio.to_thread(segment_units, data, entry.start, self.channel_id)
                for au in units:
                    if au.wallclock > self.end.timestamp():
                        return
                    await self._pace(au.wallclock)
                    if self._seek is not None:
                        cursor, self._seek = self._seek, None
                        restart = True
                        break
                    self.position = au.wallclock
                    yield au, round((au.wallclock - t0) * CLOCK_HZ)
                if restart:
                    break
            if not restart:
                return

    async def _pace(self, wall: float) -> None:
        """Wait until ``wall`` is due (holes, seeks and speed changes restart the clock)."""
        if not self.running.is_set():
            await self.running.wait()
            self._rebase = True
        mono0, wall0 = self._clock
        if self._rebase or wall < wall0 or wall - self.position > HOLE_S:
            self._clock = (time.monotonic(), wall)
            self._rebase = False
            return
        delay = mono0 + (wall - wall0) / self.speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def control(self, command: RtspCommand) -> None:
        if command.method == "PAUSE":
            self.running.clear()
            return
        if command.scale is not None:
            self.speed = max(abs(command.scale), 0.01)
            self._rebase = True
        if command.range_start is not None:
            self._seek = min(self.start + timedelta(seconds=command.range_start), self.end)
            self._rebase = True
        self.running.set()

    def close(self) -> None:
        self.running.set()
