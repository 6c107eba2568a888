"""WebRTC live view signalling: one offer in, one answer out (non-trickle ICE).

The channel is scoped through its device's organisation, like every device
route: a caller who may not see the camera gets the same 404 as for a camera
that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import BaseModel, Field

from sip import ids
from sip.channel_ref import ChannelRef
from storage.models import Role

from ..channel_scope import DeviceQuery, visible_camera
from ..deps import ADMIN, HUMANS, CallerDep, ServicesDep, SessionDep, require_roles

router = APIRouter(prefix="/api/live", tags=["live"])

ChannelId = Annotated[str, Path(pattern=ids.PATTERN, description="20-digit GB28181 channel id")]


class OfferIn(BaseModel):
    sdp: str = Field(min_length=10, max_length=64 * 1024)
    type: Literal["offer"] = "offer"


class AnswerOut(BaseModel):
    session_id: str
    channel_id: str
    device_id: str
    sdp: str
    type: Literal["answer"] = "answer"


def _visible(
    channel_id: ChannelId, caller: CallerDep, session: SessionDep, device_id: DeviceQuery = None
) -> ChannelRef:
    """The camera if one of the caller's devices has it; 404 otherwise (409: give device_id)."""
    return visible_camera(caller, session, channel_id, device_id)


def _live(services: ServicesDep) -> Any:
    if services.live is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "live view is not running")
    return services.live


@router.post(
    "/{channel_id}/offer",
    response_model=AnswerOut,
    dependencies=[require_roles(*HUMANS)],
    summary="Answer a browser's WebRTC offer for a camera (H.264, receive only)",
)
async def offer(
    body: OfferIn,
    caller: CallerDep,
    camera: Annotated[ChannelRef, Depends(_visible)],
    live: Annotated[Any, Depends(_live)],
) -> AnswerOut:
    from vms.live.service import LiveError

    try:
        session = await live.answer(camera, body.sdp, caller.user.username)
    except LiveError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return AnswerOut(
        session_id=session.id,
        channel_id=camera.channel_id,
        device_id=camera.device_id,
        sdp=session.answer_sdp,
    )


@router.delete("/sessions/{session_id}", status_code=204, dependencies=[require_roles(*HUMANS)])
async def hangup(session_id: str, caller: CallerDep, live: Annotated[Any, Depends(_live)]) -> None:
    session = live.sessions.get(session_id)
    if session is None or (session.user != caller.user.username and caller.role != Role.admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"live session {session_id} not found")
    await live.hangup(session_id)


@router.get("/sessions", dependencies=[require_roles(*ADMIN)])
def sessions(live: Annotated[Any, Depends(_live)]) -> dict[str, Any]:
    """Viewers, their channels and what was forwarded (for the operators' status page)."""
    return live.stats()
