"""Provincial uplink outbox: counts, items (dead letters among them), re-send, sender status.

Administrators, scoped: each row reports on one site — Tables 2 and 3 name it in their
ordering key (``table2-<org id>``), Table 4 through its ALARM_ID's alarm — so an administrator
of a county sees, counts and re-sends the rows of its subtree only; rows of no site of ours
(records relayed from the level below) and the sender's node-wide figures are for global
administrators.  The ``uplink`` role is the level below's sender: it posts to ``/api/intake``
and has no business with this node's own outbox.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
)

from storage.models import Alarm, Organisation, OutboxItem, OutboxState
from vms.uplink import outbox
from vms.uplink.tables import TABLE2, TABLE3, TABLE4

from ..deps import ADMIN, Caller, CallerDep, ServicesDep, SessionDep, require_roles

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


def in_scope(caller: Caller) -> ColumnElement[bool] | None:
    """Outbox rows of sites in the caller's subtree (``None``: every row, a global admin).

    No column holds a row's site, so it is found the way the rows are written: the ordering
    key of a site's Table 2/3 rows, the alarm of a Table 4 row."""
    if caller.org_path is None:
        return None
    orgs = select(Organisation.id).where(Organisation.path.startswith(caller.org_path))
    site_key = exists().where(
        Organisation.path.startswith(caller.org_path),
        OutboxItem.ordering_key == OutboxItem.table + literal("-") + cast(Organisation.id, String),
    )
    alarm = exists().where(
        Alarm.alarm_id == OutboxItem.payload["ALARM_ID"].as_string(), Alarm.org_id.in_(orgs)
    )
    return or_(
        and_(OutboxItem.table.in_((TABLE2, TABLE3)), site_key),
        and_(OutboxItem.table == TABLE4, alarm),
    )


def scoped(caller: Caller, stmt: Select[Any]) -> Select[Any]:
    condition = in_scope(caller)
    return stmt if condition is None else stmt.where(condition)


def _counts(caller: Caller, session: SessionDep) -> list[dict[str, Any]]:
    if caller.org_path is None:
        return outbox.counts(session)
    cols = (OutboxItem.receiver, OutboxItem.table, OutboxItem.state)
    rows = session.execute(
        scoped(caller, select(*cols, func.count())).group_by(*cols).order_by(*cols)
    ).all()
    return [{"receiver": r, "table": t, "state": s.value, "count": n} for r, t, s, n in rows]


@router.get("/status")
def uplink_status(caller: CallerDep, services: ServicesDep, session: SessionDep) -> dict[str, Any]:
    """Configured receivers, live sender figures (global administrators) and outbox counts per
    receiver/table/state of the caller's subtree."""
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
        # node-wide: what every site sent and why it failed
        "sender": sender.stats() if sender is not None and caller.org_path is None else {},
        "outbox": _counts(caller, session),
    }


RECENT_ERRORS = 5  # distinct errors shown per receiver, newest first


def _aware(at: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they are UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


@router.get("/receivers")
def receiver_summary(
    caller: CallerDep, services: ServicesDep, session: SessionDep
) -> dict[str, Any]:
    """Per receiver, what the web UI's admin panel shows without paging the outbox: pending
    (and of those retrying), dead and delivered counts, the oldest pending row's age, the last
    delivery and the most recent distinct errors, all of the caller's subtree's rows.  A
    receiver no longer configured but still holding rows is listed with ``configured`` false."""
    now = outbox.now_utc()
    configured = {r.name: r for r in services.settings.uplink.receivers}
    out: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:
        r = configured.get(name)
        return out.setdefault(
            name,
            {
                "name": name,
                "configured": r is not None,
                "format": r.format if r is not None else "",
                "tables": [t for t in (TABLE2, TABLE3, TABLE4) if getattr(r, f"{t}_url", "")],
                "pending": 0,
                "retrying": 0,
                "dead": 0,
                "sent": 0,
                "oldest_pending_at": None,
                "oldest_pending_age_s": None,
                "last_sent_at": None,
                "errors": [],
            },
        )

    for name in configured:
        entry(name)
    retrying = func.sum(case((OutboxItem.attempts > 0, 1), else_=0))
    stmt = select(
        OutboxItem.receiver,
        OutboxItem.state,
        func.count(),
        retrying,
        func.min(OutboxItem.created_at),
        func.max(OutboxItem.sent_at),
    ).group_by(OutboxItem.receiver, OutboxItem.state)
    for name, state, count, retries, oldest, last_sent in session.execute(scoped(caller, stmt)):
        e = entry(name)
        e[state.value] = count
        if state == OutboxState.pending:
            e["retrying"] = int(retries or 0)
            e["oldest_pending_at"] = _aware(oldest)
            if oldest is not None:
                e["oldest_pending_age_s"] = max(0.0, (now - _aware(oldest)).total_seconds())
        elif state == OutboxState.sent:
            e["last_sent_at"] = _aware(last_sent)
    latest = func.max(func.coalesce(OutboxItem.dead_at, OutboxItem.next_attempt_at))
    errors = (
        select(OutboxItem.receiver, OutboxItem.last_error, func.count(), latest)
        .where(OutboxItem.state != OutboxState.sent, OutboxItem.last_error != "")
        .group_by(OutboxItem.receiver, OutboxItem.last_error)
        .order_by(latest.desc())
        .limit(200)
    )
    for name, error, count, at in session.execute(scoped(caller, errors)):
        listed = entry(name)["errors"]
        if len(listed) < RECENT_ERRORS:
            listed.append({"error": error, "count": count, "at": _aware(at)})
    return {"receivers": list(out.values()), "at": now}


@router.get("/outbox", response_model=list[OutboxOut])
def list_outbox(
    caller: CallerDep,
    session: SessionDep,
    state: OutboxState | None = None,
    receiver: str | None = None,
    table: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[OutboxItem]:
    """Newest first; ``state=dead`` lists the dead letters."""
    stmt = scoped(caller, select(OutboxItem))
    if state is not None:
        stmt = stmt.where(OutboxItem.state == state)
    if receiver is not None:
        stmt = stmt.where(OutboxItem.receiver == receiver)
    if table is not None:
        stmt = stmt.where(OutboxItem.table == table)
    return list(session.scalars(stmt.order_by(OutboxItem.id.desc()).limit(limit).offset(offset)))


@router.post("/outbox/resend")
def resend_dead(
    body: ResendIn, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> dict[str, int]:
    """Dead letters (of the caller's subtree) back to pending, due now, age restarted; the
    sender is woken."""
    ids = body.ids
    if caller.org_path is not None:
        stmt = scoped(caller, select(OutboxItem.id).where(OutboxItem.state == OutboxState.dead))
        if ids is not None:
            stmt = stmt.where(OutboxItem.id.in_(ids))
        ids = list(session.scalars(stmt))
    count = outbox.resend(session, ids, body.receiver, outbox.now_utc())
    session.commit()
    if services.uplink is not None:
        services.uplink.wake_threadsafe()
    return {"requeued": count}
