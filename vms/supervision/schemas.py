"""The shapes of reports, live figures and overdue alarms: stored as a report's JSON body,
returned by the API as they are (after scoping), rendered to CSV and HTML."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel


class OfflineSubject(BaseModel):
    """A point or camera offline longer than the interview limit in the period."""

    subject: Literal["sensor", "camera"]
    subject_id: str
    name: str = ""
    offline_s: float  # cumulative over the period
    longest_offline_s: float  # longest stretch within one day
    offline_days: float  # offline_s / 86400


class WarningFigures(BaseModel):
    """Sensor warnings raised in the month (monthly reports), blue excluded."""

    total: int = 0
    major: int = 0  # orange and red
    overdue: int = 0  # not closed within the on-site deadline of their peak level
    overdue_major: int = 0


class EnterpriseRow(BaseModel):
    org_id: int
    name: str
    code: str = ""
    org_path: str
    area_id: int | None = None  # the county (or city) the enterprise lies in
    area_name: str = ""
    sensors: int = 0
    cameras: int = 0
    days: int = 0  # days with figures
    data_rate: float | None = None  # points only
    video_rate: float | None = None  # cameras only
    offline_rate: float | None = None  # points and cameras: the rate the rules use
    warning_notice: bool = False  # rate above the limit: 预警通知
    interview: bool = False  # a point or camera offline > interview_days: 约谈
    area_interview: bool = False  # monthly: offline > area_interview_days: enterprise and area
    key_target: bool = False  # monthly: key target of annual enforcement
    key_target_reasons: list[str] = []
    offline_subjects: list[OfflineSubject] = []
    warnings: WarningFigures | None = None  # monthly reports only
    overdue_alarms: int = 0  # video alarms and warnings open too long when generated
    notices_queued: int = 0  # notification rows written for the warning notice


class AreaRow(BaseModel):
    """An area (county) interviewed with its enterprises (monthly, > area_interview_days)."""

    org_id: int
    name: str
    org_path: str
    enterprises: list[int]


class OverdueAlarm(BaseModel):
    """A video alarm or sensor warning not cleared/closed after overdue_alarm_hours."""

    source: Literal["video", "sensor"]
    ref: str  # alarm_id or warning_id
    org_id: int | None
    org_name: str = ""
    org_path: str = ""
    what: str  # alarm type name, or the point's tag and name
    level: str = ""  # sensor warnings: current level
    raised_at: datetime
    open_hours: float
    active: bool  # the condition still holds (not cleared)
    handling: str


class ReportLimits(BaseModel):
    offline_rate_limit: float
    interview_days: float
    area_interview_days: float
    overdue_alarm_hours: float
    frequent_warnings: int
    frequent_major_warnings: int
    onsite_deadline_hours: dict[str, float]


class ReportBody(BaseModel):
    kind: Literal["weekly", "monthly"]
    period_start: date
    period_end: date  # exclusive
    timezone: str
    generated_at: datetime
    limits: ReportLimits
    enterprises: list[EnterpriseRow] = []
    areas: list[AreaRow] = []
    overdue_alarms: list[OverdueAlarm] = []


class ReportSummary(BaseModel):
    """A stored report in a list: counts over the rows the caller may see."""

    id: int
    kind: Literal["weekly", "monthly"]
    period_start: date
    period_end: date
    generated_at: datetime
    enterprises: int
    warning_notices: int
    interviews: int
    area_interviews: int
    key_targets: int
    overdue_alarms: int


class ReportOut(ReportBody):
    id: int


class EnterpriseLive(BaseModel):
    """Now: points and cameras online/offline, and the offline rate of today and this week."""

    org_id: int
    name: str
    org_path: str
    sensors_online: int = 0
    sensors_offline: int = 0
    sensors_suspended: int = 0
    cameras_online: int = 0
    cameras_offline: int = 0
    cameras_suspended: int = 0
    today_rate: float | None = None
    week_rate: float | None = None  # Monday to today so far
    figures_at: datetime | None = None  # when the daily figures were last brought up to date


class DailyFigure(BaseModel):
    day: date
    subject: Literal["sensor", "camera"]
    subject_id: str
    org_id: int | None
    offline_s: float
    longest_offline_s: float
    monitored_s: float
