"""Which camera a request means, and whether the caller may see it: one rule for every route.

Routes name a camera by its 20-digit channel ID (``/api/.../{channel_id}``), with an
optional ``device_id`` (query or body) saying which device lists it.  The camera is looked
up among the cameras of the caller's organisation subtree only; when more than one of
those devices lists the ID, the answer is 409 naming them, never a guess.  What the route
then hands to streams, recordings, analysis and live views is the camera's
:class:`ChannelRef` (device, channel), so nothing downstream looks a camera up by its
channel ID alone.  A camera the caller may not see is the same 404 as one that does not
exist.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import HTTPException, Query, status
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from sip import ids
from sip.channel_ref import ChannelRef
from storage.models import Channel, Device, Role

from .deps import Caller

AMBIGUITY_SHOWN = 10  # device ids named in a 409

DeviceQuery = Annotated[
    str | None,
    Query(
        pattern=ids.PATTERN,
        description="the device listing the camera (needed when several devices list its ID)",
    ),
]


def visible_channel(
    caller: Caller, session: Session, channel_id: str, device_id: str | None = None
) -> Channel:
    """The camera with this channel ID (on ``device_id`` if given) that the caller may see;
    404 when there is none, 409 when several of the caller's devices list the ID."""
    stmt = caller.scope(
        select(Channel)
        .join(Device, Channel.device_pk == Device.id)
        .where(Channel.channel_id == channel_id)
        .order_by(Channel.id),
        Device.org_id,
    )
    if device_id is not None:
        stmt = stmt.where(Device.device_id == device_id)
    found = list(session.scalars(stmt.limit(AMBIGUITY_SHOWN + 1)))
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"channel {channel_id} not found")
    if len(found) > 1:
        devices = ", ".join(c.device.device_id for c in found[:AMBIGUITY_SHOWN])
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"channel {channel_id} is listed by several devices ({devices}): give device_id",
        )
    return found[0]


def camera_ref(channel: Channel) -> ChannelRef:
    """The stream/recording key of a channel row; 404 for a stored code that is not a
    20-digit id (rows from before ids were checked: never a stream, file or object key)."""
    try:
        return ChannelRef(channel.device.device_id, channel.channel_id)
    except ids.InvalidGbId:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"channel {channel.channel_id[:40]!r} not found"
        ) from None


def visible_camera(
    caller: Caller, session: Session, channel_id: str, device_id: str | None = None
) -> ChannelRef:
    """:func:`visible_channel`, as the camera's :class:`ChannelRef`."""
    return camera_ref(visible_channel(caller, session, channel_id, device_id))


def visible_refs(caller: Caller, session: Session, wanted: list[ChannelRef]) -> set[ChannelRef]:
    """The cameras among ``wanted`` the caller may see (device and channel both match)."""
    if not wanted:
        return set()
    device_ids = sorted({r.device_id for r in wanted})
    channel_ids = sorted({r.channel_id for r in wanted})
    stmt = caller.scope(
        select(Device.device_id, Channel.channel_id)
        .select_from(Channel)
        .join(Device, Channel.device_pk == Device.id)
        .where(Device.device_id.in_(device_ids), Channel.channel_id.in_(channel_ids)),
        Device.org_id,
    )
    seen = {(d, c) for d, c in session.execute(stmt)}
    return {r for r in wanted if (r.device_id, r.channel_id) in seen}


def camera_visible(
    caller: Caller, session: Session, device_id_col: Any, channel_id_col: Any
) -> Any:
    """A correlated EXISTS: the row's (device, channel) is a camera the caller may see.

    For tables that name a camera by its codes (download jobs, recording segments)."""
    inner: Select[Any] = caller.scope(
        select(Channel.id)
        .join(Device, Channel.device_pk == Device.id)
        .where(Device.device_id == device_id_col, Channel.channel_id == channel_id_col),
        Device.org_id,
    )
    return inner.exists()


def sees_camera(services: Any, caller: Caller, camera: ChannelRef) -> bool:
    """Whether the caller may see this camera (a global administrator sees every one)."""
    if caller.org_path is None:
        return True
    with services.db.session() as s:
        return camera in visible_refs(caller, s, [camera])


async def may_manage(services: Any, caller: Caller, owner: str, camera: ChannelRef) -> bool:
    """A live or playback session is its viewer's; an administrator also manages those of
    cameras in its scope (a county administrator does not reach another county's)."""
    if owner == caller.user.username:
        return True
    return caller.role == Role.admin and await asyncio.to_thread(
        sees_camera, services, caller, camera
    )
