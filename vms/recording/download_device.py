"""A download from the NVR's own storage: Download INVITEs until the range is on disk.

Each INVITE (``s=Download``, ``a=downloadspeed:N``, through the hub) fills one TS part.
The device ends the file with MediaStatus 121 (or its BYE): the range is complete, or the
device had no more.  A stream that stops without that — no RTP for
``media.stream_timeout_s`` (a stalled device), a cut connection, a refused or unanswered
INVITE — is asked again from the whole second its parts reached, after
``recording.download_retry_s`` (doubled each time), up to ``recording.download_retries``
times; then the job fails saying where it stopped and why.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sip.media_api import PlayMode
from vms.config import RecordingSettings
from vms.logging import get_logger
from vms.media.frames import Gap

from .download_parts import PartSpan, PartWriter, scan_part
from .download_rows import JobRows, JobSpec, stamp, whole_second

log = get_logger("vms.recording.download_device")

END_TOLERANCE_S = 0.5  # what a part may lack at the end: its last frames
PROGRESS_EVERY_S = 1.0  # progress written to the row at most this often
QUEUE_UNITS = 4096  # units buffered between the hub and the part writer


class DownloadFailed(Exception):
    """The job cannot finish; the message is what the user is told."""


@dataclass
class Received:
    """How one INVITE's stream went."""

    frames: int = 0
    bytes: int = 0
    span_s: float = 0.0  # media seconds from its first frame to its last
    gaps: int = 0  # holes inside it (packet loss, a consumer too slow)
    ended_by_device: bool = False
    reason: str = ""


class DeviceDownload:
    """Runs one job's INVITEs; returns the parts that make its MP4."""

    def __init__(
        self, job: JobSpec, hub: Any, rows: JobRows, settings: RecordingSettings, folder: Path
    ) -> None:
        self.job = job
        self.hub = hub
        self.rows = rows
        self.settings = settings
        self.folder = folder
        self.received = job.bytes_received
        self.gaps = job.gaps

    async def run(self) -> list[PartSpan]:
        job, settings = self.job, self.settings
        parts, resume = await self._resume_point()
        retries, delay = settings.download_retries, settings.download_retry_s
        while resume is not None:
            part = {"file": f"part-{len(parts) + 1}.ts", "from": stamp(resume), "until": None}
            parts.append(part)
            await self.rows.save_parts(job.id, parts, attempt=True)
            got = await self._receive(part, resume, parts)
            reached = resume + timedelta(seconds=got.span_s) if got.frames else resume
            if not got.frames:
                parts.pop()
                (self.folder / part["file"]).unlink(missing_ok=True)
            missing = (job.end - reached).total_seconds()
            if got.ended_by_device:
                if missing > END_TOLERANCE_S:
                    await self.rows.note(job.id, f"the device ended the file at {stamp(reached)}")
                break
            if missing <= END_TOLERANCE_S and got.frames:
                break  # it stopped on the last frame: nothing to ask again for
            reason = got.reason or "the stream ended"
            if retries <= 0:
                raise DownloadFailed(
                    f"device stalled: {reason} (reached {stamp(reached)}; "
                    f"gave up after {settings.download_retries} resumes)"
                )
            retries -= 1
            await self.rows.note(job.id, f"{reason} at {stamp(reached)}: resuming in {delay:g} s")
            await asyncio.sleep(delay)
            delay *= 2
            resume = max(resume, whole_second(reached))
            if parts:
                parts[-1]["until"] = stamp(resume)
            await self.rows.save_parts(job.id, parts, attempt=False)
        if not parts:
            raise DownloadFailed("the device sent no playable video for this range")
        return [
            PartSpan(
                self.folder / p["file"],
                datetime.fromisoformat(p["from"]),
                datetime.fromisoformat(p["until"]) if p["until"] else None,
            )
            for p in parts
        ]

    async def _resume_point(self) -> tuple[list[dict[str, Any]], datetime | None]:
        """The parts a stopped node left on disk, and the media time to ask for next (None:
        they hold the whole range)."""
        job = self.job
        parts = list(job.parts)
        if not parts:
            return parts, job.start
        scan = None
        while parts:
            last = parts[-1]
            scan = await asyncio.to_thread(
                scan_part, self.folder / last["file"], bool(last.get("closed"))
            )
            if scan is not None:
                break
            parts.pop()
        if not parts or scan is None:
            await self.rows.note(job.id, "no partial file survived: starting again from the start")
            return [], job.start
        last = parts[-1]
        begin = datetime.fromisoformat(last["from"])
        reached = begin + timedelta(seconds=scan.span_s)
        if (job.end - reached).total_seconds() <= END_TOLERANCE_S:
            last["until"] = None
            return parts, None
        resume = max(begin, whole_second(reached))
        last["until"] = stamp(resume)
        await self.rows.note(job.id, f"resuming from {stamp(resume)} (part {len(parts) + 1})")
        return parts, resume

    async def _receive(
        self, part: dict[str, Any], start: datetime, parts: list[dict[str, Any]]
    ) -> Received:
        """One Download INVITE from ``start``: units into the part until the stream ends;
        the part is marked closed once its file is whole (a node stop included)."""
        job = self.job
        path = self.folder / part["file"]
        got = Received()
        try:
            key, sub = self.hub.open_playback(
                job.channel,
                start,
                job.end,
                name=f"download-{job.id[:8]}",
                maxlen=QUEUE_UNITS,
                mode=PlayMode.download,
                download_speed=job.speed,
            )
        except (ValueError, LookupError) as exc:
            got.reason = str(exc)
            return got
        stream = self.hub.playback_stream(key)
        writer = PartWriter(path)
        pool = ThreadPoolExecutor(1, thread_name_prefix=f"download-{job.id[:8]}")
        loop = asyncio.get_running_loop()
        flushed = 0.0
        hole = ""
        try:
            async for item in sub:
                if isinstance(item, Gap):
                    hole = item.reason  # a hole only if units follow (not the stream's end)
                    continue
                if hole:
                    got.gaps += 1
                    log.warning("download hole", job=job.id, reason=hole)
                    hole = ""
                await loop.run_in_executor(pool, writer.write, item)
                if time.monotonic() - flushed >= PROGRESS_EVERY_S:
                    flushed = time.monotonic()
                    await self._progress(start, writer, got, stream)
        finally:
            sub.close()
            await loop.run_in_executor(pool, writer.close)
            pool.shutdown(wait=False)
            part["closed"] = True
            await self.rows.save_parts(job.id, parts, attempt=False)
        got.frames, got.bytes, got.span_s = writer.frames, writer.bytes, writer.span_s
        if stream is not None:
            got.ended_by_device = stream.ended_by_device
            got.reason = stream.end_reason or stream.last_error
        await self._progress(start, writer, got, stream)
        self.received += writer.bytes
        self.gaps += got.gaps
        return got

    async def _progress(
        self, start: datetime, writer: PartWriter, got: Received, stream: Any
    ) -> None:
        session = getattr(stream, "session", None)
        await self.rows.progress(
            self.job.id,
            received=self.received + writer.bytes,
            gaps=self.gaps + got.gaps,
            reached=start + timedelta(seconds=writer.span_s) if writer.frames else None,
            file_size=session.answer.file_size if session is not None else None,
        )
