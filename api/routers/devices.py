"""GB28181 devices and their channels, scoped to the caller's organisation subtree."""

from __future__ import annotations

import secrets

from anyio import from_thread
from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import JSONResponse
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from analyzers.config import AnalysisConfig
from analyzers.engine import ConfigRejected, check_config
from analyzers.manifest import ManifestError, ModelMissing
from storage.models import Alarm, Channel, Device, Organisation
from vms.analyzer_component import profile_of
from vms.uplink.identity import (
    channel_video_code,
    not_reportable_reason,
    reports_alarms,
    video_code_problem,
)

from ..channel_scope import camera_ref
from ..deps import (
    ADMIN,
    HUMANS,
    STAFF,
    Caller,
    CallerDep,
    ServicesDep,
    SessionDep,
    require_roles,
)
from ..schemas import ChannelOut, ChannelPatch, DeviceCreated, DeviceIn, DeviceOut, DevicePatch

router = APIRouter(prefix="/api/devices", tags=["devices"])


def visible_device(caller: Caller, session: SessionDep, device_id: str) -> Device:
    """The device with this GB id if the caller may see it; 404 otherwise (no existence leak)."""
    stmt = caller.scope(select(Device).where(Device.device_id == device_id), Device.org_id)
    device = session.scalar(stmt)
    if device is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {device_id} not found")
    return device


def _check_org(caller: Caller, session: SessionDep, org_id: int | None) -> None:
    if org_id is None:
        return
    org = session.get(Organisation, org_id)
    if org is None or not caller.sees_path(org.path):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"organisation {org_id} not found")


@router.get("", response_model=list[DeviceOut], dependencies=[require_roles(*HUMANS)])
def list_devices(
    caller: CallerDep,
    session: SessionDep,
    online: bool | None = None,
    limit: int = Query(500, ge=1, le=5000),
    offset: int = Query(0, ge=0),
) -> list[Device]:
    stmt = caller.scope(select(Device), Device.org_id).order_by(Device.device_id)
    if online is not None:
        stmt = stmt.where(Device.online == online)
    return list(session.scalars(stmt.limit(limit).offset(offset)))


@router.post(
    "", response_model=DeviceCreated, status_code=201, dependencies=[require_roles(*ADMIN)]
)
def add_device(body: DeviceIn, caller: CallerDep, session: SessionDep) -> Device:
    """A device without a password given gets a random one, in this answer only."""
    _check_org(caller, session, body.org_id)
    if body.org_id is None and caller.org_path is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "an organisation is required")
    device = Device(**body.model_dump())
    if not device.sip_password:
        device.sip_password = secrets.token_urlsafe(12)
    session.add(device)
    try:
        session.flush()
    except IntegrityError:
        raise HTTPException(status.HTTP_409_CONFLICT, "device id already registered") from None
    return device


@router.get("/{device_id}", response_model=DeviceOut, dependencies=[require_roles(*HUMANS)])
def get_device(device_id: str, caller: CallerDep, session: SessionDep) -> Device:
    return visible_device(caller, session, device_id)


@router.patch("/{device_id}", response_model=DeviceOut, dependencies=[require_roles(*STAFF)])
def patch_device(
    device_id: str, body: DevicePatch, caller: CallerDep, session: SessionDep
) -> Device:
    device = visible_device(caller, session, device_id)
    changes = body.model_dump(exclude_unset=True)
    if "org_id" in changes:
        if changes["org_id"] is None and caller.org_path is not None:
            # Moving a device out of every organisation would hide it from its own operators.
            raise HTTPException(status.HTTP_403_FORBIDDEN, "an organisation is required")
        _check_org(caller, session, changes["org_id"])
    for name, value in changes.items():
        setattr(device, name, value)
    return device


@router.delete("/{device_id}", status_code=204, dependencies=[require_roles(*ADMIN)])
def delete_device(device_id: str, caller: CallerDep, session: SessionDep) -> None:
    device = visible_device(caller, session, device_id)
    # Alarms outlive their camera (nothing is lost): detach them before the channels go.
    channel_pks = [c.id for c in device.channels]
    if channel_pks:
        session.execute(
            update(Alarm).where(Alarm.channel_pk.in_(channel_pks)).values(channel_pk=None)
        )
    session.delete(device)


@router.get(
    "/{device_id}/channels",
    response_model=list[ChannelOut],
    dependencies=[require_roles(*HUMANS)],
)
def list_channels(device_id: str, caller: CallerDep, session: SessionDep) -> list[ChannelOut]:
    device = visible_device(caller, session, device_id)
    return [channel_out(c) for c in sorted(device.channels, key=lambda c: c.channel_id)]


def channel_out(channel: Channel) -> ChannelOut:
    """The API shape, with the VIDEO_CODE the camera's alarms go upward with (or None)."""
    out = ChannelOut.model_validate(channel)
    out.video_code = channel_video_code(channel) or None
    return out


def video_code_refused(
    services: ServicesDep, caller: Caller, session: SessionDep, channel: Channel, changes: dict
) -> None:
    """Raise 422/409 for an ``uplink_video_code`` that is not the camera's provincial code
    (form, the site's 9-digit code, another camera's), and 422 for analysis that would raise
    alarms with no VIDEO_CODE to send them with while a Table 4 receiver is configured."""
    override: str | None = None
    if "uplink_video_code" in changes:
        if caller.role not in ADMIN:  # the identity the province files alarms under
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "only an administrator sets uplink_video_code"
            )
        override = changes["uplink_video_code"] = (changes["uplink_video_code"] or "").strip()
    if override:
        problem = video_code_problem(override, channel.device.org)
        if problem:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"uplink_video_code: {problem}"
            )
        taken = session.scalar(
            select(Channel)
            .where(Channel.id != channel.id)
            .where(
                or_(
                    Channel.uplink_video_code == override,
                    and_(Channel.channel_id == override, Channel.uplink_video_code == ""),
                )
            )
            .limit(1)
        )
        if taken is not None:
            org = taken.device.org
            whose = (  # named only to a caller who may see that camera
                f"camera {taken.device.device_id}/{taken.channel_id}'s"
                if caller.sees_path(org.path if org is not None else None)
                else "another camera's"
            )
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"VIDEO_CODE {override} is already {whose}"
            )
    if not any(r.table4_url for r in services.settings.uplink.receivers):
        return
    analysis = changes.get("analysis", channel.analysis)
    if reports_alarms(analysis) and {"analysis", "uplink_video_code"} & changes.keys():
        reason = not_reportable_reason(channel, override)
        if reason:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, reason)


@router.patch(
    "/{device_id}/channels/{channel_id}",
    response_model=ChannelOut,
    dependencies=[require_roles(*HUMANS)],
)
def patch_channel(
    device_id: str,
    channel_id: str,
    body: ChannelPatch,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
) -> ChannelOut:
    device = visible_device(caller, session, device_id)
    channel = next((c for c in device.channels if c.channel_id == channel_id), None)
    if channel is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"channel {channel_id} not found")
    changes = body.model_dump(exclude_unset=True)
    analysis: AnalysisConfig | None = None
    profile = profile_of(device.org.kind if device.org is not None else None)
    if "analysis" in changes:
        analysis = body.analysis or AnalysisConfig()
        rejected = analysis_rejected(services, profile, analysis)
        if rejected is not None:
            return rejected  # type: ignore[return-value]
        changes["analysis"] = analysis.model_dump(mode="json")
    video_code_refused(services, caller, session, channel, changes)
    for name, value in changes.items():
        setattr(channel, name, value)
    session.commit()  # before the event: listeners (the recorder) re-read the channel
    if analysis is not None and services.analysis is not None:
        camera = camera_ref(channel)
        from_thread.run(services.analysis.apply, camera, profile, analysis)
    from_thread.run_sync(
        lambda: services.events.publish(
            "channel.updated", device_id=device_id, channel_id=channel_id, fields=sorted(changes)
        )
    )
    return channel_out(channel)


def analysis_rejected(
    services: ServicesDep, profile: str, config: AnalysisConfig
) -> JSONResponse | None:
    """A 422 like the analyzer PUT's when the config cannot run on this camera, else None:
    a rule without a code in the camera's profile, or a model that is not built."""
    try:
        check_config(profile, config)
        pool = services.analyzers
        if pool is not None and config.enabled:
            pool.model_specs(config)
    except (ConfigRejected, ModelMissing, ManifestError) as exc:
        return JSONResponse(
            {
                "detail": "invalid analysis config",
                "errors": [{"field": "analysis", "error": str(exc)}],
            },
            status_code=422,
        )
    return None
