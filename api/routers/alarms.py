"""AI alarms, scoped to the caller's organisation subtree: list/filter/page, one alarm with
its picture URLs, closed-loop actions, statistics and CSV export.
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
from sqlalchemy.orm import selectinload

from storage.models import Alarm, Channel, HandlingState, Organisation, Profile
from storage.objects import ObjectStoreError
from vms.alarms import codes
from vms.alarms.handling import (
    UPDATED,
    InvalidTransition,
    MissingNote,
    apply_action,
    check_action,
    updated_data,
)
from vms.alarms.service import AlarmRejected, camera_device, clip_url
from vms.alarms.stats import statistics

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

router = APIRouter(prefix="/api/alarms", tags=["alarms"])


class AlarmOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    alarm_id: str
    alarm_type: str
    type_name: str = ""
    profile: Profile
    rule: str
    active: bool
    video_code: str
    device_id: str = ""  # the camera's device: with video_code, the camera ("" once it is gone)
    device_code: str
    uplink_video_code: str = ""  # VIDEO_CODE of its Table 4 records; "" → not reported
    raised_at: datetime
    cleared_at: datetime | None
    handling: HandlingState
    false_alarm: bool
    acknowledged_at: datetime | None = None
    closed_at: datetime | None = None
    org_id: int | None
    image_url: str = ""
    clear_image_url: str = ""
    clip_key: str = ""
    clip_url: str = ""  # recordings export of the clip around the alarm (recording on)


class ActionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    action: str
    user_id: int | None
    note: str
    at: datetime


class AlarmDetail(AlarmOut):
    detail: dict[str, Any] = {}
    actions: list[ActionOut] = []


class ActionIn(BaseModel):
    action: Literal["acknowledge", "handle", "close", "false_alarm", "comment"]
    note: str = Field("", max_length=2000)
    force: bool = Field(
        False, description="close / mark false although the rule still holds (with a note)"
    )


def _image_path(alarm: Alarm, st: int) -> str:
    return f"/api/alarms/{alarm.alarm_id}/image?status={st}"


def to_out(alarm: Alarm, model: type[AlarmOut] = AlarmOut, objects: Any = None) -> AlarmOut:
    """API shape; with ``objects`` given, S3 pictures get presigned URLs instead of API paths."""
    out = model.model_validate(alarm)
    out.type_name = codes.code_name(alarm.profile.value, alarm.alarm_type)
    out.device_id = camera_device(alarm)
    out.clip_url = clip_url(alarm.clip_key) if alarm.clip_key else ""
    for st, key, field in (
        (1, alarm.image_key, "image_url"),
        (0, alarm.clear_image_key, "clear_image_url"),
    ):
        if not key:
            continue
        url = None
        if objects is not None:
            try:
                url = objects.url(key)
            except ObjectStoreError:
                url = None
        setattr(out, field, url or _image_path(alarm, st))
    return out


def visible_alarm(caller: Caller, session: SessionDep, alarm_id: str) -> Alarm:
    alarm = session.scalar(
        caller.scope(select(Alarm).where(Alarm.alarm_id == alarm_id), Alarm.org_id)
    )
    if alarm is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alarm {alarm_id} not found")
    return alarm


class AlarmFilter(BaseModel):
    start: datetime | None = None
    end: datetime | None = None
    alarm_type: str | None = None
    profile: Profile | None = None
    status: Literal["active", "cleared"] | None = None
    org_id: int | None = None
    video_code: str | None = None
    handling: HandlingState | None = None
    false_alarm: bool | None = None


def alarm_filter(
    start: datetime | None = Query(None, description="raised at or after (ISO 8601)"),
    end: datetime | None = Query(None, description="raised before (ISO 8601)"),
    alarm_type: str | None = Query(None, max_length=2),
    profile: Profile | None = None,
    status_: Literal["active", "cleared"] | None = Query(None, alias="status"),
    org_id: int | None = Query(None, description="an organisation and everything under it"),
    video_code: str | None = Query(None, max_length=36),
    handling: HandlingState | None = None,
    false_alarm: bool | None = None,
) -> AlarmFilter:
    return AlarmFilter(
        start=start,
        end=end,
        alarm_type=alarm_type,
        profile=profile,
        status=status_,
        org_id=org_id,
        video_code=video_code,
        handling=handling,
        false_alarm=false_alarm,
    )


FilterDep = Annotated[AlarmFilter, Depends(alarm_filter)]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def filtered(caller: Caller, session: SessionDep, f: AlarmFilter) -> Select[Any]:
    stmt = caller.scope(select(Alarm), Alarm.org_id)
    if f.start is not None:
        stmt = stmt.where(Alarm.raised_at >= _aware(f.start))
    if f.end is not None:
        stmt = stmt.where(Alarm.raised_at < _aware(f.end))
    if f.alarm_type is not None:
        stmt = stmt.where(Alarm.alarm_type == f.alarm_type)
    if f.profile is not None:
        stmt = stmt.where(Alarm.profile == f.profile)
    if f.status is not None:
        stmt = stmt.where(Alarm.active == (f.status == "active"))
    if f.video_code is not None:
        stmt = stmt.where(Alarm.video_code == f.video_code)
    if f.handling is not None:
        stmt = stmt.where(Alarm.handling == f.handling)
    if f.false_alarm is not None:
        stmt = stmt.where(Alarm.false_alarm == f.false_alarm)
    stmt = under_org(caller, session, stmt, Alarm.org_id, f.org_id)
    return stmt


@router.get("", response_model=list[AlarmOut], dependencies=[require_roles(*HUMANS)])
def list_alarms(
    caller: CallerDep,
    session: SessionDep,
    f: FilterDep,
    response: Response,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[AlarmOut]:
    """Newest first; the total matching count is in the ``X-Total-Count`` header."""
    stmt = filtered(caller, session, f)
    count_into(session, stmt, response)
    rows = session.scalars(
        stmt.options(selectinload(Alarm.channel).selectinload(Channel.device))
        .order_by(Alarm.raised_at.desc(), Alarm.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [to_out(a) for a in rows]


@router.get("/stats", dependencies=[require_roles(*HUMANS)])
def alarm_stats(
    caller: CallerDep, session: SessionDep, services: ServicesDep, f: FilterDep
) -> dict[str, Any]:
    return statistics(session, filtered(caller, session, f), services.settings.server.timezone)


CSV_COLUMNS = (
    "alarm_id",
    "profile",
    "alarm_type",
    "type_name",
    "rule",
    "video_code",
    "device_code",
    "org_id",
    "raised_at",
    "cleared_at",
    "active",
    "handling",
    "false_alarm",
    "acknowledged_at",
    "closed_at",
    "image_key",
    "clear_image_key",
)


@router.get("/export.csv", dependencies=[require_roles(*HUMANS)])
def export_csv(caller: CallerDep, session: SessionDep, f: FilterDep) -> StreamingResponse:
    """All matching alarms (oldest first) as UTF-8 CSV with a BOM so spreadsheets read 中文."""
    rows = list(session.scalars(filtered(caller, session, f).order_by(Alarm.raised_at, Alarm.id)))

    def generate() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        buf.write("\ufeff")
        writer.writerow(CSV_COLUMNS)
        for a in rows:
            values = {
                **{c: getattr(a, c, "") for c in CSV_COLUMNS},
                "type_name": codes.code_name(a.profile.value, a.alarm_type),
                "profile": a.profile.value,
                "handling": a.handling.value,
            }
            writer.writerow(
                [
                    v.isoformat() if isinstance(v, datetime) else v
                    for v in map(values.get, CSV_COLUMNS)
                ]
            )
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
        yield buf.getvalue()

    headers = {"Content-Disposition": 'attachment; filename="alarms.csv"'}
    return StreamingResponse(generate(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/{alarm_id}", response_model=AlarmDetail, dependencies=[require_roles(*HUMANS)])
def get_alarm(
    alarm_id: str, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> AlarmOut:
    return to_out(visible_alarm(caller, session, alarm_id), AlarmDetail, services.objects)


@router.post(
    "/{alarm_id}/actions", response_model=AlarmDetail, dependencies=[require_roles(*HUMANS)]
)
def act_on_alarm(
    alarm_id: str, body: ActionIn, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> AlarmOut:
    """acknowledge, handle, close (in that order), false_alarm, comment; others → 409.

    Closing or marking false an alarm that is still active (its rule holds) is a 409 unless
    ``force`` with a note (422 without): it is then cleared first, so the province gets its
    Table 4 clear now, once.  Committed here, then pushed as ``alarm.updated`` (scoped like
    ``alarm.raised``), so every operator's alarm list shows the new state without reloading.
    """
    alarm = visible_alarm(caller, session, alarm_id)
    try:
        held = check_action(alarm, body.action, body.note, body.force)
    except MissingNote as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except InvalidTransition as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    if held:
        _end_by_hand(services, session, alarm, body.note)
    try:
        record = apply_action(
            session,
            alarm,
            body.action,
            caller.user.id,
            body.note,
            datetime.now(UTC),
            body.force,
            ended_while_active=held,
        )
    except MissingNote as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except InvalidTransition as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    org = session.get(Organisation, alarm.org_id) if alarm.org_id is not None else None
    data = updated_data(alarm, org.path if org is not None else None, record)
    session.commit()
    # sync endpoint: runs in a worker thread, and the bus belongs to the event loop
    anyio.from_thread.run_sync(lambda: services.events.publish(UPDATED, **data))
    session.refresh(alarm)
    return to_out(alarm, AlarmDetail)


def _end_by_hand(services: Any, session: SessionDep, alarm: Alarm, note: str) -> None:
    """Clear the alarm through the alarm service (its own transaction, the camera's order),
    then re-read it here; the handling step follows in this session."""
    if services.alarms is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the alarm service is not running: try again"
        )
    session.commit()  # nothing of ours is held while the service writes the clear
    try:
        anyio.from_thread.run(services.alarms.end_by_hand, alarm.alarm_id, note.strip())
    except AlarmRejected as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"cannot clear the alarm: {exc}") from None
    session.refresh(alarm)


@router.get("/{alarm_id}/image", dependencies=[require_roles(*HUMANS)])
def alarm_image(
    alarm_id: str,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    status_: int = Query(1, alias="status", ge=0, le=1),
) -> Response:
    """The alarm (status=1) or clear (status=0) picture: a redirect to a presigned S3 URL,
    or the bytes themselves for the local folder store (or a picture still in the spool)."""
    alarm = visible_alarm(caller, session, alarm_id)
    key = alarm.image_key if status_ == 1 else alarm.clear_image_key
    if not key:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no picture for this record")
    spool = services.alarms.spool if services.alarms is not None else None
    return picture_response(
        services.objects,
        key,
        "picture not available yet",
        spool.get if spool is not None else None,
    )
