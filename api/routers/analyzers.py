"""Analysis per camera: achieved fps and drops, the channel's analysis config (GET/PUT), and
the camera's current picture (``snapshot.jpg``) that the web UI draws zones and lines on.

Scoped by the organisation of the channel's device; the config is validated with the pydantic
models of ``analyzers.config`` and against the camera's profile before it is stored or applied.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from analyzers.catalog import TABLES
from analyzers.config import AnalysisConfig
from analyzers.engine import ConfigRejected, check_config
from analyzers.manifest import ManifestError, ModelMissing
from sip.channel_ref import ChannelRef
from storage.models import Channel
from vms.alarms.images import encode_jpeg
from vms.analyzer_component import profile_of
from vms.uplink.identity import not_reportable_reason, reports_alarms
from vms.warning.snapshot import SnapshotError, grab_keyframe, keyframe_jpeg

from ..channel_scope import DeviceQuery, camera_ref, visible_channel, visible_refs
from ..deps import HUMANS, Caller, CallerDep, ServicesDep, require_roles

router = APIRouter(prefix="/api/analyzers", tags=["analyzers"])


class ChannelAnalysisOut(BaseModel):
    channel_id: str
    device_id: str
    profile: str
    codes: dict[str, str]  # rule → ALARM_TYPE in this camera's profile
    config: dict[str, Any]
    running: bool
    stats: dict[str, Any] | None = None


async def _channel(
    services: Any, caller: Caller, channel_id: str, device_id: str | None
) -> tuple[int, ChannelRef, str]:
    """The visible camera's row id, its ref and the alarm profile of its organisation."""

    def query(s: Session) -> tuple[int, ChannelRef, str]:
        channel = visible_channel(caller, s, channel_id, device_id)
        org = channel.device.org
        return channel.id, camera_ref(channel), profile_of(org.kind if org is not None else None)

    return await services.db.run(query)


def _out(
    services: Any, camera: ChannelRef, profile: str, raw: dict[str, Any]
) -> ChannelAnalysisOut:
    pool = services.analyzers
    stats = pool.stats().get(camera) if pool is not None else None
    return ChannelAnalysisOut(
        channel_id=camera.channel_id,
        device_id=camera.device_id,
        profile=profile,
        codes={rule: t.code for rule, t in TABLES[profile].items()},
        config=raw,
        running=stats is not None,
        stats=stats,
    )


@router.get("/stats", dependencies=[require_roles(*HUMANS)])
async def analysis_stats(caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    """Per camera (keyed ``device/channel``): achieved analysis fps, frames analysed, drops
    (queue, stale), gated, alarms."""
    pool = services.analyzers
    if pool is None:
        return {"running": False, "providers": [], "channels": {}}
    stats = pool.stats()
    allowed = await services.db.run(lambda s: visible_refs(caller, s, list(stats)))
    channels = {str(ref): st for ref, st in stats.items() if ref in allowed}
    return {"running": True, "providers": pool.providers, "channels": channels}


@router.get(
    "/channels/{channel_id}",
    response_model=ChannelAnalysisOut,
    dependencies=[require_roles(*HUMANS)],
)
async def get_analysis(
    channel_id: str, caller: CallerDep, services: ServicesDep, device_id: DeviceQuery = None
):
    pk, camera, profile = await _channel(services, caller, channel_id, device_id)
    raw = await services.db.run(lambda s: dict(s.get(Channel, pk).analysis or {}))
    return _out(services, camera, profile, raw)


@router.put(
    "/channels/{channel_id}",
    response_model=ChannelAnalysisOut,
    dependencies=[require_roles(*HUMANS)],
)
async def put_analysis(
    channel_id: str,
    config: AnalysisConfig,
    caller: CallerDep,
    services: ServicesDep,
    device_id: DeviceQuery = None,
):
    """Validate, store and apply a camera's analysis config; 422 names what is wrong."""
    pk, camera, profile = await _channel(services, caller, channel_id, device_id)
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

    def unreportable(s: Session) -> str:
        """Alarms it would raise could not go upward (no VIDEO_CODE): refused, not dropped."""
        table4 = any(r.table4_url for r in services.settings.uplink.receivers)
        if not table4 or not reports_alarms(raw):
            return ""
        return not_reportable_reason(s.get(Channel, pk))

    reason = await services.db.run(unreportable)
    if reason:
        return JSONResponse({"detail": reason}, status_code=422)

    def save(s: Session) -> None:
        s.get(Channel, pk).analysis = raw

    await services.db.run(save)
    if services.analysis is not None:
        await services.analysis.apply(camera, profile, config)
    return _out(services, camera, profile, raw)


@router.get(
    "/channels/{channel_id}/snapshot.jpg",
    dependencies=[require_roles(*HUMANS)],
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the camera's current picture"},
        503: {"description": "no picture now (no media hub, no keyframe in time); says why"},
    },
)
async def snapshot(
    channel_id: str, caller: CallerDep, services: ServicesDep, device_id: DeviceQuery = None
) -> Response:
    """The camera's current picture, for drawing zones and lines on (``?token=`` works, for
    an ``<img>``).  The analyzer's newest frame when the camera is analysed, else the next
    keyframe from the stream hub (which pulls the camera on demand), decoded in a thread."""
    _, camera, _ = await _channel(services, caller, channel_id, device_id)
    headers = {"Cache-Control": "no-store"}
    pool = services.analyzers
    frame = await pool.latest_frame(camera, 0.0) if pool is not None else None
    if frame is not None:
        data = await asyncio.to_thread(encode_jpeg, frame)
        return Response(data, media_type="image/jpeg", headers=headers)
    if services.media is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "media hub is not running")
    wait_s = services.settings.warning.snapshot_timeout_s
    try:
        unit = await grab_keyframe(services.media, camera, wait_s)
        data = await asyncio.to_thread(keyframe_jpeg, unit)
    except SnapshotError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"no picture from the camera: {exc}"
        ) from None
    return Response(data, media_type="image/jpeg", headers=headers)
