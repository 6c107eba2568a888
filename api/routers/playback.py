"""Watching the NVR's own recording under control: open a playback session, watch it over
WebRTC, pause / resume / change speed / seek it (MANSRTSP to the device), close it.

Sessions belong to the user who opened them (an administrator also reaches those of the
cameras in its scope); the camera is scoped like every camera route, so another
organisation's camera is a 404.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field

from sip import ids
from sip.channel_ref import ChannelRef
from sip.media_api import PlayError
from vms.recording.playback_sessions import SPEEDS, PlaybackRefused, PlaybackSession

from ..channel_scope import may_manage, visible_camera
from ..deps import HUMANS, Caller, CallerDep, ServicesDep, require_roles

router = APIRouter(prefix="/api/playback", tags=["playback"])

MAX_RANGE_S = 72 * 3600  # the replay view's longest window


class SessionIn(BaseModel):
    channel_id: str = Field(pattern=ids.PATTERN)
    # the device listing the camera; needed when several of the caller's devices list its ID
    device_id: str | None = Field(None, pattern=ids.PATTERN)
    start: datetime
    end: datetime


class ControlIn(BaseModel):
    action: Literal["pause", "resume", "speed", "seek"]
    speed: float | None = Field(None, description=f"speed: one of {list(SPEEDS)}")
    at: datetime | None = Field(None, description="seek: a time inside the session's range")


class OfferIn(BaseModel):
    sdp: str = Field(min_length=10, max_length=64 * 1024)
    type: Literal["offer"] = "offer"


class AnswerOut(BaseModel):
    session_id: str  # the live view's peer (hang up with DELETE /api/live/sessions/{id})
    playback_id: str
    channel_id: str
    device_id: str
    sdp: str
    type: Literal["answer"] = "answer"


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sessions(services: ServicesDep) -> Any:
    if services.playback is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "device playback is not running")
    return services.playback


Sessions = Annotated[Any, Depends(_sessions)]


async def _owned(services: Any, sessions: Any, caller: Caller, session_id: str) -> PlaybackSession:
    session = sessions.get(session_id)
    if session is None or not await may_manage(services, caller, session.user, session.channel):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"playback session {session_id} not found")
    return session


def _out(session: PlaybackSession) -> dict[str, Any]:
    out = session.as_dict()
    out["speeds"] = list(SPEEDS)
    out["status_url"] = f"/api/playback/sessions/{session.id}"
    return out


def _camera(services: Any, caller: Caller, channel_id: str, device_id: str | None) -> ChannelRef:
    with services.db.session() as s:
        return visible_camera(caller, s, channel_id, device_id)


@router.post("/sessions", status_code=201, dependencies=[require_roles(*HUMANS)])
async def open_session(
    body: SessionIn, caller: CallerDep, services: ServicesDep, sessions: Sessions
) -> dict[str, Any]:
    """Play ``[start, end]`` from the channel's NVR (Playback INVITE); then post a WebRTC
    offer to ``.../offer`` to watch it."""
    start, end = utc(body.start), utc(body.end)
    if end <= start:
        raise HTTPException(422, "end must be after start")
    if (end - start).total_seconds() > MAX_RANGE_S:
        raise HTTPException(422, f"range longer than {MAX_RANGE_S} s")
    camera = await asyncio.to_thread(_camera, services, caller, body.channel_id, body.device_id)
    try:
        session = sessions.open(camera, start, end, caller.user.username)
    except PlaybackRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return _out(session)


@router.get("/sessions/{session_id}", dependencies=[require_roles(*HUMANS)])
async def get_session(
    session_id: str, caller: CallerDep, services: ServicesDep, sessions: Sessions
) -> dict[str, Any]:
    """State, speed and the position in the recording (poll it for the clock)."""
    return _out(await _owned(services, sessions, caller, session_id))


@router.post("/sessions/{session_id}/control", dependencies=[require_roles(*HUMANS)])
async def control(
    session_id: str, body: ControlIn, caller: CallerDep, services: ServicesDep, sessions: Sessions
) -> dict[str, Any]:
    """Pause, resume, speed (``speed``) or seek (``at``): MANSRTSP INFO to the device."""
    await _owned(services, sessions, caller, session_id)
    try:
        session = await sessions.control(
            session_id, body.action, speed=body.speed, at=utc(body.at) if body.at else None
        )
    except KeyError:
        raise HTTPException(404, f"playback session {session_id} not found") from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(409, f"cannot {body.action} now: {exc}") from None
    except PlayError as exc:
        raise HTTPException(502, f"the device refused {body.action}: {exc}") from None
    return _out(session)


@router.post(
    "/sessions/{session_id}/offer", response_model=AnswerOut, dependencies=[require_roles(*HUMANS)]
)
async def offer(
    session_id: str, body: OfferIn, caller: CallerDep, services: ServicesDep, sessions: Sessions
) -> AnswerOut:
    """Answer a browser's WebRTC offer with the session's video (H.264 as the NVR sent it)."""
    from vms.live.service import LiveError

    session = await _owned(services, sessions, caller, session_id)
    live = services.live
    if live is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "live view is not running")
    source = sessions.viewer(session_id)
    try:
        peer = await live.answer(session.channel, body.sdp, caller.user.username, source=source)
    except LiveError as exc:
        source.close()
        raise HTTPException(exc.status, str(exc)) from None
    return AnswerOut(
        session_id=peer.id,
        playback_id=session.id,
        channel_id=session.channel_id,
        device_id=session.channel.device_id,
        sdp=peer.answer_sdp,
    )


@router.delete("/sessions/{session_id}", status_code=204, dependencies=[require_roles(*HUMANS)])
async def close_session(
    session_id: str, caller: CallerDep, services: ServicesDep, sessions: Sessions
) -> None:
    """Stop the playback (BYE to the device)."""
    await _owned(services, sessions, caller, session_id)
    await sessions.close(session_id)
