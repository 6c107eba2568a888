"""Named live walls, per user: ``GET/PUT/DELETE /api/walls[/{name}]``.

A user reads and writes only its own walls (another user's wall is a 404, like a missing
one).  Saving a wall with a camera the user may not see is refused (422, naming the
cameras), so a wall never carries codes outside the user's scope; reading one drops the
cameras the user can no longer see (an organisation moved, a device reassigned) to empty
tiles instead of failing the whole wall.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sip import ids
from sip.channel_ref import ChannelRef
from storage.wall_models import Wall

from ..channel_scope import visible_channel, visible_refs
from ..deps import HUMANS, Caller, CallerDep, SessionDep, require_roles

router = APIRouter(prefix="/api/walls", tags=["walls"], dependencies=[require_roles(*HUMANS)])

MAX_WALLS = 50  # per user
MAX_CHANNELS = 256  # tiles over all pages of one wall (the tour pages through them)
MAX_TOUR_S = 3600
CAMERA = re.compile(r"^(?:[0-9]{20}/)?[0-9]{20}$")
WallName = Annotated[
    str, Path(min_length=1, max_length=64, description="the wall's name (unique per user)")
]


class WallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored
    layout: Literal[1, 4, 9, 16, 25] = 4
    # in tile order, page after page: "device/channel" (or a channel ID alone when one of
    # the caller's devices lists it), "" for an empty tile
    channels: list[str] = Field(default_factory=list, max_length=MAX_CHANNELS)
    tour_s: int = Field(0, ge=0, le=MAX_TOUR_S, description="auto tour period; 0: off")

    @field_validator("channels")
    @classmethod
    def _cameras(cls, v: list[str]) -> list[str]:
        for c in v:
            if c and not CAMERA.match(c):
                raise ValueError(f"not a camera key 'device/channel': {c[:60]!r}")
        return v


class WallOut(BaseModel):
    name: str
    layout: int
    channels: list[str]
    tour_s: int
    updated_at: datetime


def _name(name: str) -> str:
    name = name.strip()
    if not name or "/" in name:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "a wall name is 1-64 chars, no '/'"
        )
    return name


def _ref(key: str) -> ChannelRef | None:
    device_id, _, channel_id = key.partition("/")
    try:
        return ChannelRef(device_id, channel_id)
    except ids.InvalidGbId:
        return None


def _checked(caller: Caller, session: Session, channels: list[str]) -> list[str]:
    """The channels as camera keys, every one visible to the caller; 422 naming the others."""
    keys: list[str] = []
    refused: list[str] = []
    for c in channels:
        if c and "/" not in c:  # a bare channel ID: the caller's one device listing it
            try:
                ch = visible_channel(caller, session, c)
                c = f"{ch.device.device_id}/{ch.channel_id}"
            except HTTPException:
                refused.append(c)
                continue
        keys.append(c)
    refs = {k: r for k in keys if k and (r := _ref(k)) is not None}
    seen = visible_refs(caller, session, list(refs.values()))
    refused += [k for k in keys if k and (k not in refs or refs[k] not in seen)]
    if refused:
        shown = ", ".join(dict.fromkeys(refused[:10]))
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"cameras not found or outside your organisation: {shown}",
        )
    return keys


def _out(caller: Caller, session: Session, wall: Wall) -> WallOut:
    """The wall as the caller may see it now: cameras out of its scope become empty tiles."""
    channels = [c if isinstance(c, str) else "" for c in wall.channels]
    refs = {k: r for k in channels if k and (r := _ref(k)) is not None}
    seen = visible_refs(caller, session, list(refs.values()))
    shown = [k if k in refs and refs[k] in seen else "" for k in channels]
    return WallOut(
        name=wall.name,
        layout=wall.layout,
        channels=shown,
        tour_s=wall.tour_s,
        updated_at=wall.updated_at,
    )


def _own(caller: Caller, session: Session, name: str) -> Wall | None:
    return session.scalar(select(Wall).where(Wall.user_id == caller.user.id, Wall.name == name))


@router.get("", summary="The caller's walls, by name")
def list_walls(caller: CallerDep, session: SessionDep) -> list[WallOut]:
    walls = session.scalars(
        select(Wall).where(Wall.user_id == caller.user.id).order_by(Wall.name)
    ).all()
    return [_out(caller, session, w) for w in walls]


@router.get("/{name}", summary="One of the caller's walls")
def get_wall(name: WallName, caller: CallerDep, session: SessionDep) -> WallOut:
    wall = _own(caller, session, _name(name))
    if wall is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"wall {name!r} not found")
    return _out(caller, session, wall)


@router.put("/{name}", summary="Save (create or replace) one of the caller's walls")
def put_wall(name: WallName, body: WallIn, caller: CallerDep, session: SessionDep) -> WallOut:
    name = _name(name)
    channels = _checked(caller, session, body.channels)
    while channels and not channels[-1]:  # trailing empty tiles carry nothing
        channels.pop()
    wall = _own(caller, session, name)
    if wall is None:
        count = session.scalar(
            select(func.count()).select_from(Wall).where(Wall.user_id == caller.user.id)
        )
        if (count or 0) >= MAX_WALLS:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"at most {MAX_WALLS} walls per user: delete some"
            )
        wall = Wall(user_id=caller.user.id, name=name)
        session.add(wall)
    wall.layout = body.layout
    wall.channels = channels
    wall.tour_s = body.tour_s
    session.flush()
    return _out(caller, session, wall)


@router.delete("/{name}", status_code=204, summary="Delete one of the caller's walls")
def delete_wall(name: WallName, caller: CallerDep, session: SessionDep) -> Response:
    wall = _own(caller, session, _name(name))
    if wall is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"wall {name!r} not found")
    session.delete(wall)
    return Response(status_code=204)
