"""The recorder component: one hub subscription and one writer thread per recorded camera.

Cameras are :class:`ChannelRef` (device and channel): spool files and object keys are
named from those validated codes only.

The event-loop side only moves units from the hub subscription into a bounded
thread queue; muxing, spool writes, uploads and indexing happen in the
channel's thread.  When the disk falls behind and the queue fills, units are
dropped up to the next keyframe and the hole is recorded as a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sip import ids
from sip.channel_ref import ChannelRef
from storage.models import Channel, Device, DeviceStatus
from vms.logging import get_logger
from vms.media.frames import AccessUnit, AudioUnit, Gap, Subscription
from vms.services import Services

from .index import close_schedule_gap, open_schedule_gap, store_gap, store_segment
from .playback import DevicePlayback
from .recovery import recover_spool
from .retention import RetentionResult, prune
from .schedule import HORIZON, Schedule
from .segment import DONE_SUFFIX, SegmentInfo
from .writer import ChannelWriter, GapInfo

log = get_logger("vms.recording")

REFRESH_EVENTS = {"catalog.updated", "device.online", "device.offline", "channel.updated"}
OFF_STATUSES = ("OFF", "OFFLINE")
STALE_SPOOL_S = 120.0  # a closed spool file older than this was not uploaded: retry it
BOUNDARY_SLACK_S = 0.05  # wake this long after a window edge, so the edge is behind us


def utcnow() -> datetime:
    return datetime.now(UTC)


def local_zone(name: str) -> ZoneInfo:
    """The node's zone for recording schedules; an unknown name is logged and UTC is used."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.error("unknown server.timezone: recording schedules use UTC", timezone=name)
        return ZoneInfo("UTC")


class _Flush:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()

    def finish(self) -> None:
        self.loop.call_soon_threadsafe(lambda: self.done.done() or self.done.set_result(None))


_STOP = object()


class ChannelRecording:
    """A channel being recorded: its subscription, pump task, queue and writer thread."""

    def __init__(
        self,
        recorder: Recorder,
        channel: ChannelRef,
        sub: Subscription,
        source: str = "recorder",
        anchor_wall: float | None = None,
    ) -> None:
        cfg = recorder.services.settings.recording
        self.channel = channel
        self.channel_id = channel.channel_id
        self.source = source
        self.sub = sub
        self.recorder = recorder
        self.queue: queue.Queue[Any] = queue.Queue(cfg.queue_frames)  # audio units count too
        self.dropped = 0
        self.segments = 0
        self.gaps = 0
        self.errors = 0
        self._dropping = False
        self.writer = ChannelWriter(
            channel,
            recorder.spool if source == "recorder" else recorder.spool / source,
            cfg.segment_s,
            cfg.max_jump_s,
            self._on_segment,
            self._on_gap,
            anchor_wall=anchor_wall,
            audio=sub.audio,  # the subscription says whether audio comes
        )
        self.thread = threading.Thread(target=self._run, name=f"rec-{channel}", daemon=True)
        self.thread.start()
        self.task = asyncio.create_task(self._pump(), name=f"rec-pump-{channel}")

    async def _pump(self) -> None:
        try:
            async for item in self.sub:
                self.offer(item)
        except asyncio.CancelledError:
            pass

    def offer(self, item: AccessUnit | Gap | AudioUnit) -> None:
        """Queue a unit for the writer, never blocking; overflow drops to the next keyframe."""
        if self._dropping:
            room = self.queue.qsize() < self.queue.maxsize - 1
            if not isinstance(item, AccessUnit) or not item.keyframe or not room:
                self.dropped += 1
                return
            self._dropping = False
            self.queue.put_nowait(Gap(self.channel_id, "disk-slow", item.wallclock))
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self._dropping = True
            self.dropped += 1
            log.warning("recorder queue full: dropping to next keyframe", channel=str(self.channel))

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is _STOP:
                    self.writer.close()
                    return
                if isinstance(item, _Flush):
                    self.writer.close()
                    item.finish()
                    continue
                self.writer.handle(item)
            except Exception as exc:  # noqa: BLE001 - keep recording the next units
                self.errors += 1
                if self.errors & (self.errors - 1) == 0:  # 1st, 2nd, 4th, 8th...: no log flood
                    log.error(
                        "recording write failed",
                        channel=str(self.channel),
                        errors=self.errors,
                        error=repr(exc),
                    )
                with contextlib.suppress(Exception):
                    self.writer.break_run("write-error")

    def _on_segment(self, info: SegmentInfo) -> None:
        try:
            services = self.recorder.services
            row = store_segment(services.db, services.objects, info, source=self.source)
        except Exception as exc:  # noqa: BLE001 - the spool file stays for a later retry
            log.error("segment upload failed", channel=str(self.channel), error=repr(exc))
            return
        if row is not None:
            self.segments += 1
            events, loop = self.recorder.services.events, self.recorder.loop
            if loop is None or loop.is_closed():
                return
            loop.call_soon_threadsafe(
                lambda: events.publish(
                    "recording.segment",
                    device_id=self.channel.device_id,
                    channel_id=self.channel_id,
                    segment_id=row.id,
                    source=self.source,
                )
            )

    def _on_gap(self, gap: GapInfo) -> None:
        try:
            store_gap(self.recorder.services.db, gap, self.source)
            self.gaps += 1
        except Exception as exc:  # noqa: BLE001
            log.error("gap index failed", channel=str(self.channel), error=repr(exc))

    async def flush(self) -> None:
        """Close the open segment and wait until it is uploaded and indexed."""
        for _ in range(500):  # let the pump move what the hub already delivered
            if not self.sub.pending():
                break
            await asyncio.sleep(0.01)
        marker = _Flush(asyncio.get_running_loop())
        await asyncio.to_thread(self.queue.put, marker)
        await marker.done

    async def stop(self) -> None:
        self.sub.close()  # the pump drains what is queued, then ends
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 5)
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await asyncio.to_thread(self.queue.put, _STOP)
        await asyncio.to_thread(self.thread.join)

    def stats(self) -> dict[str, Any]:
        return {
            "queued": self.queue.qsize(),
            "dropped": self.dropped + self.sub.dropped,
            "skipped": self.writer.skipped,
            "audio_dropped": self.writer.audio_dropped,
            "segments": self.segments,
            "gaps": self.gaps,
            "errors": self.errors,
        }


class Recorder:
    """Records every ``record_enabled`` channel of an online, active device while enabled,
    inside the channel's weekly ``record_schedule`` windows (none → around the clock)."""

    name = "recorder"

    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings
        self.spool: Path = settings.recording.spool_dir or settings.server.data_dir / "spool"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.playback = DevicePlayback(self)
        self.channels: dict[ChannelRef, ChannelRecording] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._refresh = asyncio.Event()
        self._listening = asyncio.Event()
        self._warned_no_hub = False
        self._lock = asyncio.Lock()
        self.clock: Callable[[], datetime] = utcnow  # tests put a fake clock here
        self.tz = local_zone(settings.server.timezone)
        self.next_change: datetime | None = None  # the next window edge of any channel
        self._schedule_gaps: dict[ChannelRef, tuple[int, datetime]] = {}  # → (row, until)
        self._bad_schedules: set[ChannelRef] = set()

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.spool.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.rmtree, self.spool / "playback", True)  # temporary copies
        counts = await asyncio.to_thread(
            recover_spool, self.services.db, self.services.objects, self.spool
        )
        if counts:
            log.info("spool recovered", **counts)
        self._tasks = [
            asyncio.create_task(self._refresh_loop(), name="recorder-refresh"),
            asyncio.create_task(self._events_loop(), name="recorder-events"),
            asyncio.create_task(self._maintenance_loop(), name="recorder-maintenance"),
        ]
        await asyncio.wait_for(self._listening.wait(), 5)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.playback.stop()
        for channel in list(self.channels):
            await self.stop_channel(channel)

    # --- which channels -------------------------------------------------------------

    @staticmethod
    def eligible_channels(session: Session) -> dict[ChannelRef, Any]:
        """Cameras that would be recorded now but for their schedule → stored schedule.

        A stored code that is not a 20-digit id (rows from before ids were checked) is never
        recorded: its name would become a file name."""
        stmt = (
            select(Device.device_id, Channel.channel_id, Channel.record_schedule)
            .select_from(Channel)
            .join(Device, Channel.device_pk == Device.id)
            .where(
                Channel.record_enabled.is_(True),
                func.upper(Channel.status).not_in(OFF_STATUSES),  # catalog says camera is off
                Device.online.is_(True),
                Device.status == DeviceStatus.active,
            )
        )
        out: dict[ChannelRef, Any] = {}
        for device_id, channel_id, schedule in session.execute(stmt):
            if ids.is_gb_id(device_id) and ids.is_gb_id(channel_id):
                out[ChannelRef(device_id, channel_id)] = schedule
        return out

    def schedule(self, channel: ChannelRef, raw: Any) -> Schedule:
        """The channel's schedule; a malformed stored one is logged and records around the clock."""
        try:
            return Schedule.parse(raw, self.tz)
        except ValidationError as exc:
            if channel not in self._bad_schedules:
                self._bad_schedules.add(channel)
                log.error(
                    "bad record_schedule: recording always", channel=str(channel), error=f"{exc}"
                )
            return Schedule((), self.tz)

    async def refresh(self) -> None:
        """Start recording newly wanted channels and stop the ones no longer wanted.

        Wanted = eligible and inside a schedule window now; stopping closes the open segment
        and releases the hub subscription.  Also notes the next window edge of any channel,
        so the refresh loop wakes exactly then.
        """
        eligible = await self.services.db.run(self.eligible_channels)
        placement = self.services.placement
        if placement is not None:  # a media node of a cluster records the cameras it holds
            eligible = {c: raw for c, raw in eligible.items() if placement.holds("media", c)}
        now = self.clock()
        wanted: set[ChannelRef] = set()
        off: dict[ChannelRef, datetime] = {}  # eligible, outside its windows → next window start
        edges: list[datetime] = []
        for channel, raw in eligible.items():
            schedule = self.schedule(channel, raw)
            edge = schedule.next_change(now)
            if edge is not None:
                edges.append(edge)
            if schedule.active(now):
                wanted.add(channel)
            else:
                off[channel] = edge or now + HORIZON
        self.next_change = min(edges, default=None)
        async with self._lock:
            for channel in sorted(wanted - set(self.channels)):
                await self.start_channel(channel)
            for channel in sorted(set(self.channels) - wanted):
                await self.stop_channel(channel)
            await self._mark_schedule_gaps(off, now)

    def wake(self) -> None:
        """Refresh now (this node's cameras changed), not at the next interval."""
        self._refresh.set()

    async def _mark_schedule_gaps(self, off: dict[ChannelRef, datetime], now: datetime) -> None:
        """Index time outside the windows as gaps with reason "schedule" (not errors)."""
        db = self.services.db
        for channel, (row_id, until) in list(self._schedule_gaps.items()):
            if off.get(channel) != until:  # back in a window, schedule edited, or not wanted
                await asyncio.to_thread(close_schedule_gap, db, row_id, now)
                del self._schedule_gaps[channel]
        for channel, until in sorted(off.items()):
            if channel not in self._schedule_gaps:
                row_id = await asyncio.to_thread(open_schedule_gap, db, channel, now, until)
                self._schedule_gaps[channel] = (row_id, until)
                log.info(
                    "outside recording schedule", channel=str(channel), until=until.isoformat()
                )

    async def start_channel(self, channel: ChannelRef) -> ChannelRecording | None:
        if channel in self.channels:
            return self.channels[channel]
        hub = self.services.media
        if hub is None:
            if not self._warned_no_hub:
                log.warning("no media hub on this node: nothing can be recorded")
                self._warned_no_hub = True
            return None
        maxlen = self.services.settings.recording.queue_frames
        audio = self.services.settings.recording.audio
        sub = hub.subscribe(channel, "recorder", maxlen=maxlen, audio=audio)
        rec = ChannelRecording(self, channel, sub)
        self.channels[channel] = rec
        log.info("recording started", channel=str(channel))
        return rec

    async def stop_channel(self, channel: ChannelRef) -> None:
        rec = self.channels.pop(channel, None)
        if rec is not None:
            await rec.stop()
            log.info("recording stopped", channel=str(channel))

    async def flush(self, channel: ChannelRef | None = None) -> None:
        """Close open segments (all cameras, or one) and wait until they are indexed."""
        if channel is None:
            targets = list(self.channels.values())
        else:
            targets = [self.channels[channel]] if channel in self.channels else []
        await asyncio.gather(*(rec.flush() for rec in targets if rec is not None))

    # --- periodic work ---------------------------------------------------------------

    async def run_retention(self, now: datetime | None = None) -> RetentionResult:
        cfg = self.services.settings.recording
        now = now or datetime.now(UTC)
        quota = int(cfg.quota_gb * 1024**3)
        result = await asyncio.to_thread(
            prune, self.services.db, self.services.objects, now, cfg.retention_hours, quota
        )
        await asyncio.to_thread(
            prune,
            self.services.db,
            self.services.objects,
            now,
            cfg.playback_ttl_hours,
            0,
            "playback",
        )
        return result

    async def retry_spool(self) -> dict[str, int]:
        """Upload closed spool files whose upload failed earlier (older than a grace period)."""
        cutoff = time.time() - STALE_SPOOL_S
        busy = {
            p
            for p in (self.spool.iterdir() if self.spool.is_dir() else [])
            if p.suffix != DONE_SUFFIX or p.stat().st_mtime > cutoff
        }
        return await asyncio.to_thread(
            recover_spool, self.services.db, self.services.objects, self.spool, busy
        )

    async def _refresh_loop(self) -> None:
        interval = self.services.settings.recording.refresh_s
        while True:
            self._refresh.clear()  # before reading: an event during the read triggers another
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - try again next round
                log.error("recorder refresh failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh.wait(), self._sleep_s(interval))

    def _sleep_s(self, interval: float) -> float:
        """Until the next refresh: the interval, or just past the next window edge if sooner."""
        if self.next_change is None:
            return interval
        until = (self.next_change - self.clock()).total_seconds() + BOUNDARY_SLACK_S
        return min(interval, max(until, BOUNDARY_SLACK_S))

    async def _events_loop(self) -> None:
        async with self.services.events.subscribe() as events:
            self._listening.set()
            while True:
                event = await events.get()
                if event.kind in REFRESH_EVENTS:
                    self._refresh.set()

    async def _maintenance_loop(self) -> None:
        interval = self.services.settings.recording.retention_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run_retention()
                await self.retry_spool()
            except Exception as exc:  # noqa: BLE001
                log.error("recording maintenance failed", error=repr(exc))

    def stats(self) -> dict[ChannelRef, dict[str, Any]]:
        return {ref: rec.stats() for ref, rec in self.channels.items()}


def create_recorder(services: Services) -> Recorder | None:
    """Component factory: None when recording is switched off in the settings."""
    if not services.settings.recording.enabled:
        return None
    recorder = Recorder(services)
    services.recorder = recorder
    return recorder
