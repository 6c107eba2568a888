"""Alarms not cleared for a long time (Shandong's "发生报警后长时间未销警"), and the monthly
review of sensor warnings: not handled in time, or frequent.

Overdue: a video alarm still active or not closed, or a sensor warning still active or not
closed, raised more than ``supervision.overdue_alarm_hours`` ago.  Not handled in time: a
warning (blue excluded) not closed within the on-site deadline of its peak level —
yellow 24 h, orange 12 h, red 2 h (spec/sensors.md §4).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from storage.models import Alarm, HandlingState, Organisation
from storage.sensor_models import Sensor, SensorWarning, WarningLevel
from vms.alarms import codes

from .schemas import OverdueAlarm, WarningFigures

ONSITE_DEADLINE_H: dict[str, float] = {"yellow": 24.0, "orange": 12.0, "red": 2.0}
MAJOR_LEVELS = frozenset({WarningLevel.orange, WarningLevel.red})


def _in_path(stmt: Any, org_path: str | None) -> Any:
    return stmt if org_path is None else stmt.where(Organisation.path.startswith(org_path))


def overdue_alarms(
    session: Session, now: datetime, hours: float, org_path: str | None = None
) -> list[OverdueAlarm]:
    """Open too long at ``now``, oldest first; ``org_path`` limits to an organisation subtree."""
    cut = now - timedelta(hours=hours)
    out: list[OverdueAlarm] = []
    video = _in_path(
        select(Alarm, Organisation.name, Organisation.path)
        .outerjoin(Organisation, Organisation.id == Alarm.org_id)
        .where(Alarm.raised_at < cut)
        .where(or_(Alarm.active.is_(True), Alarm.handling != HandlingState.closed)),
        org_path,
    )
    for alarm, org_name, path in session.execute(video):
        out.append(
            OverdueAlarm(
                source="video",
                ref=alarm.alarm_id,
                org_id=alarm.org_id,
                org_name=org_name or "",
                org_path=path or "",
                what=f"{codes.code_name(alarm.profile.value, alarm.alarm_type)} {alarm.video_code}",
                raised_at=alarm.raised_at,
                open_hours=round((now - alarm.raised_at).total_seconds() / 3600, 2),
                active=alarm.active,
                handling=alarm.handling.value,
            )
        )
    sensor = _in_path(
        select(SensorWarning, Sensor.tag, Sensor.name, Organisation.name, Organisation.path)
        .outerjoin(Sensor, Sensor.id == SensorWarning.sensor_pk)
        .outerjoin(Organisation, Organisation.id == SensorWarning.org_id)
        .where(SensorWarning.raised_at < cut)
        .where(or_(SensorWarning.active.is_(True), SensorWarning.closed_at.is_(None))),
        org_path,
    )
    for warning, tag, name, org_name, path in session.execute(sensor):
        out.append(
            OverdueAlarm(
                source="sensor",
                ref=warning.warning_id,
                org_id=warning.org_id,
                org_name=org_name or "",
                org_path=path or "",
                what=f"{tag or '?'} {name or ''}".strip(),
                level=warning.level.value,
                raised_at=warning.raised_at,
                open_hours=round((now - warning.raised_at).total_seconds() / 3600, 2),
                active=warning.active,
                handling=warning.handling.value,
            )
        )
    out.sort(key=lambda a: (a.raised_at, a.ref))
    return out


def is_late(level: str, raised_at: datetime, closed_at: datetime | None, now: datetime) -> bool:
    """Not closed within the on-site deadline of ``level`` (still open at ``now`` counts)."""
    deadline = ONSITE_DEADLINE_H.get(level)
    if deadline is None:
        return False
    end = closed_at if closed_at is not None else now
    return end - raised_at > timedelta(hours=deadline)


def warning_figures(
    session: Session, start: datetime, end: datetime, now: datetime
) -> dict[int, WarningFigures]:
    """Per enterprise, the warnings (blue excluded) raised in [start, end)."""
    out: dict[int, WarningFigures] = defaultdict(WarningFigures)
    rows = session.execute(
        select(
            SensorWarning.org_id,
            SensorWarning.peak_level,
            SensorWarning.raised_at,
            SensorWarning.closed_at,
        ).where(
            SensorWarning.raised_at >= start,
            SensorWarning.raised_at < end,
            SensorWarning.peak_level != WarningLevel.blue,
            SensorWarning.org_id.is_not(None),
        )
    )
    for org_id, level, raised_at, closed_at in rows:
        f = out[org_id]
        major = level in MAJOR_LEVELS
        late = is_late(level.value, raised_at, closed_at, now)
        f.total += 1
        f.major += major
        f.overdue += late
        f.overdue_major += late and major
    return dict(out)
