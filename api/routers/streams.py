"""Live streams pulled by the media hub: statistics, and starting/stopping a pull by hand.

Cameras are scoped through their device's organisation, like devices; a camera is its
channel ID plus, when several of the caller's devices list that ID, ``?device_id=``.
"""

from __future__ import annotations

from typing import Annotated, Any

from anyio import from_thread
from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel

from sip.channel_ref import ChannelRef

from ..channel_scope import DeviceQuery, visible_camera, visible_refs
from ..deps import HUMANS, STAFF, CallerDep, ServicesDep, SessionDep, require_roles

router = APIRouter(prefix="/api/streams", tags=["streams"])


class ConsumerOut(BaseModel):
    name: str
    pending: int
    dropped: int


class StreamOut(BaseModel):
    channel_id: str
    state: str  # idle, no-sip, inviting, receiving, lost, closed
    mode: str = "Play"
    device_id: str | None = None
    transport: str | None = None
    port: int | None = None
    ssrc: str | None = None
    codec: str | None = None
    resolution: list[int] | None = None
    bitrate_bps: int = 0
    fps: float = 0.0
    packets: int = 0
    bytes: int = 0
    lost: int = 0
    loss_pct: float = 0.0
    duplicates: int = 0
    late: int = 0
    foreign_ssrc: int = 0
    frames: int = 0
    keyframes: int = 0
    gaps: int = 0
    last_keyframe_at: float | None = None
    attempts: int = 0
    last_error: str = ""
    consumers: list[ConsumerOut] = []


class PullOut(BaseModel):
    channel_id: str
    device_id: str
    changed: bool  # False when the pull was already in the requested state


def _hub(services: Any) -> Any:
    if services.media is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "media hub is not running")
    return services.media


def _visible(
    channel_id: str, caller: CallerDep, session: SessionDep, device_id: DeviceQuery = None
) -> ChannelRef:
    return visible_camera(caller, session, channel_id, device_id)


VisibleCamera = Annotated[ChannelRef, Depends(_visible)]


def _out(hub: Any, camera: ChannelRef) -> StreamOut:
    stats = from_thread.run_sync(hub.stats, camera)  # read on the hub's event loop
    if stats is None:
        return StreamOut(channel_id=camera.channel_id, device_id=camera.device_id, state="idle")
    return StreamOut(**stats)


@router.get("", response_model=list[StreamOut], dependencies=[require_roles(*HUMANS)])
def list_streams(caller: CallerDep, session: SessionDep, services: ServicesDep) -> list[StreamOut]:
    hub = _hub(services)
    active = from_thread.run_sync(hub.channels)
    visible = visible_refs(caller, session, active)
    return [_out(hub, c) for c in active if c in visible]


@router.get("/{channel_id}", response_model=StreamOut, dependencies=[require_roles(*HUMANS)])
def get_stream(channel_id: str, camera: VisibleCamera, services: ServicesDep) -> StreamOut:
    return _out(_hub(services), camera)


@router.post("/{channel_id}/start", response_model=PullOut, dependencies=[require_roles(*STAFF)])
async def start_pull(channel_id: str, camera: VisibleCamera, services: ServicesDep) -> PullOut:
    changed = _hub(services).hold(camera)
    return PullOut(channel_id=camera.channel_id, device_id=camera.device_id, changed=changed)


@router.post("/{channel_id}/stop", response_model=PullOut, dependencies=[require_roles(*STAFF)])
async def stop_pull(channel_id: str, camera: VisibleCamera, services: ServicesDep) -> PullOut:
    changed = _hub(services).release(camera)
    return PullOut(channel_id=camera.channel_id, device_id=camera.device_id, changed=changed)
