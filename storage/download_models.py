"""Download jobs: a range of a camera fetched into an MP4 the user can take away.

A job is a row so that it outlives the process: its progress, the parts received so far
and what happened to it (its ``events``) are stored as it runs, and a node that restarts
finds the job again and resumes it from the media time the parts reached.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Enum, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow


class DownloadState(enum.StrEnum):
    queued = "queued"  # waiting for a free slot (recording.download_concurrent)
    running = "running"
    done = "done"  # the MP4 is in the object store
    failed = "failed"  # ``error`` says why
    cancelled = "cancelled"
    expired = "expired"  # the MP4 was removed after recording.download_ttl_hours


class DownloadSource(enum.StrEnum):
    device = "device"  # the NVR's own storage: a GB28181 Download INVITE
    recording = "recording"  # our recordings: an export, no device involved


ACTIVE_STATES = (DownloadState.queued, DownloadState.running)


def new_job_id() -> str:
    return uuid.uuid4().hex


class DownloadJob(Base):
    __tablename__ = "download_jobs"
    __table_args__ = (
        Index("ix_download_jobs_state", "state"),
        Index("ix_download_jobs_channel_created", "channel_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    channel_id: Mapped[str] = mapped_column(String(20))
    device_id: Mapped[str] = mapped_column(String(20), default="")  # the NVR asked, if any
    source: Mapped[DownloadSource] = mapped_column(
        Enum(DownloadSource, native_enum=False, length=16)
    )
    start: Mapped[datetime] = mapped_column()
    end: Mapped[datetime] = mapped_column()
    speed: Mapped[int] = mapped_column(Integer, default=1)  # a=downloadspeed
    state: Mapped[DownloadState] = mapped_column(
        Enum(DownloadState, native_enum=False, length=16), default=DownloadState.queued
    )
    error: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")  # username
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)
    reached: Mapped[datetime | None] = mapped_column()  # media time received up to
    file_size: Mapped[int | None] = mapped_column(BigInteger)  # the device's a=filesize
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # INVITEs made
    gaps: Mapped[int] = mapped_column(Integer, default=0)  # holes in what arrived (loss)
    # [{"file": "part-1.ts", "from": iso, "until": iso | null}]: one per INVITE
    parts: Mapped[list[Any]] = mapped_column(default=list)
    events: Mapped[list[Any]] = mapped_column(default=list)  # [{"at": iso, "event": text}]
    object_key: Mapped[str] = mapped_column(String(255), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes of the MP4
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)  # of the MP4
    frames: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
