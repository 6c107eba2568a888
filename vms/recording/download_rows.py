"""The download jobs' rows: every change a job makes to its row, each in its own transaction.

A job's state is only ever what its row says, so the API reads rows and a restarted node
finds the jobs where they were.  Each method runs in a worker thread (``Database.run``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sip.channel_ref import ChannelRef
from storage.db import Database
from storage.download_models import ACTIVE_STATES, DownloadJob, DownloadSource, DownloadState

EVENTS_MAX = 50  # history entries kept per job


def utcnow() -> datetime:
    return datetime.now(UTC)


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


def whole_second(at: datetime) -> datetime:
    """``t=`` carries whole seconds: resume from the second the parts reached."""
    return datetime.fromtimestamp(math.floor(at.timestamp()), UTC)


def add_event(row: DownloadJob, text: str) -> None:
    """Append to the job's history (a new list: JSON columns track assignment, not mutation)."""
    events = [*(row.events or []), {"at": stamp(utcnow()), "event": text}]
    row.events = events[-EVENTS_MAX:]


@dataclass(frozen=True)
class JobSpec:
    """What a running job needs from its row, read once when it is claimed."""

    id: str
    device_id: str
    channel_id: str
    source: DownloadSource
    start: datetime
    end: datetime
    speed: int
    parts: list[dict[str, Any]]
    bytes_received: int
    gaps: int

    @property
    def channel(self) -> ChannelRef:
        """The camera (InvalidGbId for a row without a valid device: the job fails, clearly)."""
        return ChannelRef(self.device_id, self.channel_id)

    @classmethod
    def of(cls, row: DownloadJob) -> JobSpec:
        return cls(
            row.id,
            row.device_id,
            row.channel_id,
            row.source,
            row.start,
            row.end,
            row.speed,
            [dict(p) for p in row.parts or []],
            row.bytes_received,
            row.gaps,
        )


class JobRows:
    """Reads and writes of ``download_jobs`` for the component and its runners."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _update(self, job_id: str, change: Any) -> Any:
        def run(s: Session) -> Any:
            row = s.get(DownloadJob, job_id)
            return None if row is None else change(row)

        return await self.db.run(run)

    async def insert(self, row: DownloadJob) -> DownloadJob:
        def run(s: Session) -> DownloadJob:
            s.add(row)
            s.flush()
            return row

        return await self.db.run(run)

    async def recover(self) -> int:
        """Jobs a stopped node left running go back to the queue, saying so."""

        def run(s: Session) -> int:
            stmt = select(DownloadJob).where(DownloadJob.state == DownloadState.running)
            rows = list(s.scalars(stmt))
            for row in rows:
                reached = stamp(row.reached) if row.reached else "nothing yet"
                add_event(row, f"the node stopped while this job ran (reached {reached}): resuming")
                row.state = DownloadState.queued
            return len(rows)

        return await self.db.run(run)

    async def claim(self, free: int, busy: set[str]) -> list[JobSpec]:
        """Mark up to ``free`` queued jobs running, oldest first."""

        def run(s: Session) -> list[JobSpec]:
            stmt = (
                select(DownloadJob)
                .where(DownloadJob.state == DownloadState.queued)
                .order_by(DownloadJob.created_at, DownloadJob.id)
                .limit(free + len(busy))
            )
            specs = []
            for row in s.scalars(stmt):
                if row.id in busy or len(specs) >= free:
                    continue
                row.state = DownloadState.running
                row.updated_at = utcnow()
                specs.append(JobSpec.of(row))
            return specs

        return await self.db.run(run)

    async def cancel_queued(self, job_id: str) -> bool:
        def change(row: DownloadJob) -> bool:
            if row.state is not DownloadState.queued:
                return False
            row.state = DownloadState.cancelled
            row.finished_at = row.updated_at = utcnow()
            add_event(row, "cancelled: cancelled by the user")
            return True

        return bool(await self._update(job_id, change))

    async def delete(self, job_id: str) -> str:
        """Delete the row; its MP4's object key (to delete too)."""

        def run(s: Session) -> str:
            row = s.get(DownloadJob, job_id)
            if row is None:
                return ""
            key = row.object_key
            s.delete(row)
            return key

        return await self.db.run(run)

    async def note(self, job_id: str, text: str) -> None:
        await self._update(job_id, lambda row: add_event(row, text))

    async def save_parts(self, job_id: str, parts: list[dict[str, Any]], attempt: bool) -> None:
        def change(row: DownloadJob) -> None:
            row.parts = [dict(p) for p in parts]
            row.attempts += int(attempt)
            row.updated_at = utcnow()

        await self._update(job_id, change)

    async def progress(
        self,
        job_id: str,
        *,
        received: int,
        gaps: int,
        reached: datetime | None,
        file_size: int | None,
    ) -> None:
        def change(row: DownloadJob) -> None:
            row.bytes_received = received
            row.gaps = gaps
            if reached is not None and (row.reached is None or reached > row.reached):
                row.reached = reached
            if file_size:
                row.file_size = file_size
            row.updated_at = utcnow()

        await self._update(job_id, change)

    async def done(
        self,
        job_id: str,
        *,
        key: str,
        size: int,
        frames: int,
        duration_s: float,
        last: datetime,
        received: int,
    ) -> bool:
        """The MP4 is stored; False when the row was removed meanwhile."""

        def change(row: DownloadJob) -> bool:
            row.state = DownloadState.done
            row.object_key, row.size, row.frames = key, size, frames
            row.duration_s = round(duration_s, 3)
            row.bytes_received = max(row.bytes_received, received)
            row.reached = max(row.reached or last, last)
            row.finished_at = row.updated_at = utcnow()
            add_event(row, f"done: {frames} frames, {duration_s:.1f} s, {size} bytes")
            return True

        return bool(await self._update(job_id, change))

    async def end(self, job_id: str, state: DownloadState, reason: str) -> None:
        """Failed or cancelled, with the reason (only an active job changes)."""

        def change(row: DownloadJob) -> None:
            if row.state in ACTIVE_STATES:
                row.state = state
                row.error = reason if state is DownloadState.failed else ""
                row.finished_at = row.updated_at = utcnow()
                add_event(row, f"{state.value}: {reason}")

        await self._update(job_id, change)

    async def expire(self, finished_before: datetime, ttl_hours: float) -> list[str]:
        """Done jobs finished before the cutoff become expired; their object keys."""

        def run(s: Session) -> list[str]:
            stmt = select(DownloadJob).where(
                DownloadJob.state == DownloadState.done,
                DownloadJob.finished_at < finished_before,
            )
            keys = []
            for row in s.scalars(stmt):
                keys.append(row.object_key)
                row.state, row.object_key = DownloadState.expired, ""
                add_event(row, f"the MP4 was removed after {ttl_hours:g} h")
            return keys

        return await self.db.run(run)
