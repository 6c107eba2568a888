"""The cascade to superior platforms: their registration, the streams sent to them, and which
of our channels each one gets (set by a global administrator; staff with an organisation see
their subtree's part).  Superiors are configured in ``sip.upstreams``; a superior whose
selection was never set gets every channel that is not classified.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from sip import ids
from sip.channel_ref import ChannelRef
from storage.models import Channel, Device, Organisation
from vms.cascade import catalog as tree
from vms.cascade.selection import selection_of, set_selection

from ..channel_scope import visible_refs
from ..deps import ADMIN, STAFF, Caller, CallerDep, ServicesDep, SessionDep, require_roles

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


def _visible_streams(caller: Caller, session: Any, streams: list[dict[str, Any]]) -> list[Any]:
    """The streams of cameras the caller may see (a global administrator: all of them)."""
    if caller.org_path is None:
        return streams
    refs = {}
    for f in streams:
        try:
            refs[id(f)] = ChannelRef(f["device_id"], f["channel_id"])
        except ValueError:
            continue
    seen = visible_refs(caller, session, list(refs.values()))
    return [f for f in streams if refs.get(id(f)) in seen]


@router.get("", dependencies=[require_roles(*STAFF)])
async def cascade_state(caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    """Each superior: registration, keepalives, its dialogs and the streams we send it (of
    the caller's cameras)."""
    sip = services.sip
    if sip is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "SIP service not running")
    streams = services.cascade.describe() if services.cascade is not None else []
    streams = await services.db.run(lambda s: _visible_streams(caller, s, streams))
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


def _selection_out(session: Any, upstream_id: str, caller: Caller | None = None) -> SelectionOut:
    """The selection; for a caller with an organisation, only the channels of its subtree
    (the selection spans every organisation)."""
    selection = selection_of(session, upstream_id)
    shared = tree.shared_channels(session, selection)
    selected = sorted(selection.channel_ids)
    if caller is not None and caller.org_path is not None:
        paths = dict(session.execute(select(Organisation.id, Organisation.path)).all())
        shared = [c for c in shared if caller.sees_path(paths.get(c.org_id))]
        mine = caller.scope(
            select(Channel.channel_id)
            .join(Device, Channel.device_pk == Device.id)
            .where(Channel.channel_id.in_(selected)),
            Device.org_id,
        )
        selected = sorted(set(session.scalars(mine)))
    return SelectionOut(
        upstream_id=upstream_id,
        all_channels=selection.all_channels,
        channel_ids=selected,
        shared=[c.item.device_id for c in shared],
    )


@router.get(
    "/{upstream_id}/channels", response_model=SelectionOut, dependencies=[require_roles(*STAFF)]
)
async def get_selection(
    upstream_id: str, caller: CallerDep, services: ServicesDep, session: SessionDep
) -> SelectionOut:
    _upstream(services, upstream_id)
    return await run_in_threadpool(_selection_out, session, upstream_id, caller)


@router.put(
    "/{upstream_id}/channels", response_model=SelectionOut, dependencies=[require_roles(*ADMIN)]
)
async def put_selection(
    upstream_id: str,
    body: SelectionIn,
    caller: CallerDep,
    services: ServicesDep,
    session: SessionDep,
) -> SelectionOut:
    """Choose the channels a superior gets; unknown channel ids are refused (nothing changes).

    Global administrators only: the selection spans every organisation's channels."""
    if caller.org_path is not None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "a superior's selection is set by a global administrator"
        )
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
