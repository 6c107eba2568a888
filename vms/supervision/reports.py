"""Weekly and monthly supervision reports (spec/sensors.md §6, Binhai 第二十五, 二十八–三十二条).

Per enterprise: the offline rates of the period (``rates``); above ``offline_rate_limit`` a
warning notice (预警通知), recorded in the report and queued to the enterprise (safety
department, headquarters) and the district industry regulator; a point or camera offline
more than ``interview_days`` in the period → interview list (约谈); monthly, more than
``area_interview_days`` → interview of the enterprise and its area (county); monthly,
warnings not closed in time or frequent → key enforcement target.

"Offline > N days" is cumulative: the point's or camera's offline seconds summed over the
period (a camera down 12 h every day of a week is as dark as one down 3.5 days at a stretch,
and the sum includes every continuous stretch).  "Without reason" cannot be known: every
offline counts, except while the point or device is suspended (sensor disabled, device
disabled) — the declared suspension the regulation allows.

A report is stored once per kind and period (unique row): the notices are written in the
same transaction as the report, so a rerun, a restart or a second node never sends twice.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Channel, Organisation, OrgKind
from storage.sensor_models import Duty, Sensor, SupervisionReport
from vms.config import SupervisionSettings
from vms.warning.notices import queue_notices
from vms.warning.recipients import SITE_KINDS, resolve

from .overdue import ONSITE_DEADLINE_H, overdue_alarms, warning_figures
from .periods import Period
from .rates import OrgFigures, period_figures
from .schemas import (
    AreaRow,
    EnterpriseRow,
    OfflineSubject,
    ReportBody,
    ReportLimits,
    WarningFigures,
)

NOTICE_DUTIES = (Duty.safety_dept, Duty.hq, Duty.industry_regulator)
NOTICE_KIND = "supervision.offline_notice"
DAY_S = 86400.0

# key enforcement target reasons
OVERDUE_WARNINGS = "overdue_warnings"  # not closed within the on-site deadline
FREQUENT_WARNINGS = "frequent_warnings"
OVERDUE_MAJOR = "overdue_major_warnings"  # orange/red
FREQUENT_MAJOR = "frequent_major_warnings"


def _area(org: Organisation, orgs: dict[int, Organisation]) -> Organisation | None:
    """The county an enterprise lies in (the city when there is no county)."""
    chain = [orgs[int(i)] for i in org.path.strip("/").split("/") if i and int(i) in orgs]
    for kind in (OrgKind.county, OrgKind.city):
        found = [o for o in chain if o.kind == kind]
        if found:
            return found[-1]
    return None


def _subject_names(session: Session) -> dict[tuple[str, str], str]:
    names = {
        ("sensor", str(pk)): f"{tag} {name}".strip()
        for pk, tag, name in session.execute(select(Sensor.id, Sensor.tag, Sensor.name))
    }
    for code, name in session.execute(select(Channel.channel_id, Channel.name)):
        names.setdefault(("camera", code), name)
    return names


def _offline_subjects(
    figures: OrgFigures | None, days: float, names: dict[tuple[str, str], str]
) -> list[OfflineSubject]:
    if figures is None:
        return []
    over = [t for t in figures.subjects.values() if t.offline_s > days * DAY_S]
    over.sort(key=lambda t: (-t.offline_s, t.subject, t.subject_id))
    return [
        OfflineSubject(
            subject=t.subject,  # type: ignore[arg-type]
            subject_id=t.subject_id,
            name=names.get((t.subject, t.subject_id), ""),
            offline_s=round(t.offline_s, 1),
            longest_offline_s=round(t.longest_offline_s, 1),
            offline_days=round(t.offline_s / DAY_S, 3),
        )
        for t in over
    ]


def _key_target_reasons(w: WarningFigures, cfg: SupervisionSettings) -> list[str]:
    reasons = []
    if w.overdue:
        reasons.append(OVERDUE_WARNINGS)
    if w.total >= cfg.frequent_warnings:
        reasons.append(FREQUENT_WARNINGS)
    if w.overdue_major:
        reasons.append(OVERDUE_MAJOR)
    if w.major >= cfg.frequent_major_warnings:
        reasons.append(FREQUENT_MAJOR)
    return reasons


def _round(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 6)


def build_body(
    session: Session, period: Period, now: datetime, tz_name: str, cfg: SupervisionSettings
) -> ReportBody:
    """The report of ``period`` as of ``now``, from the stored daily figures."""
    tz = ZoneInfo(tz_name)
    monthly = period.kind == "monthly"
    figures = period_figures(session, period.start, period.end)
    orgs = {o.id: o for o in session.scalars(select(Organisation))}
    start, end = period.bounds(tz)
    warnings = warning_figures(session, start, end, now) if monthly else {}
    overdue = overdue_alarms(session, now, cfg.overdue_alarm_hours)
    overdue_by_org = Counter(a.org_id for a in overdue)
    names = _subject_names(session)
    rows: list[EnterpriseRow] = []
    areas: dict[int, AreaRow] = {}
    listed = [o for o in orgs.values() if o.kind in SITE_KINDS or o.id in figures]
    for org in sorted(listed, key=lambda o: o.path):
        f = figures.get(org.id)
        area = _area(org, orgs)
        rate = f.offline_rate if f else None
        row = EnterpriseRow(
            org_id=org.id,
            name=org.name,
            code=org.code,
            org_path=org.path,
            area_id=area.id if area else None,
            area_name=area.name if area else "",
            sensors=f.count("sensor") if f else 0,
            cameras=f.count("camera") if f else 0,
            days=f.days if f else 0,
            data_rate=_round(f.data_rate) if f else None,
            video_rate=_round(f.video_rate) if f else None,
            offline_rate=_round(rate),
            warning_notice=rate is not None and rate > cfg.offline_rate_limit,
            offline_subjects=_offline_subjects(f, cfg.interview_days, names),
            overdue_alarms=overdue_by_org.get(org.id, 0),
        )
        row.interview = bool(row.offline_subjects)
        if monthly:
            row.area_interview = any(
                s.offline_s > cfg.area_interview_days * DAY_S for s in row.offline_subjects
            )
            row.warnings = warnings.get(org.id, WarningFigures())
            row.key_target_reasons = _key_target_reasons(row.warnings, cfg)
            row.key_target = bool(row.key_target_reasons)
        if row.area_interview and area is not None:
            entry = areas.setdefault(
                area.id,
                AreaRow(org_id=area.id, name=area.name, org_path=area.path, enterprises=[]),
            )
            entry.enterprises.append(org.id)
        rows.append(row)
    return ReportBody(
        kind=period.kind,
        period_start=period.start,
        period_end=period.end,
        timezone=tz_name,
        generated_at=now,
        limits=ReportLimits(
            offline_rate_limit=cfg.offline_rate_limit,
            interview_days=cfg.interview_days,
            area_interview_days=cfg.area_interview_days,
            overdue_alarm_hours=cfg.overdue_alarm_hours,
            frequent_warnings=cfg.frequent_warnings,
            frequent_major_warnings=cfg.frequent_major_warnings,
            onsite_deadline_hours=ONSITE_DEADLINE_H,
        ),
        enterprises=rows,
        areas=sorted(areas.values(), key=lambda a: a.org_path),
        overdue_alarms=overdue,
    )


def _notice_text(row: EnterpriseRow, body: ReportBody) -> tuple[str, str]:
    last = body.period_end - timedelta(days=1)
    span = f"{body.period_start.isoformat()} – {last.isoformat()}"
    kind = {"weekly": "周报 weekly", "monthly": "月报 monthly"}[body.kind]
    subject = f"预警通知 Offline warning notice: {row.name} ({span})"
    lines = [
        f"{row.name} ({row.code})" if row.code else row.name,
        f"{kind} {span}",
        f"日均数据和视频离线率 daily-average data and video offline rate: "
        f"{(row.offline_rate or 0):.2%} > {body.limits.offline_rate_limit:.0%}",
    ]
    if row.data_rate is not None:
        lines.append(f"数据离线率 data offline rate: {row.data_rate:.2%}")
    if row.video_rate is not None:
        lines.append(f"视频离线率 video offline rate: {row.video_rate:.2%}")
    for s in row.offline_subjects:
        what = "监测点 point" if s.subject == "sensor" else "摄像机 camera"
        lines.append(f"{what} {s.name or s.subject_id}: {s.offline_days:.1f} 天 days offline")
    return subject, "\n".join(lines)


def queue_warning_notices(session: Session, body: ReportBody, webhooks: list[str]) -> int:
    """Notification rows for every enterprise over the limit; fills ``notices_queued``."""
    total = 0
    for row in body.enterprises:
        if not row.warning_notice:
            continue
        subject, text = _notice_text(row, body)
        payload = {
            "kind": NOTICE_KIND,
            "report": body.kind,
            "period_start": body.period_start.isoformat(),
            "period_end": body.period_end.isoformat(),
            "org_id": row.org_id,
            "org_path": row.org_path,
            "offline_rate": row.offline_rate,
            "data_rate": row.data_rate,
            "video_rate": row.video_rate,
        }
        recipients = resolve(session, row.org_id, NOTICE_DUTIES)
        queued = queue_notices(
            session, recipients, subject, text, payload, webhooks=webhooks, org_id=row.org_id
        )
        row.notices_queued = len(queued)
        total += len(queued)
    return total


def stored(session: Session, period: Period) -> SupervisionReport | None:
    return session.scalar(
        select(SupervisionReport).where(
            SupervisionReport.kind == period.kind,
            SupervisionReport.period_start == period.start,
        )
    )


def generate(
    session: Session,
    period: Period,
    now: datetime,
    tz_name: str,
    cfg: SupervisionSettings,
    webhooks: list[str] | None = None,
) -> tuple[SupervisionReport, bool]:
    """The stored report of ``period``, made now if there is none: (report, made now).

    A concurrent maker (another node) makes the flush fail on the unique row; the caller's
    transaction then rolls back, notices included, and the other node's report stands.
    """
    existing = stored(session, period)
    if existing is not None:
        return existing, False
    body = build_body(session, period, now, tz_name, cfg)
    queue_warning_notices(session, body, webhooks or [])
    report = SupervisionReport(
        kind=period.kind,
        period_start=period.start,
        period_end=period.end,
        generated_at=now,
        body=body.model_dump(mode="json"),
    )
    session.add(report)
    session.flush()
    return report, True
