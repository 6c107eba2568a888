"""Measurement points (位号) of an enterprise: CRUD with validation, the live values of every
visible point, and each point's event history.  Every change is applied to the readings path
at once (``services.ingest.reload()``), so a new threshold or tag counts from the next reading.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from storage.models import Organisation
from storage.sensor_models import Sensor, SensorEvent
from vms.ingest.points import SensorKind

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
from ..sensor_access import WRITERS, invalid, reload_ingest, site_org, visible_row
from ..sensor_points import (
    PointContext,
    PointFields,
    PointPatch,
    camera_codes,
    current_fields,
    parse_fields,
    store,
)

router = APIRouter(prefix="/api/sensors", tags=["sensors"])


class PointIn(PointFields):
    org_id: int | None = None  # empty → the caller's own enterprise


class PointOut(BaseModel):
    id: int
    org_id: int
    tag: str
    name: str
    kind: str
    unit: str
    range_min: float | None
    range_max: float | None
    thresholds: dict[str, float]
    levels: dict[str, str]
    source: dict[str, Any]
    gateway_id: int | None
    installation_id: int | None
    cameras: list[str]
    enabled: bool
    longitude: float | None
    latitude: float | None
    # live state
    online: bool
    last_reading_at: datetime | None
    last_value: float | None
    level: str
    fault: str
    slow: bool
    slow_count: int
    created_at: datetime
    updated_at: datetime


class LiveValue(BaseModel):
    id: int
    org_id: int
    tag: str
    name: str
    kind: str
    unit: str
    installation_id: int | None
    enabled: bool
    value: float | None
    last_reading_at: datetime | None
    level: str
    online: bool
    fault: str
    slow: bool


class EventOut(BaseModel):
    kind: str
    at: datetime
    detail: dict[str, Any]


LIVE_COLUMNS = (
    Sensor.id,
    Sensor.org_id,
    Sensor.tag,
    Sensor.name,
    Sensor.kind,
    Sensor.unit,
    Sensor.installation_id,
    Sensor.enabled,
    Sensor.last_value,
    Sensor.last_reading_at,
    Sensor.level,
    Sensor.online,
    Sensor.fault,
    Sensor.slow,
)
STATE_FIELDS = ("online", "level", "fault", "slow", "slow_count")


def to_out(row: Sensor, cameras: list[str], services: Any) -> PointOut:
    """The row, with the live state the ingest service holds now (the row lags one flush)."""
    data = {name: getattr(row, name) for name in PointOut.model_fields if name != "cameras"}
    data["cameras"] = cameras
    point = services.ingest.registry.by_pk.get(row.id) if services.ingest is not None else None
    if point is not None:
        data.update({k: getattr(point, k) for k in STATE_FIELDS})
        data["last_reading_at"] = point.last_at
        data["last_value"] = point.last_value
    return PointOut(**data)


def visible_sensor(caller: Caller, session: Session, sensor_id: int) -> Sensor:
    return visible_row(caller, session, Sensor, sensor_id, "sensor")


def _tag_taken(session: Session, org_id: int, tag: str, own: int | None = None) -> bool:
    stmt = select(Sensor.id).where(Sensor.org_id == org_id, Sensor.tag == tag)
    if own is not None:
        stmt = stmt.where(Sensor.id != own)
    return session.scalar(stmt) is not None


def _conflict(tag: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, f"tag {tag} already exists in this enterprise")


@router.get("/live", response_model=list[LiveValue], dependencies=[require_roles(*HUMANS)])
def live_values(
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    org_id: int | None = Query(None, description="an organisation and everything under it"),
) -> list[dict[str, Any]]:
    """Every visible point's latest value and state, for the live page (one query, then the
    ingest service's in-memory state, which is fresher than the rows)."""
    stmt = caller.scope(select(*LIVE_COLUMNS), Sensor.org_id)
    stmt = under_org(caller, session, stmt, Sensor.org_id, org_id)
    ingest = services.ingest
    registry = ingest.registry.by_pk if ingest is not None else {}
    out = []
    for row in session.execute(stmt.order_by(Sensor.org_id, Sensor.tag)):
        item = row._asdict()
        item["value"] = item.pop("last_value")
        point = registry.get(row.id)
        if point is not None:
            item.update(
                value=point.last_value,
                last_reading_at=point.last_at,
                level=point.level,
                online=point.online,
                fault=point.fault,
                slow=point.slow,
            )
        out.append(item)
    return out


@router.get("", response_model=list[PointOut], dependencies=[require_roles(*HUMANS)])
def list_sensors(
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    response: Response,
    org_id: int | None = Query(None, description="an organisation and everything under it"),
    installation_id: int | None = None,
    gateway_id: int | None = None,
    kind: SensorKind | None = None,
    enabled: bool | None = None,
    q: str | None = Query(None, max_length=64, description="part of the tag or name"),
    limit: int = Query(500, ge=1, le=5000),
    offset: int = Query(0, ge=0),
) -> list[PointOut]:
    """Ordered by enterprise and tag; the total matching count is in ``X-Total-Count``."""
    stmt = caller.scope(select(Sensor), Sensor.org_id)
    stmt = under_org(caller, session, stmt, Sensor.org_id, org_id)
    for col, value in (
        (Sensor.installation_id, installation_id),
        (Sensor.gateway_id, gateway_id),
        (Sensor.kind, kind.value if kind else None),
        (Sensor.enabled, enabled),
    ):
        if value is not None:
            stmt = stmt.where(col == value)
    if q:
        like = f"%{q}%"
        stmt = stmt.where(or_(Sensor.tag.ilike(like), Sensor.name.ilike(like)))
    count_into(session, stmt, response)
    rows = list(
        session.scalars(stmt.order_by(Sensor.org_id, Sensor.tag).limit(limit).offset(offset))
    )
    cams = camera_codes(session, [r.id for r in rows])
    return [to_out(r, cams.get(r.id, []), services) for r in rows]


@router.post("", response_model=PointOut, status_code=201, dependencies=[require_roles(*WRITERS)])
def create_sensor(
    body: PointIn, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> PointOut:
    org = site_org(caller, session, body.org_id)
    fields, errors = parse_fields(body.model_dump(exclude={"org_id"}))
    if fields is None:
        raise invalid(errors)
    checked, errors = PointContext(caller, session, org).check(fields)
    if checked is None:
        raise invalid(errors)
    if _tag_taken(session, org.id, fields.tag):
        raise _conflict(fields.tag)
    row = Sensor(org_id=org.id)
    store(row, checked)
    session.add(row)
    session.commit()
    reload_ingest(services)
    return to_out(row, fields.cameras, services)


@router.get("/{sensor_id}", response_model=PointOut, dependencies=[require_roles(*HUMANS)])
def get_sensor(
    sensor_id: int, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> PointOut:
    row = visible_sensor(caller, session, sensor_id)
    return to_out(row, camera_codes(session, [row.id]).get(row.id, []), services)


@router.patch("/{sensor_id}", response_model=PointOut, dependencies=[require_roles(*WRITERS)])
def patch_sensor(
    sensor_id: int,
    body: PointPatch,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
) -> PointOut:
    """Any field of the creation body but ``org_id``; the merged point is checked as a whole
    (``thresholds``, ``levels``, ``source`` and ``cameras`` are replaced, not merged)."""
    row = visible_sensor(caller, session, sensor_id)
    changes = body.model_dump(exclude_unset=True)
    merged = current_fields(row, camera_codes(session, [row.id]).get(row.id, []))
    if "kind" in changes and "unit" not in changes:
        merged["unit"] = None  # the new kind's usual unit
    merged.update(changes)
    fields, errors = parse_fields(merged)
    if fields is None:
        raise invalid(errors)
    org = session.get(Organisation, row.org_id)
    assert org is not None
    checked, errors = PointContext(caller, session, org).check(fields)
    if checked is None:
        raise invalid(errors)
    if fields.tag != row.tag and _tag_taken(session, row.org_id, fields.tag, own=row.id):
        raise _conflict(fields.tag)
    store(row, checked)
    session.commit()
    reload_ingest(services)
    return to_out(row, fields.cameras, services)


@router.delete("/{sensor_id}", status_code=204, dependencies=[require_roles(*WRITERS)])
def delete_sensor(
    sensor_id: int, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> None:
    """Deletes the point with its readings; to retire a point and keep its history, PATCH
    ``enabled`` to false instead."""
    session.delete(visible_sensor(caller, session, sensor_id))
    session.commit()
    reload_ingest(services)


@router.get(
    "/{sensor_id}/events", response_model=list[EventOut], dependencies=[require_roles(*HUMANS)]
)
def sensor_events(
    sensor_id: int,
    caller: CallerDep,
    session: SessionDep,
    limit: int = Query(200, ge=1, le=5000),
) -> list[SensorEvent]:
    """Online, offline, fault, recovered and slow (upload period exceeded), newest first."""
    row = visible_sensor(caller, session, sensor_id)
    stmt = (
        select(SensorEvent)
        .where(SensorEvent.sensor_pk == row.id)
        .order_by(SensorEvent.at.desc(), SensorEvent.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))
