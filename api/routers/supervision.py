"""Offline supervision, scoped to the caller's organisation subtree: live figures per
enterprise, daily figures, alarms left open too long, and the stored weekly/monthly reports
(JSON, CSV, printable HTML).  A county operator sees its subtree's rows of a report, an
enterprise user its own row; an organisation outside the caller's subtree is a 404.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import anyio
from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import Organisation
from storage.sensor_models import OfflineDaily, SupervisionReport
from vms.services import Services
from vms.supervision.figures import Limits, refresh_days
from vms.supervision.live import live_figures
from vms.supervision.overdue import overdue_alarms
from vms.supervision.periods import Period, PeriodError, local_day
from vms.supervision.render import to_csv, to_html
from vms.supervision.reports import generate, stored
from vms.supervision.schemas import (
    DailyFigure,
    EnterpriseLive,
    OverdueAlarm,
    ReportBody,
    ReportOut,
    ReportSummary,
)
from vms.supervision.service import REPORT_EVENT

from ..deps import ADMIN, HUMANS, Caller, CallerDep, ServicesDep, SessionDep, require_roles

router = APIRouter(prefix="/api/supervision", tags=["supervision"])


class ReportIn(BaseModel):
    kind: Literal["weekly", "monthly"]
    period_start: date  # a Monday (weekly) or a 1st (monthly)


def _now(services: Services) -> datetime:
    sup = services.supervision
    return sup.clock() if sup is not None else datetime.now(UTC)


def _scope_path(caller: Caller, session: Session, org_id: int | None) -> str | None:
    """The path prefix to show: the caller's subtree, narrowed to ``org_id``'s (404 outside)."""
    if org_id is None:
        return caller.org_path
    org = session.get(Organisation, org_id)
    if org is None or not caller.sees_path(org.path):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"organisation {org_id} not found")
    return org.path


def _sees(prefix: str | None, path: str | None) -> bool:
    return prefix is None or (path is not None and path.startswith(prefix))


def scoped_body(body: ReportBody, prefix: str | None) -> ReportBody:
    """The rows of a report under ``prefix`` (None: all of them)."""
    enterprises = [r for r in body.enterprises if _sees(prefix, r.org_path)]
    ids = {r.org_id for r in enterprises}
    areas = []
    for a in body.areas:
        mine = [e for e in a.enterprises if e in ids]
        if mine:
            areas.append(a.model_copy(update={"enterprises": mine}))
    overdue = [a for a in body.overdue_alarms if _sees(prefix, a.org_path)]
    return body.model_copy(
        update={"enterprises": enterprises, "areas": areas, "overdue_alarms": overdue}
    )


def _report(session: Session, report_id: int) -> SupervisionReport:
    report = session.get(SupervisionReport, report_id)
    if report is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"report {report_id} not found")
    return report


def _visible_report(
    caller: Caller, session: Session, report_id: int, org_id: int | None
) -> tuple[ReportBody, str | None]:
    prefix = _scope_path(caller, session, org_id)
    report = _report(session, report_id)
    return scoped_body(ReportBody.model_validate(report.body), prefix), prefix


def _out(report_id: int, body: ReportBody) -> ReportOut:
    return ReportOut(id=report_id, **body.model_dump())


def _summary(report: SupervisionReport, body: ReportBody) -> ReportSummary:
    rows = body.enterprises
    return ReportSummary(
        id=report.id,
        kind=body.kind,
        period_start=report.period_start,
        period_end=report.period_end,
        generated_at=report.generated_at,
        enterprises=len(rows),
        warning_notices=sum(r.warning_notice for r in rows),
        interviews=sum(r.interview for r in rows),
        area_interviews=sum(r.area_interview for r in rows),
        key_targets=sum(r.key_target for r in rows),
        overdue_alarms=len(body.overdue_alarms),
    )


@router.get("/live", response_model=list[EnterpriseLive], dependencies=[require_roles(*HUMANS)])
def live(
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    org_id: int | None = Query(None, description="an organisation and everything under it"),
) -> list[EnterpriseLive]:
    """Per enterprise now: points and cameras online/offline, today's and this week's rate."""
    prefix = _scope_path(caller, session, org_id)
    sup = services.supervision
    return live_figures(
        session,
        _now(services),
        ZoneInfo(services.settings.server.timezone),
        Limits.from_settings(services.settings),
        sup.figures_at if sup is not None else None,
        prefix,
    )


@router.get("/live/{org_id}", response_model=EnterpriseLive, dependencies=[require_roles(*HUMANS)])
def live_one(
    org_id: int, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> EnterpriseLive:
    rows = live(caller, session, services, org_id)
    row = next((r for r in rows if r.org_id == org_id), None)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"enterprise {org_id} not found")
    return row


@router.get(
    "/overdue-alarms", response_model=list[OverdueAlarm], dependencies=[require_roles(*HUMANS)]
)
def overdue(
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    org_id: int | None = Query(None, description="an organisation and everything under it"),
    hours: float | None = Query(None, gt=0, description="default: supervision.overdue_alarm_hours"),
    limit: int = Query(1000, ge=1, le=100000),
) -> list[OverdueAlarm]:
    """Video alarms and sensor warnings still open after the limit, oldest first."""
    prefix = _scope_path(caller, session, org_id)
    open_hours = hours or services.settings.supervision.overdue_alarm_hours
    return overdue_alarms(session, _now(services), open_hours, prefix)[:limit]


@router.get("/daily", response_model=list[DailyFigure], dependencies=[require_roles(*HUMANS)])
def daily(
    caller: CallerDep,
    session: SessionDep,
    start: date = Query(..., description="first local day"),
    end: date = Query(..., description="day after the last one"),
    org_id: int | None = Query(None, description="an organisation and everything under it"),
    subject: Literal["sensor", "camera"] | None = None,
    limit: int = Query(10000, ge=1, le=100000),
) -> list[DailyFigure]:
    """The stored daily offline figures of points and cameras."""
    if end <= start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "end must be after start")
    prefix = _scope_path(caller, session, org_id)
    stmt = select(OfflineDaily).where(OfflineDaily.day >= start, OfflineDaily.day < end)
    if prefix is not None:
        sub = select(Organisation.id).where(Organisation.path.startswith(prefix))
        stmt = stmt.where(OfflineDaily.org_id.in_(sub))
    if subject is not None:
        stmt = stmt.where(OfflineDaily.subject == subject)
    stmt = stmt.order_by(OfflineDaily.day, OfflineDaily.subject, OfflineDaily.subject_id)
    return [
        DailyFigure.model_validate(r, from_attributes=True)
        for r in session.scalars(stmt.limit(limit))
    ]


@router.get("/reports", response_model=list[ReportSummary], dependencies=[require_roles(*HUMANS)])
def list_reports(
    caller: CallerDep,
    session: SessionDep,
    kind: Literal["weekly", "monthly"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> list[ReportSummary]:
    """Newest first; the counts cover the rows the caller may see."""
    stmt = select(SupervisionReport)
    if kind is not None:
        stmt = stmt.where(SupervisionReport.kind == kind)
    stmt = stmt.order_by(SupervisionReport.period_start.desc(), SupervisionReport.id.desc())
    return [
        _summary(r, scoped_body(ReportBody.model_validate(r.body), caller.org_path))
        for r in session.scalars(stmt.limit(limit))
    ]


@router.post("/reports", response_model=ReportOut, dependencies=[require_roles(*ADMIN)])
def make_report(
    body: ReportIn,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    response: Response,
) -> ReportOut:
    """Make the report of a finished period now (201), or return the stored one (200); the
    answer holds the rows of the caller's subtree, like ``GET /reports/{id}``.

    The period's daily figures are recomputed from the event histories first, so a period
    the server was down for gets its figures too."""
    settings = services.settings
    try:
        period = Period.of(body.kind, body.period_start)
    except PeriodError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    now = _now(services)
    tz = ZoneInfo(settings.server.timezone)
    if period.end > local_day(now, tz):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"the period {period.start} – {period.end} is not over"
        )
    report = stored(session, period)
    if report is None:
        last = period.end - timedelta(days=1)
        refresh_days(session, period.start, last, now, tz, Limits.from_settings(settings))
        webhooks = list(settings.warning.webhooks)
        cfg = settings.supervision
        report, _ = generate(session, period, now, settings.server.timezone, cfg, webhooks)
        try:
            session.commit()
        except IntegrityError:  # made by the job or another node meanwhile
            session.rollback()
            report = stored(session, period)
            assert report is not None
        else:
            response.status_code = status.HTTP_201_CREATED
            data = {
                "report_id": report.id,
                "report_kind": period.kind,
                "period_start": period.start.isoformat(),
                "period_end": period.end.isoformat(),
            }
            anyio.from_thread.run_sync(lambda: services.events.publish(REPORT_EVENT, **data))
    return _out(report.id, scoped_body(ReportBody.model_validate(report.body), caller.org_path))


@router.get("/reports/{report_id}", response_model=ReportOut, dependencies=[require_roles(*HUMANS)])
def get_report(
    report_id: int,
    caller: CallerDep,
    session: SessionDep,
    org_id: int | None = Query(None, description="only this organisation's subtree"),
) -> ReportOut:
    body, _ = _visible_report(caller, session, report_id, org_id)
    return _out(report_id, body)


@router.get("/reports/{report_id}/export.csv", dependencies=[require_roles(*HUMANS)])
def report_csv(
    report_id: int,
    caller: CallerDep,
    session: SessionDep,
    org_id: int | None = Query(None, description="only this organisation's subtree"),
    section: Literal["enterprises", "overdue"] = "enterprises",
) -> Response:
    """The enterprise rows (or the overdue alarms) as UTF-8 CSV with a BOM."""
    body, _ = _visible_report(caller, session, report_id, org_id)
    name = f"supervision-{body.kind}-{body.period_start}-{section}.csv"
    return Response(
        to_csv(body, section),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/reports/{report_id}/print", response_class=HTMLResponse, dependencies=[require_roles(*HUMANS)]
)
def report_print(
    report_id: int,
    caller: CallerDep,
    session: SessionDep,
    org_id: int | None = Query(None, description="only this organisation's subtree"),
) -> HTMLResponse:
    """A printable page (A4 landscape print CSS); open it with ``?token=`` in a browser."""
    body, prefix = _visible_report(caller, session, report_id, org_id)
    title = ""
    if prefix is not None:
        org = session.scalar(select(Organisation).where(Organisation.path == prefix))
        title = org.name if org is not None else ""
    return HTMLResponse(to_html(body, title))
