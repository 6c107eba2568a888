"""Device alarms (GB/T 28181 MESSAGE/NOTIFY Alarm), positions and subscription state.

Scoped like every other resource: a caller sees the alarms of devices in its organisation
subtree (as the device belonged when the alarm came), anything else is a 404.  Reset
sends DeviceControl ResetAlarm to the device with the ``<Info>`` of this alarm (its
AlarmMethod and AlarmType) and records who reset it once the device took the command.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy import Select, select
from starlette.concurrency import run_in_threadpool

from sip.queries import QueryError
from sip.server import SipError
from storage.device_alarm_models import DeviceAlarm, DevicePosition
from storage.models import Channel, Device
from vms import device_alarms

from ..deps import (
    HUMANS,
    Caller,
    CallerDep,
    ServicesDep,
    SessionDep,
    count_into,
    require_roles,
    under_org,
)
from .devices import visible_device

router = APIRouter(prefix="/api", tags=["device alarms"])


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _visible_alarm(caller: Caller, session: SessionDep, alarm_id: int) -> DeviceAlarm:
    row = session.scalar(
        caller.scope(select(DeviceAlarm).where(DeviceAlarm.id == alarm_id), DeviceAlarm.org_id)
    )
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"device alarm {alarm_id} not found")
    return row


def _channel_name(session: SessionDep, row: DeviceAlarm) -> str:
    if row.channel_pk is None:
        return ""
    return session.scalar(select(Channel.name).where(Channel.id == row.channel_pk)) or ""


@router.get("/device-alarms", dependencies=[require_roles(*HUMANS)])
def list_device_alarms(
    caller: CallerDep,
    session: SessionDep,
    response: Response,
    device_id: str | None = Query(None, max_length=20, description="the reporting device"),
    source_id: str | None = Query(None, max_length=20, description="the alarm's channel/input"),
    priority: int | None = Query(None, ge=1, le=4),
    method: int | None = Query(None, ge=1, le=7),
    alarm_type: int | None = Query(None, ge=0, le=999),
    reset: bool | None = Query(None, description="true: reset ones, false: not yet reset"),
    org_id: int | None = Query(None, description="an organisation and everything under it"),
    start: datetime | None = Query(None, description="received at or after (ISO 8601)"),
    end: datetime | None = Query(None, description="received before (ISO 8601)"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[dict[str, Any]]:
    """Newest first; the total matching count is in the ``X-Total-Count`` header."""
    stmt: Select[Any] = caller.scope(select(DeviceAlarm), DeviceAlarm.org_id)
    for column, value in (
        (DeviceAlarm.device_id, device_id),
        (DeviceAlarm.source_id, source_id),
        (DeviceAlarm.priority, priority),
        (DeviceAlarm.method, method),
        (DeviceAlarm.alarm_type, alarm_type),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if reset is not None:
        stmt = stmt.where(
            DeviceAlarm.reset_at.is_not(None) if reset else DeviceAlarm.reset_at.is_(None)
        )
    if start is not None:
        stmt = stmt.where(DeviceAlarm.received_at >= _aware(start))
    if end is not None:
        stmt = stmt.where(DeviceAlarm.received_at < _aware(end))
    stmt = under_org(caller, session, stmt, DeviceAlarm.org_id, org_id)
    count_into(session, stmt, response)
    rows = session.execute(
        stmt.add_columns(Channel.name)
        .outerjoin(Channel, Channel.id == DeviceAlarm.channel_pk)
        .order_by(DeviceAlarm.received_at.desc(), DeviceAlarm.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [device_alarms.as_dict(row, name or "") for row, name in rows]


@router.get("/device-alarms/{alarm_id}", dependencies=[require_roles(*HUMANS)])
def get_device_alarm(alarm_id: int, caller: CallerDep, session: SessionDep) -> dict[str, Any]:
    """One alarm, with the body the device sent."""
    row = _visible_alarm(caller, session, alarm_id)
    return {**device_alarms.as_dict(row, _channel_name(session, row)), "raw": row.raw}


@router.post("/device-alarms/{alarm_id}/reset", dependencies=[require_roles(*HUMANS)])
async def reset_device_alarm(
    alarm_id: int, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """ResetAlarm to the device, for this alarm's source, method and type (§A.2.3.1)."""

    def load() -> DeviceAlarm:
        row = _visible_alarm(caller, session, alarm_id)
        if row.device_pk is None:
            raise HTTPException(status.HTTP_409_CONFLICT, "the device is no longer registered")
        return row

    row = await run_in_threadpool(load)
    if services.sip is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "SIP service not running")
    try:
        await services.sip.reset_alarm(row.device_id, row.source_id, row.method, row.alarm_type)
    except SipError as exc:
        code = status.HTTP_409_CONFLICT if exc.status == 404 else status.HTTP_502_BAD_GATEWAY
        if exc.status == 408:
            code = status.HTTP_504_GATEWAY_TIMEOUT
        raise HTTPException(code, str(exc)) from None
    except QueryError as exc:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, str(exc)) from None

    def mark() -> dict[str, Any]:
        row.reset_at = datetime.now(UTC)
        row.reset_by = caller.user.id
        session.flush()
        return device_alarms.as_dict(row, _channel_name(session, row))

    out = await run_in_threadpool(mark)
    return out


@router.get("/device-positions", dependencies=[require_roles(*HUMANS)])
def list_positions(
    caller: CallerDep,
    session: SessionDep,
    response: Response,
    target_id: str | None = Query(None, max_length=20, description="a channel or device id"),
    device_id: str | None = Query(None, max_length=20, description="the reporting device"),
    start: datetime | None = Query(None, description="position time at or after"),
    end: datetime | None = Query(None, description="position time before"),
    limit: int = Query(500, ge=1, le=10000),
) -> list[dict[str, Any]]:
    """A track, oldest first (``X-Total-Count`` says how many match)."""
    stmt: Select[Any] = caller.scope(
        select(DevicePosition, Device.device_id).join(
            Device, Device.id == DevicePosition.device_pk
        ),
        Device.org_id,
    )
    if target_id is not None:
        stmt = stmt.where(DevicePosition.target_id == target_id)
    if device_id is not None:
        stmt = stmt.where(Device.device_id == device_id)
    if start is not None:
        stmt = stmt.where(DevicePosition.at >= _aware(start))
    if end is not None:
        stmt = stmt.where(DevicePosition.at < _aware(end))
    count_into(session, stmt, response)
    rows = session.execute(stmt.order_by(DevicePosition.at, DevicePosition.id).limit(limit))
    return [
        {
            "device_id": dev,
            "target_id": p.target_id,
            "at": p.at.isoformat(),
            "longitude": p.longitude,
            "latitude": p.latitude,
            "speed": p.speed,
            "direction": p.direction,
            "altitude": p.altitude,
        }
        for p, dev in rows
    ]


@router.get("/devices/{device_id}/subscriptions", dependencies=[require_roles(*HUMANS)])
async def device_subscriptions(
    device_id: str, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> list[dict[str, Any]]:
    """What this node holds subscribed on the device: kind, state, time left, NOTIFYs heard."""
    await run_in_threadpool(lambda: visible_device(caller, session, device_id))
    if services.sip is None:
        return []
    return services.sip.subscriptions.snapshot(device_id)
