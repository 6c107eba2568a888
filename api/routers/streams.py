"""Live streams pulled by the media hub: statistics, and starting/stopping a pull by hand.

Channels are scoped through their device's organisation, like devices.
"""

from __future__ import annotations

from typing import Annotated, Any

from anyio import from_thread
from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel
from sqlalchemy import select

from storage.models import Channel, Device

from ..deps import HUMANS, STAFF, CallerDep, ServicesDep, SessionDep, require_roles
from .devices import visible_channel

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
    changed: bool  # False when the pull was already in the requested state


def _hub(services: Any) -> Any:
    if services.media is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "media hub is not running")
    return services.media


def _visible(channel_id: str, caller: CallerDep, session: SessionDep) -> Channel:
    return visible_channel(caller, session, channel_id)


VisibleChannel = Annotated[Channel, Depends(_visible)]


def _out(hub: Any, channel_id: str) -> StreamOut:
    stats = from_thread.run_sync(hub.stats, channel_id)  # read on the hub's event loop
    if stats is None:
        return StreamOut(channel_id=channel_id, state="idle")
    return StreamOut(**stats)


@router.get("", response_model=list[StreamOut], dependencies=[require_roles(*HUMANS)])
def list_streams(caller: CallerDep, session: SessionDep, services: ServicesDep) -> list[StreamOut]:
    hub = _hub(services)
    active = from_thread.run_sync(hub.channels)
    if not active:
        return []
    stmt = caller.scope(
        select(Channel.channel_id).join(Device, Channel.device_pk == Device.id), Device.org_id
    ).where(Channel.channel_id.in_(active))
    visible = set(session.scalars(stmt))
    return [_out(hub, c) for c in active if c in visible]


@router.get("/{channel_id}", response_model=StreamOut, dependencies=[require_roles(*HUMANS)])
def get_stream(channel_id: str, _: VisibleChannel, services: ServicesDep) -> StreamOut:
    return _out(_hub(services), channel_id)


@router.post("/{channel_id}/start", response_model=PullOut, dependencies=[require_roles(*STAFF)])
async def start_pull(channel_id: str, _: VisibleChannel, services: ServicesDep) -> PullOut:
    return PullOut(channel_id=channel_id, changed=_hub(services).hold(channel_id))


@router.post("/{channel_id}/stop", response_model=PullOut, dependencies=[require_roles(*STAFF)])
async def stop_pull(channel_id: str, _: VisibleChannel, services: ServicesDep) -> PullOut:
    return PullOut(channel_id=channel_id, changed=_hub(services).release(channel_id))
