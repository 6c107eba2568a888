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

from ..channel_scope import DeviceQuery, may_manage, visible_camera, visible_refs
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
async def hangup(
    session_id: str,
    caller: CallerDep,
    services: ServicesDep,
    live: Annotated[Any, Depends(_live)],
) -> None:
    """The viewer's own session, or one an administrator's scope holds the camera of."""
    session = live.sessions.get(session_id)
    if session is None or not await may_manage(services, caller, session.user, session.channel):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"live session {session_id} not found")
    await live.hangup(session_id)


@router.get("/sessions", dependencies=[require_roles(*ADMIN)])
def sessions(
    caller: CallerDep, session: SessionDep, live: Annotated[Any, Depends(_live)]
) -> dict[str, Any]:
    """Viewers, their channels and what was forwarded (for the operators' status page), of
    the cameras in the administrator's scope."""
    stats = live.stats()
    if caller.org_path is None:
        return stats
    rows = [*stats.get("sessions", []), *stats.get("relays", [])]
    refs = {(r["device_id"], r["channel_id"]): _ref(r) for r in rows}
    seen = visible_refs(caller, session, [c for c in refs.values() if c is not None])

    def mine(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in items if refs[(r["device_id"], r["channel_id"])] in seen]

    return {
        **stats,
        "sessions": mine(stats.get("sessions", [])),
        "relays": mine(stats.get("relays", [])),
    }


def _ref(row: dict[str, Any]) -> ChannelRef | None:
    try:
        return ChannelRef(row["device_id"], row["channel_id"])
    except ValueError:
        return None
