"""Live offline statistics per enterprise: what is online now, and the rates so far.

Online now follows the same rules as the daily figures: a point is online when the ingest
service says so and its last reading is within ``ingest.offline_after_s``; a camera when
its device is online (keepalive within the limit) and its catalog status is not OFF.
Today's and this week's rates come from the daily figures, which are at most
``supervision.interval_s`` old (``figures_at`` says when they were brought up to date).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Channel, Device, DeviceStatus, Organisation
from storage.sensor_models import Sensor
from vms.warning.recipients import SITE_KINDS

from .channels import is_off
from .figures import Limits
from .periods import local_day, week_start
from .rates import period_figures
from .schemas import EnterpriseLive


def _fresh(at: datetime | None, now: datetime, limit_s: float) -> bool:
    return at is not None and now - at <= timedelta(seconds=limit_s)


def live_figures(
    session: Session,
    now: datetime,
    tz: ZoneInfo,
    limits: Limits,
    figures_at: datetime | None = None,
    org_path: str | None = None,
) -> list[EnterpriseLive]:
    """One row per enterprise (and any organisation owning points or cameras) under
    ``org_path`` (None: all), ordered by the organisation tree."""
    stmt = select(Organisation)
    if org_path is not None:
        stmt = stmt.where(Organisation.path.startswith(org_path))
    orgs = {o.id: o for o in session.scalars(stmt)}
    rows: dict[int, EnterpriseLive] = {}

    def row(org_id: int) -> EnterpriseLive | None:
        org = orgs.get(org_id)
        if org is None:
            return None
        if org_id not in rows:
            rows[org_id] = EnterpriseLive(
                org_id=org_id, name=org.name, org_path=org.path, figures_at=figures_at
            )
        return rows[org_id]

    for org in orgs.values():
        if org.kind in SITE_KINDS:
            row(org.id)
    for org_id, enabled, online, last_at in session.execute(
        select(Sensor.org_id, Sensor.enabled, Sensor.online, Sensor.last_reading_at)
    ):
        r = row(org_id)
        if r is None:
            continue
        if not enabled:
            r.sensors_suspended += 1
        elif online and _fresh(last_at, now, limits.sensor_offline_after_s):
            r.sensors_online += 1
        else:
            r.sensors_offline += 1
    for org_id, dev_status, dev_online, ka, reg, ch_status in session.execute(
        select(
            Device.org_id,
            Device.status,
            Device.online,
            Device.keepalive_at,
            Device.registered_at,
            Channel.status,
        ).join(Device, Channel.device_pk == Device.id)
    ):
        r = row(org_id) if org_id is not None else None
        if r is None:
            continue
        heard = max((t for t in (ka, reg) if t), default=None)
        if dev_status != DeviceStatus.active:
            r.cameras_suspended += 1
        elif dev_online and _fresh(heard, now, limits.keepalive_limit_s) and not is_off(ch_status):
            r.cameras_online += 1
        else:
            r.cameras_offline += 1
    today = local_day(now, tz)
    monday = week_start(today)
    ids = list(rows)
    week = period_figures(session, monday, today + timedelta(days=1), ids)
    day = period_figures(session, today, today + timedelta(days=1), ids)
    for org_id, r in rows.items():
        if org_id in week:
            r.week_rate = week[org_id].offline_rate
        if org_id in day:
            r.today_rate = day[org_id].offline_rate
    return sorted(rows.values(), key=lambda r: r.org_path)
