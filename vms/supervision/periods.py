"""Local days, report periods and when each report falls due.

Days are the local days of ``server.timezone`` (Asia/Shanghai has no DST, but a zone with
DST gets 23- and 25-hour days right too: bounds are local midnights converted to UTC).
Weekly reports cover Monday 00:00 to Monday 00:00 and are due on Monday at
``supervision.report_time``; monthly reports cover a calendar month and are due on the 1st.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

ReportKind = Literal["weekly", "monthly"]
KINDS: tuple[ReportKind, ...] = ("weekly", "monthly")


class PeriodError(ValueError):
    """A report period that does not start where its kind starts (a Monday, a 1st)."""


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a local day, in UTC."""
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
    return start, end


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def parse_time(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def _previous_month(day: date) -> date:
    return date(day.year - (day.month == 1), (day.month - 2) % 12 + 1, 1)


@dataclass(frozen=True)
class Period:
    """A report period of local days: [start, end)."""

    kind: ReportKind
    start: date
    end: date  # exclusive

    @classmethod
    def of(cls, kind: str, start: date) -> Period:
        """The period of ``kind`` that starts on ``start``; anything else is a PeriodError."""
        if kind == "weekly":
            if start.weekday() != 0:
                raise PeriodError(f"a weekly period starts on a Monday, not on {start}")
            return cls("weekly", start, start + timedelta(days=7))
        if kind == "monthly":
            if start.day != 1:
                raise PeriodError(f"a monthly period starts on the 1st, not on {start}")
            return cls("monthly", start, _next_month(start))
        raise PeriodError(f"unknown report kind {kind!r} (weekly or monthly)")

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days)]

    def bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        return day_bounds(self.start, tz)[0], day_bounds(self.end, tz)[0]

    def due_at(self, tz: ZoneInfo, report_time: time) -> datetime:
        """When the report of this period is made: the day after it ends, at report_time."""
        return datetime.combine(self.end, report_time, tz).astimezone(UTC)


def latest_due(kind: ReportKind, now: datetime, tz: ZoneInfo, report_time: time) -> Period:
    """The newest period of ``kind`` whose report is due at ``now`` (or was due before)."""
    local = now.astimezone(tz)
    today = local.date()
    before_time = local.time().replace(tzinfo=None) < report_time
    if kind == "weekly":
        monday = today - timedelta(days=today.weekday())
        if monday == today and before_time:
            monday -= timedelta(days=7)
        return Period.of("weekly", monday - timedelta(days=7))
    first = today.replace(day=1)
    if first == today and before_time:
        first = _previous_month(first)
    return Period.of("monthly", _previous_month(first))


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())
