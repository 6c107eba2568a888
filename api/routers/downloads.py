"""Download jobs: a camera's range as an MP4 the user takes away — from the NVR's own storage
(GB28181 Download at ×N speed) or from our recordings — with progress, cancel and the file.

Jobs are scoped through their camera like every camera route: a job of a camera the
caller cannot see is a 404.  Cancelling or deleting is for whoever created the job, an
operator or an administrator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from sip import ids
from sip.channel_ref import ChannelRef
from storage.download_models import ACTIVE_STATES, DownloadJob, DownloadSource, DownloadState
from storage.models import Role
from storage.objects import ObjectNotFound, ObjectStore, ObjectStoreError

from ..channel_scope import DeviceQuery, camera_visible, visible_camera
from ..deps import HUMANS, Caller, CallerDep, ServicesDep, SessionDep, count_into, require_roles

router = APIRouter(prefix="/api/downloads", tags=["downloads"])

CHUNK = 1 << 20
MANAGERS = (Role.admin, Role.operator)


class DownloadIn(BaseModel):
    channel_id: str = Field(pattern=ids.PATTERN)
    # the device listing the camera; needed when several of the caller's devices list its ID
    device_id: str | None = Field(None, pattern=ids.PATTERN)
    start: datetime
    end: datetime
    source: Literal["device", "recording"] = "device"
    speed: int = Field(4, ge=1, le=16, description="a=downloadspeed asked of the NVR")


class EventOut(BaseModel):
    at: str
    event: str


class DownloadOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    channel_id: str
    device_id: str
    source: DownloadSource
    start: datetime
    end: datetime
    speed: int
    state: DownloadState
    error: str
    created_by: str
    bytes_received: int
    reached: datetime | None
    file_size: int | None  # what the NVR announced (a=filesize)
    progress: float = 0.0  # share of the range's media time received, 0..1
    attempts: int
    gaps: int
    events: list[EventOut]
    size: int  # of the MP4
    duration_s: float
    frames: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    file_url: str = ""


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _out(row: DownloadJob) -> DownloadOut:
    out = DownloadOut.model_validate(row)
    span = (row.end - row.start).total_seconds()
    if row.state is DownloadState.done:
        out.progress = 1.0
    elif row.reached is not None and span > 0:
        out.progress = round(min(max((row.reached - row.start).total_seconds() / span, 0), 1), 4)
    if row.state is DownloadState.done and row.object_key:
        out.file_url = f"/api/downloads/{row.id}/file"
    return out


def _downloads(services: ServicesDep) -> Any:
    if services.downloads is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "download jobs are not running")
    return services.downloads


Downloads = Annotated[Any, Depends(_downloads)]


def _visible_job(caller: Caller, session: SessionDep, job_id: str) -> DownloadJob:
    stmt = select(DownloadJob).where(DownloadJob.id == job_id)
    if caller.org_path is not None:  # a job of a camera gone: a global administrator's only
        stmt = stmt.where(
            camera_visible(caller, session, DownloadJob.device_id, DownloadJob.channel_id)
        )
    row = session.scalar(stmt)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"download {job_id} not found")
    return row


def _may_manage(caller: Caller, row: DownloadJob) -> None:
    if caller.role not in MANAGERS and row.created_by != caller.user.username:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only its creator or an operator may")


@router.post("", status_code=202, response_model=DownloadOut, dependencies=[require_roles(*HUMANS)])
async def create_download(
    body: DownloadIn, caller: CallerDep, services: ServicesDep, downloads: Downloads
) -> DownloadOut:
    """Queue a download of ``[start, end]``; poll it, then fetch ``file_url``."""
    start, end = utc(body.start), utc(body.end)

    def camera_of() -> ChannelRef:
        with services.db.session() as s:
            return visible_camera(caller, s, body.channel_id, body.device_id)

    camera = await asyncio.to_thread(camera_of)
    try:
        job = await downloads.create(
            channel_id=camera.channel_id,
            device_id=camera.device_id,
            source=DownloadSource(body.source),
            start=start,
            end=end,
            speed=body.speed,
            user=caller.user.username,
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return _out(job)


@router.get("", response_model=list[DownloadOut], dependencies=[require_roles(*HUMANS)])
def list_downloads(
    caller: CallerDep,
    session: SessionDep,
    response: Response,
    channel_id: str | None = None,
    device_id: DeviceQuery = None,
    state: DownloadState | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> list[DownloadOut]:
    """The jobs of the cameras the caller sees, newest first (``X-Total-Count``)."""
    stmt = select(DownloadJob)
    if caller.org_path is not None:
        stmt = stmt.where(
            camera_visible(caller, session, DownloadJob.device_id, DownloadJob.channel_id)
        )
    if channel_id:
        stmt = stmt.where(DownloadJob.channel_id == channel_id)
    if device_id:
        stmt = stmt.where(DownloadJob.device_id == device_id)
    if state is not None:
        stmt = stmt.where(DownloadJob.state == state)
    count_into(session, stmt, response)
    stmt = stmt.order_by(DownloadJob.created_at.desc(), DownloadJob.id).offset(offset).limit(limit)
    return [_out(row) for row in session.scalars(stmt)]


@router.get("/{job_id}", response_model=DownloadOut, dependencies=[require_roles(*HUMANS)])
def get_download(job_id: str, caller: CallerDep, session: SessionDep) -> DownloadOut:
    return _out(_visible_job(caller, session, job_id))


@router.post("/{job_id}/cancel", response_model=DownloadOut, dependencies=[require_roles(*HUMANS)])
async def cancel_download(
    job_id: str, caller: CallerDep, services: ServicesDep, downloads: Downloads
) -> DownloadOut:
    def check() -> DownloadJob:
        with services.db.session() as s:
            row = _visible_job(caller, s, job_id)
            _may_manage(caller, row)
            return row

    row = await asyncio.to_thread(check)
    if row.state not in ACTIVE_STATES or not await downloads.cancel(job_id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"download {job_id} is {row.state.value}")

    def reread() -> DownloadOut:
        with services.db.session() as s:
            return _out(s.get(DownloadJob, job_id) or row)

    return await asyncio.to_thread(reread)


@router.delete("/{job_id}", status_code=204, dependencies=[require_roles(*HUMANS)])
async def delete_download(
    job_id: str, caller: CallerDep, services: ServicesDep, downloads: Downloads
) -> None:
    """Cancel if needed, and remove the job, its MP4 and its partial files."""

    def check() -> None:
        with services.db.session() as s:
            _may_manage(caller, _visible_job(caller, s, job_id))

    await asyncio.to_thread(check)
    await downloads.remove(job_id)


def _chunks(objects: ObjectStore, key: str, size: int) -> Iterator[bytes]:
    for offset in range(0, size, CHUNK):
        yield objects.get_range(key, offset, min(CHUNK, size - offset))


@router.get("/{job_id}/file", dependencies=[require_roles(*HUMANS)])
def download_file(
    job_id: str, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> Response:
    """The MP4 (a redirect when the object store presigns URLs)."""
    row = _visible_job(caller, session, job_id)
    if row.state is DownloadState.expired:
        raise HTTPException(status.HTTP_410_GONE, "the file was removed after its retention")
    if row.state is not DownloadState.done or not row.object_key:
        raise HTTPException(status.HTTP_409_CONFLICT, f"download {job_id} is {row.state.value}")
    objects = services.objects
    try:
        presigned = objects.url(row.object_key, 600)
        if presigned:
            return RedirectResponse(presigned, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
        size = objects.stat(row.object_key).size
    except ObjectNotFound:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "the file is missing from the store"
        ) from None
    except ObjectStoreError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"object store: {exc}") from None
    name = f"{row.channel_id}-{row.start:%Y%m%dT%H%M%S}-{row.end:%H%M%S}.mp4"
    headers = {"Content-Length": str(size), "Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(
        _chunks(objects, row.object_key, size), media_type="video/mp4", headers=headers
    )
