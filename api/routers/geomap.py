"""The map page's data in one answer: the tile source set for this node, and the caller's
cameras, sensor points, installations and active alarms with their WGS-84 positions.

One request instead of one per device, scoped like every list (the caller's organisation
subtree); a position that is missing or 0/0 (what many NVRs report when none was set) is sent
as null so that the page lists the thing aside rather than placing it off the coast of Africa.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from storage.models import Alarm, Channel, Device
from storage.sensor_models import Installation, Sensor
from vms.alarms import codes
from vms.alarms.service import camera_device

from ..deps import HUMANS, CallerDep, SessionDep, require_roles, under_org

router = APIRouter(prefix="/api/map", tags=["map"])


class MapCamera(BaseModel):
    key: str  # "device/channel", as the web UI names a camera
    device_id: str
    channel_id: str
    name: str
    org_id: int | None
    online: bool
    longitude: float | None
    latitude: float | None


class MapSensor(BaseModel):
    id: int
    tag: str
    name: str
    kind: str
    org_id: int
    installation_id: int | None
    online: bool
    level: str  # the current warning level, "" when none
    longitude: float | None
    latitude: float | None
    from_installation: bool  # no position of its own: placed where its installation is


class MapInstallation(BaseModel):
    id: int
    name: str
    kind: str
    org_id: int
    longitude: float | None
    latitude: float | None


class MapAlarm(BaseModel):
    alarm_id: str
    camera: str  # the camera's key, "" when the camera was deleted
    video_code: str
    type_name: str
    rule: str
    raised_at: datetime
    handling: str
    org_id: int | None
    longitude: float | None  # the camera's position
    latitude: float | None


class MapOut(BaseModel):
    tile_url: str  # "" → no tiles: the page draws the points on a plain plane
    tile_attribution: str
    cameras: list[MapCamera]
    sensors: list[MapSensor]
    installations: list[MapInstallation]
    alarms: list[MapAlarm]


Position = tuple[float | None, float | None]


def position(longitude: float | None, latitude: float | None) -> Position:
    """A usable WGS-84 position, or (None, None): missing, 0/0 or out of range."""
    if longitude is None or latitude is None:
        return None, None
    if longitude == 0 and latitude == 0:
        return None, None
    if not (-180 <= longitude <= 180 and -90 <= latitude <= 90):
        return None, None
    return longitude, latitude


@router.get("", response_model=MapOut, dependencies=[require_roles(*HUMANS)])
def map_data(
    caller: CallerDep,
    session: SessionDep,
    request: Request,
    org_id: int | None = None,
    alarms: Literal["active", "none"] = "active",
    limit: int = Query(5000, ge=1, le=20000),
) -> MapOut:
    """Everything the caller may see (``org_id``: that organisation's subtree only)."""
    server = request.app.state.services.settings.server
    stmt = caller.scope(select(Channel).join(Channel.device), Device.org_id)
    stmt = under_org(caller, session, stmt, Device.org_id, org_id)
    channels = session.scalars(
        stmt.options(selectinload(Channel.device))
        .order_by(Device.device_id, Channel.channel_id)
        .limit(limit)
    )
    cameras: list[MapCamera] = []
    located: dict[int, Position] = {}
    for ch in channels:
        lon, lat = located[ch.id] = position(ch.longitude, ch.latitude)
        cameras.append(
            MapCamera(
                key=f"{ch.device.device_id}/{ch.channel_id}",
                device_id=ch.device.device_id,
                channel_id=ch.channel_id,
                name=ch.name,
                org_id=ch.device.org_id,
                online=bool(ch.device.online) and ch.status.upper() == "ON",
                longitude=lon,
                latitude=lat,
            )
        )
    inst_stmt = under_org(
        caller, session, caller.scope(select(Installation), Installation.org_id),
        Installation.org_id, org_id,
    )  # fmt: skip
    installations = list(session.scalars(inst_stmt.order_by(Installation.id).limit(limit)))
    places = {i.id: position(i.longitude, i.latitude) for i in installations}
    sensor_stmt = under_org(
        caller, session, caller.scope(select(Sensor), Sensor.org_id), Sensor.org_id, org_id
    )
    sensors: list[MapSensor] = []
    for s in session.scalars(sensor_stmt.order_by(Sensor.org_id, Sensor.tag).limit(limit)):
        lon, lat = position(s.longitude, s.latitude)
        inherited = lon is None and s.installation_id in places
        if inherited:
            lon, lat = places[s.installation_id]  # type: ignore[index]
        sensors.append(
            MapSensor(
                id=s.id,
                tag=s.tag,
                name=s.name,
                kind=s.kind,
                org_id=s.org_id,
                installation_id=s.installation_id,
                online=s.online,
                level=s.level,
                longitude=lon,
                latitude=lat,
                from_installation=inherited and lon is not None,
            )
        )
    found: list[MapAlarm] = []
    if alarms == "active":
        alarm_stmt = caller.scope(select(Alarm).where(Alarm.active.is_(True)), Alarm.org_id)
        alarm_stmt = under_org(caller, session, alarm_stmt, Alarm.org_id, org_id)
        rows = session.scalars(
            alarm_stmt.options(selectinload(Alarm.channel).selectinload(Channel.device))
            .order_by(Alarm.raised_at.desc(), Alarm.id.desc())
            .limit(limit)
        )
        for a in rows:
            ch = a.channel
            lon, lat = (None, None) if ch is None else located.get(ch.id, position(
                ch.longitude, ch.latitude
            ))  # fmt: skip
            device = camera_device(a)
            found.append(
                MapAlarm(
                    alarm_id=a.alarm_id,
                    camera=f"{device}/{ch.channel_id}" if ch is not None and device else "",
                    video_code=a.video_code,
                    type_name=codes.code_name(a.profile.value, a.alarm_type),
                    rule=a.rule,
                    raised_at=a.raised_at,
                    handling=a.handling.value,
                    org_id=a.org_id,
                    longitude=lon,
                    latitude=lat,
                )
            )
    return MapOut(
        tile_url=server.map_tile_url,
        tile_attribution=server.map_tile_attribution,
        cameras=cameras,
        sensors=sensors,
        installations=[
            MapInstallation(
                id=i.id,
                name=i.name,
                kind=i.kind.value,
                org_id=i.org_id,
                longitude=places[i.id][0],
                latitude=places[i.id][1],
            )
            for i in installations
        ],
        alarms=found,
    )
