"""Alarm statistics: counts by type, enterprise, camera, day and hour; mean time to
acknowledge and to close.  Day/hour buckets are in the configured time zone.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from storage.models import Alarm, Channel, Device, Organisation

from . import codes


def statistics(session: Session, stmt: Select[Any], tz: str) -> dict[str, Any]:
    """``stmt`` selects the (already scoped and filtered) ``Alarm`` rows to count."""
    sub = stmt.subquery()
    a = sub.c
    total = session.scalar(select(func.count()).select_from(sub)) or 0
    by_type = [
        {
            "profile": p.value if hasattr(p, "value") else p,
            "alarm_type": t,
            "count": n,
            "name": codes.code_name(getattr(p, "value", p), t),
        }
        for p, t, n in session.execute(
            select(a.profile, a.alarm_type, func.count()).group_by(a.profile, a.alarm_type)
        ).all()
    ]
    by_org = [
        {"org_id": oid, "name": name or "", "count": n}
        for oid, name, n in session.execute(
            select(a.org_id, Organisation.name, func.count())
            .outerjoin(Organisation, Organisation.id == a.org_id)
            .group_by(a.org_id, Organisation.name)
            .order_by(func.count().desc())
        ).all()
    ]
    # per camera (device, channel): two devices may list one channel code; the camera's name
    # and device label the chart (both "" once the camera is gone)
    by_camera = [
        {"video_code": vc, "device_id": dev or "", "name": name or "", "count": n}
        for vc, dev, name, n in session.execute(
            select(a.video_code, Device.device_id, Channel.name, func.count())
            .outerjoin(Channel, Channel.id == a.channel_pk)
            .outerjoin(Device, Device.id == Channel.device_pk)
            .group_by(a.video_code, a.channel_pk, Device.device_id, Channel.name)
            .order_by(func.count().desc(), a.video_code)
        ).all()
    ]
    zone = ZoneInfo(tz)
    days: Counter[str] = Counter()
    hours: Counter[int] = Counter()
    ack: list[float] = []
    close: list[float] = []
    false_alarms = active = not_reported = 0
    rows = session.execute(
        select(
            Alarm.raised_at,
            Alarm.acknowledged_at,
            Alarm.closed_at,
            Alarm.false_alarm,
            Alarm.active,
            Alarm.uplink_video_code,
        ).where(Alarm.id.in_(select(a.id)))
    ).all()
    for raised, acked, closed, false_alarm, is_active, sent_as in rows:
        local = raised.astimezone(zone)
        days[local.strftime("%Y-%m-%d")] += 1
        hours[local.hour] += 1
        if acked is not None:
            ack.append((acked - raised).total_seconds())
        if closed is not None:
            close.append((closed - raised).total_seconds())
        false_alarms += bool(false_alarm)
        active += bool(is_active)
        not_reported += not sent_as  # the camera had no VIDEO_CODE: kept here only
    return {
        "total": total,
        "active": active,
        "false_alarms": false_alarms,
        "not_reported": not_reported,
        "by_type": sorted(by_type, key=lambda r: (r["profile"], int(r["alarm_type"]))),
        "by_org": by_org,
        "by_camera": by_camera,
        "by_day": [{"day": d, "count": n} for d, n in sorted(days.items())],
        "by_hour": [{"hour": h, "count": hours[h]} for h in range(24) if hours[h]],
        "mean_ack_s": sum(ack) / len(ack) if ack else None,
        "mean_close_s": sum(close) / len(close) if close else None,
        "acknowledged": len(ack),
        "closed": len(close),
    }
