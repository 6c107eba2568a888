"""Recorded video of a camera: timeline, HLS VOD playlist, segment bytes (HTTP Range),
MP4 clip export, and replay from the NVR's own storage — all scoped to the caller's
organisation through the camera's device.  A camera is its channel ID plus, when several
of the caller's devices list that ID, ``?device_id=``; its recordings are those of that
device's channel only.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import av
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from sip.channel_ref import ChannelRef
from storage.models import RecordingSegment
from storage.objects import ObjectNotFound, ObjectStoreError
from vms.recording import hls
from vms.recording.export import NothingToExport, export_mp4
from vms.recording.index import TS_CONTENT_TYPE, holes, merge_ranges, rows_between
from vms.recording.playback import PlaybackJob, PlaybackUnavailable, device_ranges
from vms.services import Services

from ..channel_scope import DeviceQuery, visible_camera, visible_refs
from ..deps import HUMANS, Caller, CallerDep, ServicesDep, SessionDep, require_roles

router = APIRouter(prefix="/api/recordings", tags=["recordings"])

Source = Literal["recorder", "playback"]
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class SpanOut(BaseModel):
    start: datetime
    end: datetime
    # gaps: "stream-lost", "disk-slow", "write-error", ... are faults; "schedule" is time
    # outside the camera's recording windows; "not-recorded" when nothing says why
    reason: str = ""


class TimelineOut(BaseModel):
    channel_id: str
    device_id: str
    start: datetime
    end: datetime
    ranges: list[SpanOut]
    gaps: list[SpanOut]
    recorded_s: float


class SegmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    start: datetime
    end: datetime
    size: int
    codec: str
    is_gap: bool
    reason: str
    url: str = ""


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def window(start: datetime, end: datetime, max_s: float | None = None) -> tuple[datetime, datetime]:
    start, end = utc(start), utc(end)
    if end <= start:
        raise HTTPException(422, "end must be after start")
    if max_s is not None and (end - start).total_seconds() > max_s:
        raise HTTPException(422, f"range longer than {max_s:.0f} s")
    return start, end


def visible_segment_row(caller: Caller, session: SessionDep, row: RecordingSegment) -> None:
    """404 unless the segment's camera (device and channel) is one the caller may see; rows
    whose camera is gone (no device) are for a global administrator only."""
    if caller.org_path is None:
        return
    try:
        camera = ChannelRef(row.device_id, row.channel_id)
    except ValueError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"segment {row.id} not found") from None
    if camera not in visible_refs(caller, session, [camera]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"segment {row.id} not found")


def segment_url(request: Request, row: RecordingSegment) -> str:
    """Segment URL for players; carries ``?token=`` when the playlist was fetched with one."""
    url = f"/api/recordings/segment/{row.id}.ts"
    token = request.query_params.get("token")
    return f"{url}?token={token}" if token else url


@router.get("/status", dependencies=[require_roles(*HUMANS)])
def recorder_status(
    caller: CallerDep, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """Which visible cameras are being recorded now (keyed ``device/channel``), with queue,
    drop and segment counts."""
    recorder = services.recorder
    if recorder is None:
        return {"enabled": False, "channels": {}}
    stats = recorder.stats()
    visible = visible_refs(caller, session, list(stats))
    return {
        "enabled": True,
        "channels": {
            str(c): {"device_id": c.device_id, "channel_id": c.channel_id, **v}
            for c, v in stats.items()
            if c in visible
        },
    }


@router.get(
    "/{channel_id}/timeline", response_model=TimelineOut, dependencies=[require_roles(*HUMANS)]
)
def timeline(
    channel_id: str,
    caller: CallerDep,
    session: SessionDep,
    start: datetime,
    end: datetime,
    source: Source = "recorder",
    device_id: DeviceQuery = None,
) -> TimelineOut:
    """Recorded ranges (touching segments merged) and the gaps between them in a window."""
    start, end = window(start, end)
    camera = visible_camera(caller, session, channel_id, device_id)
    rows = rows_between(session, camera, start, end, source)
    ranges = merge_ranges(rows, start, end)
    first = ranges[0].start if ranges else end
    last = ranges[-1].end if ranges else start
    gaps = [g for g in holes(ranges, rows, start, end) if g.start >= first and g.end <= last]
    return TimelineOut(
        channel_id=channel_id,
        device_id=camera.device_id,
        start=start,
        end=end,
        ranges=[SpanOut(start=r.start, end=r.end) for r in ranges],
        gaps=[SpanOut(start=g.start, end=g.end, reason=g.reason) for g in gaps],
        recorded_s=sum((r.end - r.start).total_seconds() for r in ranges),
    )


@router.get(
    "/{channel_id}/segments",
    response_model=list[SegmentOut],
    dependencies=[require_roles(*HUMANS)],
)
def list_segments(
    channel_id: str,
    request: Request,
    caller: CallerDep,
    session: SessionDep,
    start: datetime,
    end: datetime,
    source: Source = "recorder",
    limit: int = Query(1000, ge=1, le=10000),
    device_id: DeviceQuery = None,
) -> list[SegmentOut]:
    start, end = window(start, end)
    camera = visible_camera(caller, session, channel_id, device_id)
    rows = rows_between(session, camera, start, end, source)[:limit]
    out = []
    for row in rows:
        item = SegmentOut.model_validate(row)
        if not row.is_gap:
            item.url = segment_url(request, row)
        out.append(item)
    return out


@router.get("/{channel_id}/playlist.m3u8", dependencies=[require_roles(*HUMANS)])
def playlist(
    channel_id: str,
    request: Request,
    caller: CallerDep,
    session: SessionDep,
    start: datetime,
    end: datetime,
    source: Source = "recorder",
    device_id: DeviceQuery = None,
) -> Response:
    """HLS VOD playlist from the keyframe at or before ``start`` to the segment holding ``end``."""
    start, end = window(start, end)
    camera = visible_camera(caller, session, channel_id, device_id)
    entries = hls.plan(rows_between(session, camera, start, end, source), start, end)
    if not entries:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no recording in the requested range")
    body = hls.render(entries, start, lambda row: segment_url(request, row))
    return PlainTextResponse(body, media_type="application/vnd.apple.mpegurl")


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """(first, last) byte of a single ``bytes=`` range (RFC 9110 §14.1.2); 416 if unsatisfiable."""
    match = RANGE_RE.match(header.strip())
    if match is None or not (match.group(1) or match.group(2)):
        raise HTTPException(status.HTTP_416_RANGE_NOT_SATISFIABLE, "only one bytes range served")
    first_s, last_s = match.groups()
    if not first_s:  # suffix range: the last N bytes
        length = int(last_s)
        if length == 0:
            raise HTTPException(status.HTTP_416_RANGE_NOT_SATISFIABLE, "empty range")
        return max(size - length, 0), size - 1
    first = int(first_s)
    last = min(int(last_s), size - 1) if last_s else size - 1
    if first >= size or last < first:
        raise HTTPException(
            status.HTTP_416_RANGE_NOT_SATISFIABLE,
            f"range outside 0-{size - 1}",
            {"Content-Range": f"bytes */{size}"},
        )
    return first, last


@router.get("/segment/{segment_id}.ts", dependencies=[require_roles(*HUMANS)])
def segment_bytes(
    segment_id: int,
    request: Request,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
) -> Response:
    """The segment's bytes; honours ``Range``; redirects to the store when it presigns URLs."""
    row = session.get(RecordingSegment, segment_id)
    if row is None or row.is_gap:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"segment {segment_id} not found")
    visible_segment_row(caller, session, row)
    objects = services.objects
    try:
        presigned = objects.url(row.object_key, 600)
        if presigned:
            return RedirectResponse(presigned, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
        size = objects.stat(row.object_key).size
        header = request.headers.get("range")
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
        if header is None:
            data = objects.get(row.object_key)
            return Response(data, media_type=TS_CONTENT_TYPE, headers=headers)
        first, last = _parse_range(header, size)
        data = objects.get_range(row.object_key, first, last - first + 1)
    except ObjectNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "segment object missing") from None
    except ObjectStoreError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"object store: {exc}") from None
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return Response(data, status_code=206, media_type=TS_CONTENT_TYPE, headers=headers)


@router.get("/{channel_id}/export.mp4", dependencies=[require_roles(*HUMANS)])
def export_clip(
    channel_id: str,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    start: datetime,
    end: datetime,
    store: bool = False,
    source: Source = "recorder",
    device_id: DeviceQuery = None,
) -> Response:
    """An MP4 of ``[start, end]`` from the keyframe at or before ``start``; ``store=true`` also
    keeps it under ``exports/`` (its key in ``X-Object-Key``)."""
    start, end = window(start, end, services.settings.recording.max_export_s)
    camera = visible_camera(caller, session, channel_id, device_id)
    rows = rows_between(session, camera, start, end, source)
    tmp_dir = services.settings.server.data_dir / "exports-tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkstemp(dir=tmp_dir, suffix=".mp4")[1])
    try:
        result = export_mp4(services.objects, rows, start, end, out)
    except NothingToExport as exc:
        out.unlink(missing_ok=True)
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except (ObjectStoreError, OSError, ValueError, av.error.FFmpegError) as exc:
        # FFmpegError: a stored segment that is not MPEG-TS (cut short, damaged)
        out.unlink(missing_ok=True)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"export failed: {exc}") from None
    headers = {
        "X-Clip-Start": result.start.isoformat(),
        "X-Clip-End": result.end.isoformat(),
        "X-Clip-Frames": str(result.frames),
    }
    name = f"{camera.channel_id}-{result.start:%Y%m%dT%H%M%S}.mp4"
    if store:
        stamp = f"{result.start:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        key = f"exports/{camera.device_id}/{camera.channel_id}/{stamp}.mp4"
        services.objects.put_file(key, out, "video/mp4")
        headers["X-Object-Key"] = key
    return FileResponse(
        out,
        media_type="video/mp4",
        filename=name,
        headers=headers,
        background=BackgroundTask(out.unlink, missing_ok=True),
    )


# --- replay from the NVR's own storage ----------------------------------------------


class DeviceRangesOut(BaseModel):
    channel_id: str
    device_id: str
    ranges: list[SpanOut]
    complete: bool  # the device sent every item it announced (SumNum)


class PlaybackIn(BaseModel):
    start: datetime
    end: datetime
    # 1: a Playback INVITE (real time); more: a Download INVITE at a=downloadspeed:N
    speed: int = Field(1, ge=1, le=16)


def _camera(
    services: Services, caller: Caller, channel_id: str, device_id: str | None = None
) -> ChannelRef:
    with services.db.session() as s:
        return visible_camera(caller, s, channel_id, device_id)


@router.get(
    "/{channel_id}/device-records",
    response_model=DeviceRangesOut,
    dependencies=[require_roles(*HUMANS)],
)
async def device_records(
    channel_id: str,
    caller: CallerDep,
    services: ServicesDep,
    start: datetime,
    end: datetime,
    device_id: DeviceQuery = None,
) -> DeviceRangesOut:
    """What the NVR itself holds for the camera in the window (GB28181 RecordInfo)."""
    start, end = window(start, end)
    camera = await asyncio.to_thread(_camera, services, caller, channel_id, device_id)
    try:
        ranges, complete = await device_ranges(services, camera, start, end)
    except PlaybackUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the device's failure, told to the caller
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"device query failed: {exc}") from None
    return DeviceRangesOut(
        channel_id=channel_id,
        device_id=camera.device_id,
        ranges=[SpanOut(start=utc(a), end=utc(b)) for a, b in ranges],
        complete=complete,
    )


@router.post(
    "/{channel_id}/device-playback", status_code=202, dependencies=[require_roles(*HUMANS)]
)
async def start_device_playback(
    channel_id: str,
    body: PlaybackIn,
    caller: CallerDep,
    services: ServicesDep,
    device_id: DeviceQuery = None,
) -> dict[str, Any]:
    """Copy a range from the NVR (Playback INVITE, or Download at ``speed`` ×) into temporary
    segments; poll the job, then play ``playlist.m3u8?source=playback`` for the same range.
    To watch the NVR's recording at once, under control, use ``/api/playback/sessions``."""
    start, end = window(body.start, body.end, services.settings.recording.max_export_s)
    camera = await asyncio.to_thread(_camera, services, caller, channel_id, device_id)
    recorder = services.recorder
    if recorder is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "recording is disabled")
    try:
        job = recorder.playback.start(camera, start, end, body.speed)
    except PlaybackUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return _job_out(job)


@router.get("/device-playback/{job_id}", dependencies=[require_roles(*HUMANS)])
async def device_playback_job(
    job_id: str, caller: CallerDep, services: ServicesDep
) -> dict[str, Any]:
    recorder = services.recorder
    job = recorder.playback.jobs.get(job_id) if recorder is not None else None
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"playback job {job_id} not found")
    await asyncio.to_thread(_camera, services, caller, job.channel_id, job.device_id)
    return _job_out(job)


def _job_out(job: PlaybackJob) -> dict[str, Any]:
    out = job.as_dict()
    query = urlencode(
        {
            "start": out["start"],
            "end": out["end"],
            "source": "playback",
            "device_id": job.device_id,
        }
    )
    out["playlist_url"] = f"/api/recordings/{job.channel_id}/playlist.m3u8?{query}"
    out["status_url"] = f"/api/recordings/device-playback/{job.id}"
    return out
