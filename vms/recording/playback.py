"""Replay from the NVR's own storage when we did not record (GB28181 RecordInfo + Playback).

A job asks the hub for a playback stream of the range (Playback INVITE through
the SIP server), records it like a live channel into temporary segments
(``source="playback"``, kept ``playback_ttl_hours``) and the same HLS/export
endpoints serve them.  Wall-clock time comes from the requested start plus the
stream's PTS, not from when the units arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from sip.channel_ref import ChannelRef
from sip.media_api import PlayMode
from storage.models import RecordingSegment
from vms.logging import get_logger

if TYPE_CHECKING:
    from .recorder import Recorder

log = get_logger("vms.recording.playback")

SOURCE = "playback"
MAX_JOBS = 32  # finished jobs kept for status queries


class PlaybackUnavailable(Exception):
    """No SIP server or media hub able to replay from the device."""


@dataclass
class PlaybackJob:
    id: str
    channel: ChannelRef
    start: datetime
    end: datetime
    state: str = "starting"  # starting, running, done, failed
    speed: int = 1  # > 1: fetched with a Download INVITE at this a=downloadspeed
    error: str = ""
    segments: int = 0
    created: float = field(default_factory=time.time)
    task: asyncio.Task[None] | None = None

    @property
    def channel_id(self) -> str:
        return self.channel.channel_id

    @property
    def device_id(self) -> str:
        return self.channel.device_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device_id": self.device_id,
            "channel_id": self.channel_id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "state": self.state,
            "error": self.error,
            "segments": self.segments,
            "speed": self.speed,
        }


async def device_ranges(
    services: Any, channel: ChannelRef, start: datetime, end: datetime
) -> tuple[list[tuple[datetime, datetime]], bool]:
    """The ranges the NVR holds for a camera (MANSCDP RecordInfo), merged; and completeness."""
    sip = services.sip
    if sip is None or not hasattr(sip, "record_info"):
        raise PlaybackUnavailable("no SIP server on this node")
    result = await sip.record_info(channel.device_id, channel.channel_id, start, end)
    return list(result.ranges), bool(result.complete)


class DevicePlayback:
    """The playback jobs of one node, owned by the recorder."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.jobs: dict[str, PlaybackJob] = {}

    def start(
        self, channel: ChannelRef, start: datetime, end: datetime, speed: int = 1
    ) -> PlaybackJob:
        """Copy ``[start, end]`` from the NVR: in real time (Playback), or at ``speed`` × with a
        Download INVITE; wall-clock times come from the PTS either way."""
        hub = self.recorder.services.media
        if hub is None or not hasattr(hub, "open_playback") or self.recorder.services.sip is None:
            raise PlaybackUnavailable("no media hub or SIP server for device playback")
        job = PlaybackJob(uuid.uuid4().hex, channel, start, end, speed=max(1, speed))
        job.task = asyncio.create_task(self._run(job), name=f"playback-{job.id[:8]}")
        self.jobs[job.id] = job
        for old in sorted(self.jobs.values(), key=lambda j: j.created)[:-MAX_JOBS]:
            if old.state in ("done", "failed"):
                del self.jobs[old.id]
        return job

    async def _run(self, job: PlaybackJob) -> None:
        from .recorder import ChannelRecording

        services = self.recorder.services
        rec: ChannelRecording | None = None
        try:
            await asyncio.to_thread(self._drop_old_copies, job)
            _, sub = services.media.open_playback(
                job.channel,
                job.start,
                job.end,
                name="recorder-playback",
                mode=PlayMode.download if job.speed > 1 else PlayMode.playback,
                download_speed=job.speed,
                audio=services.settings.recording.audio,  # the copy keeps the camera's audio
            )
            job.state = "running"
            rec = ChannelRecording(
                self.recorder, job.channel, sub, SOURCE, anchor_wall=job.start.timestamp()
            )
            span = (job.end - job.start).total_seconds() / job.speed
            limit = span + services.settings.media.stream_timeout_s
            await asyncio.wait_for(asyncio.shield(rec.task), limit + 30)
            await rec.flush()
            job.segments = rec.segments
            job.state = "done" if rec.segments else "failed"
            if not rec.segments:
                job.error = "the device sent no playable video for this range"
        except asyncio.CancelledError:
            job.state, job.error = "failed", "cancelled"
            raise
        except Exception as exc:  # noqa: BLE001 - reported through the job
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
            log.warning("device playback failed", channel=str(job.channel), error=job.error)
        finally:
            if rec is not None:
                job.segments = rec.segments
                with contextlib.suppress(Exception):
                    await rec.stop()

    def _drop_old_copies(self, job: PlaybackJob) -> None:
        """An earlier copy of an overlapping range would be played twice: remove it first."""
        services = self.recorder.services
        where = (
            RecordingSegment.source == SOURCE,
            RecordingSegment.device_id == job.device_id,
            RecordingSegment.channel_id == job.channel_id,
            RecordingSegment.start < job.end,
            RecordingSegment.end > job.start,
        )
        with services.db.session() as s:
            keys = [k for k in s.scalars(select(RecordingSegment.object_key).where(*where)) if k]
            s.execute(delete(RecordingSegment).where(*where))
        for key in keys:
            with contextlib.suppress(Exception):
                services.objects.delete(key)

    async def stop(self) -> None:
        tasks = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
