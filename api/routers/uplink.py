"""Provincial uplink outbox: counts, items (dead letters among them), re-send, sender status.

Administrators only: the outbox spans every organisation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from storage.models import OutboxItem, OutboxState
from vms.uplink import outbox

from ..deps import ADMIN, ServicesDep, SessionDep, require_roles

router = APIRouter(prefix="/api/uplink", tags=["uplink"], dependencies=[require_roles(*ADMIN)])


class OutboxOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    receiver: str
    table: str
    ordering_key: str
    payload: dict[str, Any]
    image_key: str
    state: OutboxState
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    dead_at: datetime | None
    last_error: str


class ResendIn(BaseModel):
    ids: list[int] | None = Field(None, description="dead letters to re-send; omit for all")
    receiver: str | None = None


@router.get("/status")
def uplink_status(services: ServicesDep, session: SessionDep) -> dict[str, Any]:
    """Configured receivers, live sender figures and outbox counts per receiver/table/state."""
    sender = services.uplink
    return {
        "receivers": [
            {
                "name": r.name,
                "format": r.format,
                "tables": [t for t in ("table2", "table3", "table4") if getattr(r, f"{t}_url")],
            }
            for r in services.settings.uplink.receivers
        ],
        "sender": sender.stats() if sender is not None else {},
        "outbox": outbox.counts(session),
    }


@router.get("/outbox", response_model=list[OutboxOut])
def list_outbox(
    session: SessionDep,
    state: OutboxState | None = None,
    receiver: str | None = None,
    table: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[OutboxItem]:
    """Newest first; ``state=dead`` lists the dead letters."""
    stmt = select(OutboxItem)
    if state is not None:
        stmt = stmt.where(OutboxItem.state == state)
    if receiver is not None:
        stmt = stmt.where(OutboxItem.receiver == receiver)
    if table is not None:
        stmt = stmt.where(OutboxItem.table == table)
    return list(session.scalars(stmt.order_by(OutboxItem.id.desc()).limit(limit).offset(offset)))


@router.post("/outbox/resend")
def resend_dead(body: ResendIn, session: SessionDep, services: ServicesDep) -> dict[str, int]:
    """Dead letters back to pending (due now, age restarted); the sender is woken."""
    count = outbox.resend(session, body.ids, body.receiver, outbox.now_utc())
    session.commit()
    if services.uplink is not None:
        services.uplink.wake_threadsafe()
    return {"requeued": count}
