"""Enterprise offline rates over a period, from the daily figures.

The regulation asks for the "daily-average data and video offline rate" without defining
it (spec/sensors.md §6).  Ours, per enterprise and period:

    rate(day)    = Σ offline_s / Σ monitored_s   over the enterprise's points and cameras
    rate(period) = mean of rate(day) over the period's days that had anything monitored

``monitored_s`` is 86400 for a subject watched the whole day, so a whole day is exactly
Σ offline seconds / (number of points and cameras × 86400); a subject added or suspended
during the day weighs only the part it was watched, and "today" the part so far.  The data
rate (points only) and the video rate (cameras only) are computed the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.sensor_models import OfflineDaily

Row = tuple[date, str, str, int | None, float, float, float]  # day, subject, id, org, ...


@dataclass
class SubjectTotal:
    """One point or camera over the period."""

    subject: str
    subject_id: str
    offline_s: float = 0.0
    longest_offline_s: float = 0.0  # the longest stretch within one day
    monitored_s: float = 0.0
    days: int = 0


@dataclass
class OrgFigures:
    org_id: int
    data_rate: float | None = None
    video_rate: float | None = None
    offline_rate: float | None = None
    days: int = 0  # days with anything monitored
    subjects: dict[tuple[str, str], SubjectTotal] = field(default_factory=dict)

    def count(self, subject: str) -> int:
        """Points or cameras watched at some time in the period (suspended ones are not)."""
        return sum(1 for t in self.subjects.values() if t.subject == subject and t.monitored_s)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(rows: Iterable[Row]) -> dict[int, OrgFigures]:
    """Per organisation: the three period rates and the per-subject totals."""
    # org → day → kind → [offline, monitored]
    daily: dict[int, dict[date, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    )
    out: dict[int, OrgFigures] = {}
    for day, subject, subject_id, org_id, offline, longest, monitored in rows:
        if org_id is None:
            continue
        figures = out.setdefault(org_id, OrgFigures(org_id))
        total = figures.subjects.setdefault(
            (subject, subject_id), SubjectTotal(subject, subject_id)
        )
        total.offline_s += offline
        total.monitored_s += monitored
        total.longest_offline_s = max(total.longest_offline_s, longest)
        total.days += monitored > 0
        for kind in (subject, "all"):
            cell = daily[org_id][day][kind]
            cell[0] += offline
            cell[1] += monitored
    for org_id, figures in out.items():
        rates: dict[str, list[float]] = defaultdict(list)
        for kinds in daily[org_id].values():
            for kind, (offline, monitored) in kinds.items():
                if monitored > 0:
                    rates[kind].append(min(1.0, offline / monitored))
        figures.data_rate = _mean(rates["sensor"])
        figures.video_rate = _mean(rates["camera"])
        figures.offline_rate = _mean(rates["all"])
        figures.days = len(rates["all"])
    return out


def period_figures(
    session: Session, start: date, end: date, org_ids: Collection[int] | None = None
) -> dict[int, OrgFigures]:
    """Figures of [start, end) from ``offline_daily``; ``org_ids`` limits the organisations."""
    d = OfflineDaily
    stmt: Any = select(
        d.day, d.subject, d.subject_id, d.org_id, d.offline_s, d.longest_offline_s, d.monitored_s
    ).where(d.day >= start, d.day < end)
    if org_ids is not None:
        stmt = stmt.where(d.org_id.in_(list(org_ids)))
    return aggregate(session.execute(stmt))
