"""Sensor gateways of an enterprise: a DCS/GDS/PLC gateway, an MQTT broker or an HTTP push
client.  The config is checked against its protocol before it is stored, so a typo is a 422
now rather than a silent gap in the data later.

An ``http_push`` gateway gets an identification code and a 256-bit key (spec/sensors.md §2,
软件接口方式); both are shown once, in the creation (or ``rotate-key``) answer, never again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from anyio import from_thread
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.sensor_models import GatewayProtocol, Sensor, SensorGateway
from vms.ingest.gateway_config import validate_gateway_config
from vms.ingest.push import new_ident_code, new_key
from vms.services import Services

from ..deps import HUMANS, Caller, CallerDep, ServicesDep, SessionDep, require_roles, under_org
from ..sensor_access import WRITERS, invalid, reload_ingest, site_org, visible_row

router = APIRouter(prefix="/api/gateways", tags=["sensors"])

SECRET_FIELDS = ("password",)  # config fields never shown (MQTT, OPC UA)
MASK = "********"  # shown instead; sent back unchanged it keeps the stored value
UPDATED = "gateway.updated"  # bus event after every change (collectors reconnect on it)


class GatewayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    org_id: int | None = None  # empty → the caller's own enterprise
    name: str = Field(min_length=1, max_length=200)
    protocol: GatewayProtocol
    config: dict[str, Any] = {}
    enabled: bool = True


class GatewayPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    config: dict[str, Any] | None = None
    enabled: bool | None = None


class GatewayOut(BaseModel):
    id: int
    org_id: int
    name: str
    protocol: GatewayProtocol
    config: dict[str, Any]
    enabled: bool
    has_key: bool  # http_push: a key has been issued (the key itself is never shown again)
    online: bool
    last_seen_at: datetime | None
    last_error: str
    points: int
    created_at: datetime
    updated_at: datetime


class PushCredentials(BaseModel):
    """Give these to the enterprise once; the platform keeps the key and never shows it again."""

    ident_code: str
    key: str  # base64 of 32 bytes: AES-256-GCM, see vms/ingest/push.py


class GatewayCreated(GatewayOut):
    credentials: PushCredentials | None = None


def _masked(config: dict[str, Any]) -> dict[str, Any]:
    return {k: (MASK if k in SECRET_FIELDS and v else v) for k, v in (config or {}).items()}


def to_out(gw: SensorGateway, points: int, services: Services) -> GatewayOut:
    online = gw.online
    if gw.protocol == GatewayProtocol.http_push:
        # no connection to watch: a push client is online while it keeps pushing
        limit = datetime.now(UTC) - timedelta(seconds=services.settings.ingest.offline_after_s)
        online = gw.last_seen_at is not None and gw.last_seen_at >= limit
    return GatewayOut(
        id=gw.id,
        org_id=gw.org_id,
        name=gw.name,
        protocol=gw.protocol,
        config=_masked(gw.config),
        enabled=gw.enabled,
        has_key=bool(gw.secret),
        online=online,
        last_seen_at=gw.last_seen_at,
        last_error=gw.last_error,
        points=points,
        created_at=gw.created_at,
        updated_at=gw.updated_at,
    )


def _point_counts(session: Session, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    rows = session.execute(
        select(Sensor.gateway_id, func.count())
        .where(Sensor.gateway_id.in_(ids))
        .group_by(Sensor.gateway_id)
    )
    return dict(rows.all())  # type: ignore[arg-type]


def _checked_config(protocol: GatewayProtocol, config: dict[str, Any]) -> dict[str, Any]:
    try:
        return validate_gateway_config(protocol, config)
    except ValueError as exc:
        raise invalid([("config", str(exc))]) from None


def _changed(services: Services, gw: SensorGateway, session: Session, change: str) -> None:
    session.commit()  # before the reload and the event: both re-read the database
    reload_ingest(services)
    data = {"gateway_id": gw.id, "org_id": gw.org_id, "change": change}
    from_thread.run_sync(lambda: services.events.publish(UPDATED, **data))


def visible_gateway(caller: Caller, session: Session, gateway_id: int) -> SensorGateway:
    return visible_row(caller, session, SensorGateway, gateway_id, "gateway")


@router.get("", response_model=list[GatewayOut], dependencies=[require_roles(*HUMANS)])
def list_gateways(
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    org_id: int | None = Query(None, description="an organisation and everything under it"),
    protocol: GatewayProtocol | None = None,
    limit: int = Query(500, ge=1, le=5000),
    offset: int = Query(0, ge=0),
) -> list[GatewayOut]:
    stmt = caller.scope(select(SensorGateway), SensorGateway.org_id)
    stmt = under_org(caller, session, stmt, SensorGateway.org_id, org_id)
    if protocol is not None:
        stmt = stmt.where(SensorGateway.protocol == protocol)
    rows = list(session.scalars(stmt.order_by(SensorGateway.id).limit(limit).offset(offset)))
    counts = _point_counts(session, [g.id for g in rows])
    return [to_out(g, counts.get(g.id, 0), services) for g in rows]


@router.post(
    "", response_model=GatewayCreated, status_code=201, dependencies=[require_roles(*WRITERS)]
)
def create_gateway(
    body: GatewayIn, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> GatewayCreated:
    org = site_org(caller, session, body.org_id)
    gw = SensorGateway(
        org_id=org.id,
        name=body.name,
        protocol=body.protocol,
        config=_checked_config(body.protocol, body.config),
        enabled=body.enabled,
    )
    credentials = None
    if body.protocol == GatewayProtocol.http_push:
        credentials = PushCredentials(ident_code=new_ident_code(), key=new_key())
        gw.ident_code, gw.secret = credentials.ident_code, credentials.key
    session.add(gw)
    session.flush()
    _changed(services, gw, session, "created")
    return GatewayCreated(**to_out(gw, 0, services).model_dump(), credentials=credentials)


@router.get("/{gateway_id}", response_model=GatewayOut, dependencies=[require_roles(*HUMANS)])
def get_gateway(
    gateway_id: int, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> GatewayOut:
    gw = visible_gateway(caller, session, gateway_id)
    return to_out(gw, _point_counts(session, [gw.id]).get(gw.id, 0), services)


@router.patch("/{gateway_id}", response_model=GatewayOut, dependencies=[require_roles(*WRITERS)])
def patch_gateway(
    gateway_id: int,
    body: GatewayPatch,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
) -> GatewayOut:
    """Name, enabled, or the whole config (secret fields sent back as the mask are kept)."""
    gw = visible_gateway(caller, session, gateway_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("config") is not None:
        config = dict(changes["config"])
        for name in SECRET_FIELDS:
            if config.get(name) == MASK:
                config[name] = (gw.config or {}).get(name, "")
        gw.config = _checked_config(gw.protocol, config)
    for name in ("name", "enabled"):
        if changes.get(name) is not None:
            setattr(gw, name, changes[name])
    _changed(services, gw, session, "updated")
    return to_out(gw, _point_counts(session, [gw.id]).get(gw.id, 0), services)


@router.post(
    "/{gateway_id}/rotate-key",
    response_model=PushCredentials,
    dependencies=[require_roles(*WRITERS)],
)
def rotate_key(
    gateway_id: int, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> PushCredentials:
    """A new key for a push gateway (same identification code); the old key stops at once."""
    gw = visible_gateway(caller, session, gateway_id)
    if gw.protocol != GatewayProtocol.http_push:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"gateway {gateway_id} is {gw.protocol.value}: it has no key"
        )
    if not gw.ident_code:
        gw.ident_code = new_ident_code()
    gw.secret = new_key()
    _changed(services, gw, session, "key")
    return PushCredentials(ident_code=gw.ident_code, key=gw.secret)


@router.delete("/{gateway_id}", status_code=204, dependencies=[require_roles(*WRITERS)])
def delete_gateway(
    gateway_id: int, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> None:
    """Its points stay (with their history), detached from any gateway."""
    gw = visible_gateway(caller, session, gateway_id)
    session.delete(gw)
    session.flush()
    _changed(services, gw, session, "deleted")
