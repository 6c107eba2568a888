"""Device configuration, PTZ state and SD cards over GB28181 (ConfigDownload / DeviceConfig,
PresetQuery, and the GB/T 28181-2022 queries and controls).  Scoped like ``/api/sip``: a
device the caller cannot see is a 404; a device that does not answer (a 2016 device asked a
2022 question, usually) is a 504.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from sip import manscdp_2022 as m22
from sip.device_config import CONFIG_TYPES, BasicParam
from sip.queries import QueryError
from sip.server import SipError

from ..deps import HUMANS, STAFF, CallerDep, ServicesDep, SessionDep, require_roles
from .sip import _check, _server, _sip_failure

router = APIRouter(prefix="/api/sip", tags=["sip"])
CHANNEL = "/devices/{device_id}/channels/{channel_id}"


class BasicParamIn(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=64)
    expiration: int | None = Field(None, ge=60, le=86400, description="registration lifetime, s")
    heartbeat_interval: int | None = Field(None, ge=5, le=3600, description="keepalive period, s")
    heartbeat_count: int | None = Field(None, ge=1, le=100, description="missed keepalives")


class HomePositionIn(BaseModel):
    enabled: bool
    preset_index: int | None = Field(None, ge=1, le=255)
    reset_time: int | None = Field(None, ge=1, le=86400, description="idle seconds before return")


class PtzPreciseIn(BaseModel):
    pan: float | None = Field(None, ge=0, le=360, description="degrees")
    tilt: float | None = Field(None, ge=-90, le=90, description="degrees")
    zoom: float | None = Field(None, ge=1, description="zoom factor")


def _extended(services: Any) -> Any:
    return _server(services).extended


async def _run(coro: Any) -> Any:
    try:
        return await coro
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    except (SipError, QueryError) as exc:
        raise _sip_failure(exc) from None


@router.get("/devices/{device_id}/config", dependencies=[require_roles(*HUMANS)])
async def config_download(
    device_id: str,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    types: list[str] = Query(["BasicParam"], description=f"any of {', '.join(CONFIG_TYPES)}"),
) -> dict[str, Any]:
    """ConfigDownload: the device's configuration blocks."""
    await _check(caller, session, device_id, None)
    return asdict(await _run(_extended(services).config_download(device_id, types)))


@router.put("/devices/{device_id}/config/basic", dependencies=[require_roles(*STAFF)])
async def configure_basic(
    device_id: str,
    body: BasicParamIn,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
) -> dict[str, str]:
    """DeviceConfig BasicParam: name, registration lifetime, heartbeat (staff only)."""
    if not body.model_dump(exclude_none=True):
        raise HTTPException(422, "nothing to configure")
    await _check(caller, session, device_id, None)
    basic = BasicParam(
        body.name or "", body.expiration, body.heartbeat_interval, body.heartbeat_count
    )
    result = await _run(_extended(services).configure_basic(device_id, basic))
    if result != "OK":
        raise HTTPException(502, f"the device refused the configuration ({result})")
    return {"result": result}


@router.get(f"{CHANNEL}/presets", dependencies=[require_roles(*HUMANS)])
async def presets(
    device_id: str, channel_id: str, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> list[dict[str, Any]]:
    await _check(caller, session, device_id, channel_id)
    return [asdict(p) for p in await _run(_extended(services).presets(device_id, channel_id))]


@router.get(f"{CHANNEL}/home-position", dependencies=[require_roles(*HUMANS)])
async def home_position(
    device_id: str, channel_id: str, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """HomePositionQuery (2022): the camera's 看守位."""
    await _check(caller, session, device_id, channel_id)
    return asdict(await _run(_extended(services).home_position(device_id, channel_id)))


@router.put(f"{CHANNEL}/home-position", dependencies=[require_roles(*HUMANS)])
async def set_home_position(
    device_id: str,
    channel_id: str,
    body: HomePositionIn,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
) -> dict[str, Any]:
    await _check(caller, session, device_id, channel_id)
    home = m22.HomePosition(body.enabled, body.preset_index, body.reset_time)
    await _run(_extended(services).set_home_position(device_id, channel_id, home))
    return asdict(home)


@router.get(f"{CHANNEL}/cruise-tracks", dependencies=[require_roles(*HUMANS)])
async def cruise_tracks(
    device_id: str, channel_id: str, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> list[dict[str, Any]]:
    """CruiseTrackListQuery (2022)."""
    await _check(caller, session, device_id, channel_id)
    tracks = await _run(_extended(services).cruise_tracks(device_id, channel_id))
    return [asdict(t) for t in tracks]


@router.get(f"{CHANNEL}/cruise-tracks/{{number}}", dependencies=[require_roles(*HUMANS)])
async def cruise_track(
    device_id: str,
    channel_id: str,
    number: int,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
) -> dict[str, Any]:
    """CruiseTrackQuery (2022): a track's presets, stay times and speeds."""
    await _check(caller, session, device_id, channel_id)
    return asdict(await _run(_extended(services).cruise_track(device_id, channel_id, number)))


@router.get(f"{CHANNEL}/ptz-position", dependencies=[require_roles(*HUMANS)])
async def ptz_position(
    device_id: str, channel_id: str, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """PTZPosition (2022): pan, tilt, zoom and field of view."""
    await _check(caller, session, device_id, channel_id)
    return asdict(await _run(_extended(services).ptz_position(device_id, channel_id)))


@router.post(f"{CHANNEL}/ptz-position", dependencies=[require_roles(*HUMANS)])
async def ptz_precise(
    device_id: str,
    channel_id: str,
    body: PtzPreciseIn,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
) -> dict[str, Any]:
    """PTZPreciseCtrl (2022): point the camera at absolute angles."""
    await _check(caller, session, device_id, channel_id)
    ext = _extended(services)
    await _run(ext.ptz_precise(device_id, channel_id, body.pan, body.tilt, body.zoom))
    return body.model_dump()


@router.get("/devices/{device_id}/sd-cards", dependencies=[require_roles(*HUMANS)])
async def sd_cards(
    device_id: str, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> list[dict[str, Any]]:
    """SDCardStatus (2022)."""
    await _check(caller, session, device_id, None)
    return [asdict(c) for c in await _run(_extended(services).sd_cards(device_id))]


@router.post("/devices/{device_id}/sd-cards/{index}/format", dependencies=[require_roles(*STAFF)])
async def format_sd_card(
    device_id: str, index: int, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> dict[str, int]:
    """FormatSDCard (2022), staff only: the card's recordings are lost."""
    await _check(caller, session, device_id, None)
    await _run(_extended(services).format_sd_card(device_id, index))
    return {"formatting": index}
