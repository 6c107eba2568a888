"""Operator actions on GB28181 devices: refresh the catalog, ask for DeviceInfo/DeviceStatus,
search the NVR's own recordings, drive PTZ.  Scoped like ``/api/devices``: an enterprise user
acts only on its own devices; a device the caller cannot see is a 404.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from sip import ptz
from sip.queries import QueryError
from sip.server import SipError

from ..deps import HUMANS, STAFF, Caller, CallerDep, ServicesDep, SessionDep, require_roles
from .devices import visible_device

router = APIRouter(prefix="/api/sip", tags=["sip"])
MAX_RECORD_RANGE = timedelta(days=7)


class CatalogOut(BaseModel):
    device_id: str
    channels: int
    sum_num: int | None
    complete: bool


class PtzIn(BaseModel):
    action: Literal["move", "stop", "zoom", "preset"]
    direction: (
        Literal["up", "down", "left", "right", "upleft", "upright", "downleft", "downright"] | None
    ) = None
    zoom: Literal["in", "out"] | None = None
    speed: int = Field(0x40, ge=0, le=255)
    zoom_speed: int = Field(1, ge=0, le=15)
    preset: int | None = Field(None, ge=1, le=255)
    preset_action: Literal["set", "call", "delete"] = "call"


class RecordRange(BaseModel):
    start: datetime
    end: datetime


class RecordsOut(BaseModel):
    channel_id: str
    complete: bool
    sum_num: int | None
    ranges: list[RecordRange]
    files: list[dict[str, Any]]


def _server(services: Any) -> Any:
    if services.sip is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "SIP service not running")
    return services.sip


async def _check(
    caller: Caller, session: SessionDep, device_id: str, channel_id: str | None
) -> None:
    def fn() -> None:
        device = visible_device(caller, session, device_id)
        if channel_id is not None and all(c.channel_id != channel_id for c in device.channels):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"channel {channel_id} not found")

    await run_in_threadpool(fn)


def _sip_failure(exc: Exception) -> HTTPException:
    if isinstance(exc, SipError) and exc.status == 404:
        return HTTPException(status.HTTP_409_CONFLICT, str(exc))
    if isinstance(exc, QueryError) or (isinstance(exc, SipError) and exc.status == 408):
        return HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, str(exc))
    return HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc))


@router.post(
    "/devices/{device_id}/catalog", response_model=CatalogOut, dependencies=[require_roles(*HUMANS)]
)
async def refresh_catalog(
    device_id: str, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> CatalogOut:
    await _check(caller, session, device_id, None)
    try:
        result = await _server(services).catalog(device_id)
    except (SipError, QueryError) as exc:
        raise _sip_failure(exc) from None
    channels = sum(1 for i in result.items if i.is_channel)
    return CatalogOut(
        device_id=device_id, channels=channels, sum_num=result.sum_num, complete=result.complete
    )


@router.get("/devices/{device_id}/info", dependencies=[require_roles(*HUMANS)])
async def device_info(
    device_id: str, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    await _check(caller, session, device_id, None)
    try:
        info = await _server(services).device_info(device_id)
    except (SipError, QueryError) as exc:
        raise _sip_failure(exc) from None
    return info.__dict__


@router.get("/devices/{device_id}/status", dependencies=[require_roles(*HUMANS)])
async def device_status(
    device_id: str, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    await _check(caller, session, device_id, None)
    try:
        st = await _server(services).device_status(device_id)
    except (SipError, QueryError) as exc:
        raise _sip_failure(exc) from None
    return st.__dict__


@router.get(
    "/devices/{device_id}/channels/{channel_id}/records",
    response_model=RecordsOut,
    dependencies=[require_roles(*HUMANS)],
)
async def device_records(
    device_id: str,
    channel_id: str,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    start: datetime = Query(..., description="ISO time; naive means UTC"),
    end: datetime = Query(...),
    type: Literal["all", "time", "alarm", "manual"] = "all",
) -> RecordsOut:
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    if end <= start or end - start > MAX_RECORD_RANGE:
        raise HTTPException(422, "need start < end, at most 7 days")
    await _check(caller, session, device_id, channel_id)
    try:
        res = await _server(services).record_info(device_id, channel_id, start, end, type)
    except (SipError, QueryError) as exc:
        raise _sip_failure(exc) from None
    return RecordsOut(
        channel_id=channel_id,
        complete=res.complete,
        sum_num=res.sum_num,
        ranges=[RecordRange(start=s, end=e) for s, e in res.ranges],
        files=[
            {
                "start": r.start,
                "end": r.end,
                "name": r.name,
                "file_path": r.file_path,
                "type": r.type,
            }
            for r in sorted(res.items, key=lambda r: r.start)
        ],
    )


def ptz_command(body: PtzIn) -> str:
    """The A50F01 command for an API request (ValueError on an incomplete one)."""
    if body.action == "stop":
        return ptz.move("stop")
    if body.action == "move":
        if body.direction is None:
            raise ValueError("move needs a direction")
        return ptz.move(body.direction, body.speed, body.zoom, body.zoom_speed)
    if body.action == "zoom":
        if body.zoom is None:
            raise ValueError("zoom needs 'in' or 'out'")
        return ptz.zoom(body.zoom, body.zoom_speed)
    if body.preset is None:
        raise ValueError("preset needs a number")
    return ptz.preset(body.preset_action, body.preset)


@router.post(
    "/devices/{device_id}/channels/{channel_id}/ptz", dependencies=[require_roles(*HUMANS)]
)
async def ptz_control(
    device_id: str,
    channel_id: str,
    body: PtzIn,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
) -> dict[str, str]:
    try:
        command = ptz_command(body)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    await _check(caller, session, device_id, channel_id)
    try:
        await _server(services).ptz(device_id, channel_id, command)
    except (SipError, QueryError) as exc:
        raise _sip_failure(exc) from None
    return {"command": command}


class ControlIn(BaseModel):
    action: Literal["record_start", "record_stop", "guard", "unguard", "reset_alarm", "reboot"]
    channel_id: str | None = None  # record start/stop act on one channel (default: the device)


@router.post("/devices/{device_id}/control", dependencies=[require_roles(*STAFF)])
async def device_control(
    device_id: str, body: ControlIn, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> dict[str, str]:
    """DeviceControl other than PTZ: recording, arming, alarm reset, reboot (staff only)."""
    await _check(caller, session, device_id, body.channel_id)
    sip = _server(services)
    try:
        if body.action in ("record_start", "record_stop"):
            target = body.channel_id or device_id
            await sip.record_control(device_id, target, body.action == "record_start")
        elif body.action in ("guard", "unguard"):
            await sip.guard_control(device_id, body.action == "guard")
        elif body.action == "reset_alarm":
            await sip.reset_alarm(device_id)
        else:
            await sip.reboot(device_id)
    except (SipError, QueryError) as exc:
        raise _sip_failure(exc) from None
    return {"action": body.action}
