"""AI alarms, scoped to the caller's organisation subtree."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from storage.models import Alarm, HandlingState, Profile

from ..deps import HUMANS, Caller, CallerDep, SessionDep, require_roles

router = APIRouter(prefix="/api/alarms", tags=["alarms"])


class AlarmOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    alarm_id: str
    alarm_type: str
    profile: Profile
    rule: str
    active: bool
    video_code: str
    device_code: str
    raised_at: datetime
    cleared_at: datetime | None
    handling: HandlingState
    false_alarm: bool
    org_id: int | None


def visible_alarm(caller: Caller, session: SessionDep, alarm_id: str) -> Alarm:
    alarm = session.scalar(
        caller.scope(select(Alarm).where(Alarm.alarm_id == alarm_id), Alarm.org_id)
    )
    if alarm is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alarm {alarm_id} not found")
    return alarm


@router.get("", response_model=list[AlarmOut], dependencies=[require_roles(*HUMANS)])
def list_alarms(
    caller: CallerDep,
    session: SessionDep,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[Alarm]:
    stmt = caller.scope(select(Alarm), Alarm.org_id).order_by(Alarm.raised_at.desc())
    return list(session.scalars(stmt.limit(limit).offset(offset)))


@router.get("/{alarm_id}", response_model=AlarmOut, dependencies=[require_roles(*HUMANS)])
def get_alarm(alarm_id: str, caller: CallerDep, session: SessionDep) -> Alarm:
    return visible_alarm(caller, session, alarm_id)
