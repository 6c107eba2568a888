"""Download jobs: a camera's range fetched into an MP4 in the object store for the user.

Two sources: the NVR's own storage (``download_device``: GB28181 Download at ×N speed,
MediaStatus 121 ends it, a stalled device is resumed or reported) and our recordings (an
export, no device involved).  Jobs are rows (``storage.download_models``), written as they
progress, so they **survive a restart**: a job that was running when the node stopped is
queued again at the next start and resumed from the media time its parts reached on disk
(a torn last frame cut off); its ``events`` say so.  At most
``recording.download_concurrent`` jobs run at once; the others wait as ``queued``.
Finished MP4s are removed after ``recording.download_ttl_hours`` (the job says ``expired``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import av

from storage.download_models import DownloadJob, DownloadSource, DownloadState
from storage.models import RecordingSegment
from storage.objects import ObjectStoreError
from vms.logging import get_logger
from vms.services import Services

from .download_device import DeviceDownload, DownloadFailed
from .download_parts import NothingDownloaded, build_mp4
from .download_rows import JobRows, JobSpec, add_event, utcnow
from .export import NothingToExport, export_mp4
from .index import rows_between

log = get_logger("vms.recording.downloads")

SWEEP_EVERY_S = 60.0
SCHEDULE_EVERY_S = 5.0  # queued jobs are looked at least this often (and on every change)
OBJECT_PREFIX = "downloads"
EXPORT_FRAME_S = 0.04  # an export's duration counts its last frame (25 fps)


class Downloads:
    """The node's download jobs: create, schedule, run, cancel, resume, expire."""

    name = "downloads"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings.recording
        self.rows = JobRows(services.db)
        self.root: Path = services.settings.server.data_dir / "downloads"
        self.running: dict[str, asyncio.Task[None]] = {}
        self._cancelling: set[str] = set()
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []

    # --- component -------------------------------------------------------------------

    async def start(self) -> None:
        self.services.downloads = self
        resumed = await self.rows.recover()
        if resumed:
            log.info("download jobs resume after a restart", jobs=resumed)
        self._loops = [
            asyncio.create_task(self._schedule_loop(), name="downloads-schedule"),
            asyncio.create_task(self._sweep_loop(), name="downloads-sweep"),
        ]

    async def stop(self) -> None:
        """Stop the loops and the running jobs; their rows stay ``running``, to be resumed."""
        tasks = [*self._loops, *self.running.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops = []

    # --- what the API asks -------------------------------------------------------------

    async def create(
        self,
        *,
        channel_id: str,
        device_id: str,
        source: DownloadSource,
        start: datetime,
        end: datetime,
        speed: int = 1,
        user: str = "",
    ) -> DownloadJob:
        """A queued job (ValueError for a range that is empty or too long)."""
        if end <= start:
            raise ValueError("end must be after start")
        if (end - start).total_seconds() > self.settings.download_max_s:
            raise ValueError(f"range longer than {self.settings.download_max_s:.0f} s")
        row = DownloadJob(
            channel_id=channel_id,
            device_id=device_id,
            source=source,
            start=start,
            end=end,
            speed=max(1, speed) if source is DownloadSource.device else 1,
            created_by=user,
            parts=[],
            events=[],
        )
        add_event(row, f"created by {user or 'the node'}")
        job = await self.rows.insert(row)
        self._wake.set()
        return job

    async def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job (its partial files go); False if it was not active."""
        task = self.running.get(job_id)
        if task is None:
            return await self.rows.cancel_queued(job_id)
        self._cancelling.add(job_id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return True

    async def remove(self, job_id: str) -> None:
        """Cancel if active, then delete the MP4, the partial files and the row."""
        await self.cancel(job_id)
        key = await self.rows.delete(job_id)
        if key:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.services.objects.delete, key)
        await asyncio.to_thread(shutil.rmtree, self.root / job_id, True)

    # --- scheduling ------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.schedule()
            except Exception as exc:  # noqa: BLE001 - the database may be back next round
                log.error("download scheduling failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SCHEDULE_EVERY_S)

    async def schedule(self) -> None:
        """Start queued jobs, oldest first, while there is a free slot."""
        free = self.settings.download_concurrent - len(self.running)
        if free <= 0:
            return
        for job in await self.rows.claim(free, set(self.running)):
            self.running[job.id] = asyncio.create_task(self._run(job), name=f"dl-{job.id[:8]}")

    async def _run(self, job: JobSpec) -> None:
        try:
            if job.source is DownloadSource.recording:
                await self._export(job)
            else:
                await self._from_device(job)
        except asyncio.CancelledError:
            if job.id in self._cancelling:
                self._cancelling.discard(job.id)
                await self.rows.end(job.id, DownloadState.cancelled, "cancelled by the user")
                await asyncio.to_thread(shutil.rmtree, self.root / job.id, True)
            raise  # a node stop: the row stays "running" and is resumed at the next start
        except Exception as exc:  # noqa: BLE001 - told through the job
            reason = str(exc) if isinstance(exc, DownloadFailed) else f"{type(exc).__name__}: {exc}"
            log.warning("download failed", job=job.id, channel=job.channel_id, error=reason)
            await self.rows.end(job.id, DownloadState.failed, reason)
            await asyncio.to_thread(shutil.rmtree, self.root / job.id, True)
        finally:
            self.running.pop(job.id, None)
            self._wake.set()

    # --- the two sources -------------------------------------------------------------

    async def _from_device(self, job: JobSpec) -> None:
        if self.services.media is None or self.services.sip is None:
            raise DownloadFailed("no media hub or SIP server on this node")
        folder = self.root / job.id
        runner = DeviceDownload(job, self.services.media, self.rows, self.settings, folder)
        spans = await runner.run()
        out = folder / "result.mp4"
        try:
            result = await asyncio.to_thread(build_mp4, spans, job.end, out)
        except (NothingDownloaded, av.FFmpegError, OSError, ValueError) as exc:
            raise DownloadFailed(f"cannot make the MP4: {exc}") from None
        await self._store(job, out, result.frames, result.duration_s, result.last, runner.received)

    async def _export(self, job: JobSpec) -> None:
        rows: list[RecordingSegment] = await self.services.db.run(
            lambda s: rows_between(s, job.channel, job.start, job.end)
        )
        folder = self.root / job.id
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / "result.mp4"
        try:
            result = await asyncio.to_thread(
                export_mp4, self.services.objects, rows, job.start, job.end, out
            )
        except (NothingToExport, ObjectStoreError, av.FFmpegError, OSError, ValueError) as exc:
            raise DownloadFailed(f"export failed: {exc}") from None
        duration = (result.end - result.start).total_seconds() + EXPORT_FRAME_S
        received = sum(r.size for r in rows if not r.is_gap)
        await self._store(job, out, result.frames, duration, result.end, received)

    async def _store(
        self, job: JobSpec, out: Path, frames: int, duration: float, last: datetime, received: int
    ) -> None:
        camera = job.channel  # validated codes: the key is never built from unchecked text
        name = f"{job.start:%Y%m%dT%H%M%S}-{job.id[:8]}.mp4"
        key = f"{OBJECT_PREFIX}/{camera.device_id}/{camera.channel_id}/{name}"
        size = out.stat().st_size
        await asyncio.to_thread(self.services.objects.put_file, key, out, "video/mp4")
        kept = await self.rows.done(
            job.id,
            key=key,
            size=size,
            frames=frames,
            duration_s=duration,
            last=last,
            received=received,
        )
        if not kept:  # the job was removed meanwhile: its MP4 goes too
            await asyncio.to_thread(self.services.objects.delete, key)
        await asyncio.to_thread(shutil.rmtree, self.root / job.id, True)
        log.info("download done", job=job.id, channel=job.channel_id, frames=frames, bytes=size)

    # --- expiry ------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - next round
                log.error("download sweep failed", error=repr(exc))

    async def sweep(self, now: datetime | None = None) -> int:
        """Remove the MP4s of jobs finished more than ``download_ttl_hours`` ago (→ expired)."""
        ttl = self.settings.download_ttl_hours
        keys = await self.rows.expire((now or utcnow()) - timedelta(hours=ttl), ttl)
        for key in keys:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.services.objects.delete, key)
        return len(keys)


def create_downloads(services: Services) -> Downloads:
    """Component factory for ``vms.components`` (after the media hub)."""
    return Downloads(services)
