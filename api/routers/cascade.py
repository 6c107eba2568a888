"""The cascade to superior platforms: their registration, the streams sent to them, and which
of our channels each one gets (admin).  Superiors are configured in ``sip.upstreams``; a
superior whose selection was never set gets every channel that is not classified.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from sip import ids
from storage.models import Channel
from vms.cascade import catalog as tree
from vms.cascade.selection import selection_of, set_selection

from ..deps import ADMIN, STAFF, ServicesDep, SessionDep, require_roles

router = APIRouter(prefix="/api/cascade", tags=["cascade"])

GbIdStr = Annotated[str, StringConstraints(pattern=ids.PATTERN)]
MAX_SELECTED = 20000


class SelectionIn(BaseModel):
    all_channels: bool = Field(description="true: every channel that is not classified")
    channel_ids: list[GbIdStr] = Field(
        default_factory=list,
        max_length=MAX_SELECTED,
        description="the channels this superior gets while all_channels is false",
    )


class SelectionOut(BaseModel):
    upstream_id: str
    all_channels: bool
    channel_ids: list[str]
    shared: list[str]  # what it gets now: selected, of an active device, not classified


def _upstream(services: Any, upstream_id: str) -> Any:
    sip = services.sip
    if sip is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "SIP service not running")
    for up in sip.upstreams:
        if up.server_id == upstream_id:
            return up
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no superior {upstream_id} in sip.upstreams")


@router.get("", dependencies=[require_roles(*STAFF)])
async def cascade_state(services: ServicesDep) -> dict[str, Any]:
    """Each superior: registration, keepalives, its dialogs and the streams we send it."""
    sip = services.sip
    if sip is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "SIP service not running")
    streams = services.cascade.describe() if services.cascade is not None else []
    out = []
    for up in sip.upstreams:
        sid = up.server_id
        selection = await services.db.run(lambda s, sid=sid: selection_of(s, sid))
        entry = up.describe()
        entry["selection"] = {
            "all_channels": selection.all_channels,
            "selected": len(selection.channel_ids),
        }
        entry["streams"] = [f for f in streams if f["upstream_id"] == sid]
        out.append(entry)
    return {"upstreams": out, "streams": streams}


def _selection_out(session: Any, upstream_id: str) -> SelectionOut:
    selection = selection_of(session, upstream_id)
    shared = [c.item.device_id for c in tree.shared_channels(session, selection)]
    return SelectionOut(
        upstream_id=upstream_id,
        all_channels=selection.all_channels,
        channel_ids=sorted(selection.channel_ids),
        shared=shared,
    )


@router.get(
    "/{upstream_id}/channels", response_model=SelectionOut, dependencies=[require_roles(*STAFF)]
)
async def get_selection(
    upstream_id: str, services: ServicesDep, session: SessionDep
) -> SelectionOut:
    _upstream(services, upstream_id)
    return await run_in_threadpool(_selection_out, session, upstream_id)


@router.put(
    "/{upstream_id}/channels", response_model=SelectionOut, dependencies=[require_roles(*ADMIN)]
)
async def put_selection(
    upstream_id: str, body: SelectionIn, services: ServicesDep, session: SessionDep
) -> SelectionOut:
    """Choose the channels a superior gets; unknown channel ids are refused (nothing changes)."""
    up = _upstream(services, upstream_id)
    wanted = sorted(set(body.channel_ids))

    def apply() -> SelectionOut:
        known = set(
            session.scalars(select(Channel.channel_id).where(Channel.channel_id.in_(wanted)))
        )
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                {"detail": "unknown channels", "channel_ids": unknown[:50]},
            )
        set_selection(session, upstream_id, body.all_channels, wanted)
        return _selection_out(session, upstream_id)

    out = await run_in_threadpool(apply)
    session.commit()  # before the superior is told: it may ask for the catalog at once
    sip = services.sip
    sip.tasks.spawn(sip.relay.catalog_changed(), f"cascade-selection-{up.server_id}")
    return out
