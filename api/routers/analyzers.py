"""Analysis per camera: achieved fps and drops, and the channel's analysis config (GET/PUT).

Scoped by the organisation of the channel's device; the config is validated with the pydantic
models of ``analyzers.config`` and against the camera's profile before it is stored or applied.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from analyzers.catalog import TABLES
from analyzers.config import AnalysisConfig
from analyzers.engine import ConfigRejected, check_config
from analyzers.manifest import ManifestError, ModelMissing
from storage.models import Channel, Device
from vms.analyzer_component import profile_of

from ..deps import HUMANS, Caller, CallerDep, ServicesDep, require_roles
from .devices import visible_channel

router = APIRouter(prefix="/api/analyzers", tags=["analyzers"])


class ChannelAnalysisOut(BaseModel):
    channel_id: str
    profile: str
    codes: dict[str, str]  # rule → ALARM_TYPE in this camera's profile
    config: dict[str, Any]
    running: bool
    stats: dict[str, Any] | None = None


async def _channel(services: Any, caller: Caller, channel_id: str) -> tuple[int, str]:
    """The visible camera's row id and the alarm profile of its organisation."""

    def query(s: Session) -> tuple[int, str]:
        channel = visible_channel(caller, s, channel_id)
        org = channel.device.org
        return channel.id, profile_of(org.kind if org is not None else None)

    return await services.db.run(query)


def _out(services: Any, channel_id: str, profile: str, raw: dict[str, Any]) -> ChannelAnalysisOut:
    pool = services.analyzers
    stats = pool.stats().get(channel_id) if pool is not None else None
    return ChannelAnalysisOut(
        channel_id=channel_id,
        profile=profile,
        codes={rule: t.code for rule, t in TABLES[profile].items()},
        config=raw,
        running=stats is not None,
        stats=stats,
    )


@router.get("/stats", dependencies=[require_roles(*HUMANS)])
async def analysis_stats(caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    """Per camera: achieved analysis fps, frames analysed, drops (queue, stale), gated, alarms."""
    pool = services.analyzers
    if pool is None:
        return {"running": False, "providers": [], "channels": {}}

    def visible(s: Session) -> set[str]:
        stmt = select(Channel.channel_id).join(Device, Channel.device_pk == Device.id)
        return set(s.scalars(caller.scope(stmt, Device.org_id)))

    allowed = await services.db.run(visible)
    channels = {cid: st for cid, st in pool.stats().items() if cid in allowed}
    return {"running": True, "providers": pool.providers, "channels": channels}


@router.get(
    "/channels/{channel_id}",
    response_model=ChannelAnalysisOut,
    dependencies=[require_roles(*HUMANS)],
)
async def get_analysis(channel_id: str, caller: CallerDep, services: ServicesDep):
    pk, profile = await _channel(services, caller, channel_id)
    raw = await services.db.run(lambda s: dict(s.get(Channel, pk).analysis or {}))
    return _out(services, channel_id, profile, raw)


@router.put(
    "/channels/{channel_id}",
    response_model=ChannelAnalysisOut,
    dependencies=[require_roles(*HUMANS)],
)
async def put_analysis(
    channel_id: str, config: AnalysisConfig, caller: CallerDep, services: ServicesDep
):
    """Validate, store and apply a camera's analysis config; 422 names what is wrong."""
    pk, profile = await _channel(services, caller, channel_id)
    try:
        check_config(profile, config)
        pool = services.analyzers
        if pool is not None and config.enabled:
            pool.model_specs(config)  # every model the rules need is built and intact
    except (ConfigRejected, ModelMissing, ManifestError) as exc:
        return JSONResponse(
            {"detail": "invalid analysis config", "errors": [{"field": "body", "error": str(exc)}]},
            status_code=422,
        )
    raw = config.model_dump(mode="json")

    def save(s: Session) -> None:
        s.get(Channel, pk).analysis = raw

    await services.db.run(save)
    if services.analyzers is not None:
        await services.analyzers.configure(channel_id, profile, config)
    return _out(services, channel_id, profile, raw)
