"""Sensor warnings, scoped to the caller's organisation subtree: list/filter/page, one warning
with its history, recipients, bookmarks and snapshots, the closed-loop actions, CSV export,
and the escalation table itself (for the UI).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from storage.models import HandlingState
from storage.sensor_models import RecordingBookmark, SensorWarning, WarningLevel
from vms.warning import handling
from vms.warning.escalation import next_notice_at, onsite_due_at
from vms.warning.store import WarningStore, snapshot_url
from vms.warning.table import NAMES_ZH, as_rows, rule

from ..deps import (
    HUMANS,
    Caller,
    CallerDep,
    ServicesDep,
    SessionDep,
    count_into,
    require_roles,
    under_org,
)
from ..pictures import picture_response

router = APIRouter(prefix="/api/warnings", tags=["warnings"])

UPDATED = "warning.updated"


class WarningOut(BaseModel):
    """One warning episode as lists show it."""

    warning_id: str
    sensor_id: int | None
    tag: str = ""
    sensor_name: str = ""
    kind: str = ""
    unit: str = ""
    org_id: int | None
    level: WarningLevel
    level_name: str
    peak_level: WarningLevel
    cause: str
    value: float | None
    threshold: float | None
    active: bool = Field(description="the condition still holds (not cleared, not force-closed)")
    raised_at: datetime
    level_since: datetime = Field(description="start of the current level's escalation clock")
    escalated_at: datetime | None
    cleared_at: datetime | None
    notice_count: int = Field(description="automatic notices on the current level's clock")
    last_notice_at: datetime | None
    onsite_at: datetime | None = Field(description="on-site verification last requested")
    relayed_at: datetime | None = Field(description="red: relayed to the city level")
    handling: HandlingState
    acknowledged_at: datetime | None
    handled_at: datetime | None
    closed_at: datetime | None
    feedback: str = Field(description="the handling report")
    tracker: str = Field(description="who tracks this level: enterprise or a duty")
    next_notice_at: datetime | None = None
    onsite_due_at: datetime | None = None
    cameras: list[str] = []


class RecipientOut(BaseModel):
    org_id: int
    duty: str
    name: str
    contact_id: int | None = None


class WarningEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    kind: str
    level: str
    user_id: int | None
    note: str
    recipients: list[RecipientOut]
    detail: dict[str, Any]


class BookmarkOut(BaseModel):
    id: int
    device_id: str  # with channel_id, the camera
    channel_id: str
    at: datetime
    label: str
    snapshot_url: str = Field("", description="empty until the camera's picture is stored")


class WarningDetail(WarningOut):
    events: list[WarningEventOut] = []
    recipients: list[RecipientOut] = Field([], description="everyone reached, in order")
    bookmarks: list[BookmarkOut] = []


class ActionIn(BaseModel):
    action: Literal["acknowledge", "handle", "feedback", "close", "comment"]
    note: str = Field("", max_length=4000)
    force: bool = Field(False, description="close although the condition still holds (with note)")


def to_out(w: SensorWarning, model: type[WarningOut] = WarningOut) -> WarningOut:
    detail = w.detail or {}
    live = w.active and w.cleared_at is None and w.closed_at is None
    level_rule = rule(w.level)
    return model(
        warning_id=w.warning_id,
        sensor_id=w.sensor_pk,
        tag=detail.get("tag", ""),
        sensor_name=detail.get("name", ""),
        kind=detail.get("kind", ""),
        unit=detail.get("unit", ""),
        org_id=w.org_id,
        level=w.level,
        level_name=NAMES_ZH[w.level.value],
        peak_level=w.peak_level,
        cause=w.cause,
        value=w.value,
        threshold=w.threshold,
        active=w.active,
        raised_at=w.raised_at,
        level_since=w.level_since,
        escalated_at=w.escalated_at,
        cleared_at=w.cleared_at,
        notice_count=w.notice_count,
        last_notice_at=w.last_notice_at,
        onsite_at=w.onsite_at,
        relayed_at=w.relayed_at,
        handling=w.handling,
        acknowledged_at=w.acknowledged_at,
        handled_at=w.handled_at,
        closed_at=w.closed_at,
        feedback=w.feedback,
        tracker=level_rule.tracker,
        next_notice_at=next_notice_at(level_rule, w.level_since, w.notice_count) if live else None,
        onsite_due_at=onsite_due_at(level_rule, w.level_since, w.onsite_at) if live else None,
        cameras=list(detail.get("cameras", [])),
    )


def to_detail(session: Session, w: SensorWarning) -> WarningOut:
    out = to_out(w, WarningDetail)
    assert isinstance(out, WarningDetail)
    out.events = [WarningEventOut.model_validate(e) for e in w.events]
    seen: set[tuple[Any, ...]] = set()
    for e in out.events:
        for r in e.recipients:
            key = (r.org_id, r.duty, r.contact_id)
            if key not in seen:
                seen.add(key)
                out.recipients.append(r)
    marks = session.scalars(
        select(RecordingBookmark)
        .where(RecordingBookmark.source == "warning", RecordingBookmark.ref == w.warning_id)
        .order_by(RecordingBookmark.at, RecordingBookmark.id)
    )
    out.bookmarks = [
        BookmarkOut(
            id=m.id,
            device_id=m.device_id,
            channel_id=m.channel_id,
            at=m.at,
            label=m.label,
            snapshot_url=snapshot_url(w.warning_id, m.id) if m.snapshot_key else "",
        )
        for m in marks
    ]
    return out


def visible_warning(caller: Caller, session: Session, warning_id: str) -> SensorWarning:
    w = session.scalar(
        caller.scope(
            select(SensorWarning).where(SensorWarning.warning_id == warning_id),
            SensorWarning.org_id,
        )
    )
    if w is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"warning {warning_id} not found")
    return w


class WarningFilter(BaseModel):
    active: bool | None = None
    level: WarningLevel | None = None
    handling: HandlingState | None = None
    org_id: int | None = None
    sensor_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None


def warning_filter(
    active: bool | None = Query(None, description="condition still holds"),
    level: WarningLevel | None = None,
    handling_: HandlingState | None = Query(None, alias="handling"),
    org_id: int | None = Query(None, description="an organisation and everything under it"),
    sensor_id: int | None = None,
    start: datetime | None = Query(None, description="raised at or after (ISO 8601)"),
    end: datetime | None = Query(None, description="raised before (ISO 8601)"),
) -> WarningFilter:
    return WarningFilter(
        active=active,
        level=level,
        handling=handling_,
        org_id=org_id,
        sensor_id=sensor_id,
        start=start,
        end=end,
    )


FilterDep = Annotated[WarningFilter, Depends(warning_filter)]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def filtered(caller: Caller, session: Session, f: WarningFilter) -> Select[Any]:
    stmt = caller.scope(select(SensorWarning), SensorWarning.org_id)
    if f.active is not None:
        stmt = stmt.where(SensorWarning.active.is_(f.active))
    if f.level is not None:
        stmt = stmt.where(SensorWarning.level == f.level)
    if f.handling is not None:
        stmt = stmt.where(SensorWarning.handling == f.handling)
    if f.sensor_id is not None:
        stmt = stmt.where(SensorWarning.sensor_pk == f.sensor_id)
    if f.start is not None:
        stmt = stmt.where(SensorWarning.raised_at >= _aware(f.start))
    if f.end is not None:
        stmt = stmt.where(SensorWarning.raised_at < _aware(f.end))
    stmt = under_org(caller, session, stmt, SensorWarning.org_id, f.org_id)
    return stmt


@router.get("", response_model=list[WarningOut], dependencies=[require_roles(*HUMANS)])
def list_warnings(
    caller: CallerDep,
    session: SessionDep,
    f: FilterDep,
    response: Response,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[WarningOut]:
    """Newest first; the total matching count is in the ``X-Total-Count`` header."""
    stmt = filtered(caller, session, f)
    count_into(session, stmt, response)
    rows = session.scalars(
        stmt.order_by(SensorWarning.raised_at.desc(), SensorWarning.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [to_out(w) for w in rows]


@router.get("/escalation", dependencies=[require_roles(*HUMANS)])
def escalation_table() -> list[dict[str, object]]:
    """The escalation table of spec/sensors.md §4 as the server applies it."""
    return as_rows()


CSV_COLUMNS = (
    "warning_id",
    "org_id",
    "tag",
    "sensor_name",
    "level",
    "peak_level",
    "cause",
    "value",
    "threshold",
    "unit",
    "active",
    "raised_at",
    "level_since",
    "cleared_at",
    "notice_count",
    "onsite_at",
    "relayed_at",
    "handling",
    "acknowledged_at",
    "handled_at",
    "closed_at",
    "feedback",
)


@router.get("/export.csv", dependencies=[require_roles(*HUMANS)])
def export_csv(caller: CallerDep, session: SessionDep, f: FilterDep) -> StreamingResponse:
    """All matching warnings (oldest first) as UTF-8 CSV with a BOM so spreadsheets read 中文."""
    stmt = filtered(caller, session, f).order_by(SensorWarning.raised_at, SensorWarning.id)
    rows = [to_out(w).model_dump() for w in session.scalars(stmt)]

    def cell(v: Any) -> Any:
        if isinstance(v, datetime):
            return v.isoformat()
        return v.value if hasattr(v, "value") else v

    def generate() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        buf.write("\ufeff")
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([cell(row[c]) for c in CSV_COLUMNS])
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
        yield buf.getvalue()

    headers = {"Content-Disposition": 'attachment; filename="warnings.csv"'}
    return StreamingResponse(generate(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/{warning_id}", response_model=WarningDetail, dependencies=[require_roles(*HUMANS)])
def get_warning(warning_id: str, caller: CallerDep, session: SessionDep) -> WarningOut:
    return to_detail(session, visible_warning(caller, session, warning_id))


@router.post(
    "/{warning_id}/actions", response_model=WarningDetail, dependencies=[require_roles(*HUMANS)]
)
def act_on_warning(
    warning_id: str, body: ActionIn, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> WarningOut:
    """acknowledge → handle (note) → feedback (report) → close, comment any time; else 409.

    Closing while the condition holds needs ``force`` and a note.  Committed here, then pushed
    as ``warning.updated`` (and to the global warning webhooks, durably).
    """
    w = visible_warning(caller, session, warning_id)
    was_active = w.active
    try:
        event = handling.apply_action(
            session, w, body.action, caller.user.id, body.note, datetime.now(UTC), body.force
        )
    except handling.MissingNote as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except handling.InvalidTransition as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    engine = services.warnings
    store = engine.store if engine is not None else _store(services)
    org = store.org(session, w.org_id)
    extra = {"action": event.kind, "note": event.note, "user_id": event.user_id}
    data = store.notify(session, w, org, UPDATED, event.kind, [], event.note, data=extra)
    session.commit()
    forced = was_active and not w.active

    def after() -> None:  # on the event loop: the bus and the engine belong to it
        services.events.publish(UPDATED, **data)
        if engine is not None:
            if forced:
                engine.closed(w.warning_id)
            engine.notices_queued()

    anyio.from_thread.run_sync(after)
    session.refresh(w)
    return to_detail(session, w)


def _store(services: Any) -> WarningStore:
    settings = services.settings
    return WarningStore(settings.warning.webhooks, settings.server.timezone)


@router.get("/{warning_id}/snapshots/{bookmark_id}", dependencies=[require_roles(*HUMANS)])
def warning_snapshot(
    warning_id: str, bookmark_id: int, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> Response:
    """A linked camera's picture at the warning: a redirect to a presigned S3 URL, or the bytes
    themselves for the local folder store."""
    w = visible_warning(caller, session, warning_id)
    mark = session.get(RecordingBookmark, bookmark_id)
    if mark is None or mark.ref != w.warning_id or mark.source != "warning":
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such bookmark for this warning")
    if not mark.snapshot_key:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no picture from this camera (yet)")
    return picture_response(services.objects, mark.snapshot_key)
