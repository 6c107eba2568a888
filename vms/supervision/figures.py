"""Daily offline figures (``offline_daily``): per local day and point/camera, the offline
seconds, the longest continuous offline stretch within the day, and the monitored seconds.

Today is recomputed every ``supervision.interval_s`` (the row holds "today so far"); the day
before is recomputed too until it is well past, so events flushed just after midnight still
count, and then it is final.  Rows are upserted, so a rerun or a second node changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.sensor_models import OfflineDaily
from vms.config import Settings

from .histories import StateCache, SubjectSpans, camera_spans, sensor_spans
from .periods import day_bounds
from .spans import clip, totals

UPSERT_BATCH = 2000


@dataclass(frozen=True)
class Limits:
    """How long a silent subject still counts as online."""

    sensor_offline_after_s: float
    keepalive_limit_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        sip = settings.sip
        # keepalive_at is written at most every half interval: one interval of slack
        return cls(
            settings.ingest.offline_after_s,
            sip.keepalive_interval_s * (sip.keepalive_misses + 1),
        )


def day_rows(
    subjects: list[SubjectSpans], day: date, tz: ZoneInfo, now: datetime
) -> list[dict[str, Any]]:
    """The ``offline_daily`` rows of one day (up to ``now`` for today)."""
    start, end = day_bounds(day, tz)
    end = min(end, now)
    rows: list[dict[str, Any]] = []
    if end <= start:
        return rows
    for s in subjects:
        watch = max(start, s.exists_from)
        if watch >= end:
            continue  # not there yet that day
        if s.suspended:
            offline = longest = monitored = 0.0
        else:
            monitored = (end - watch).total_seconds()
            offline, longest = totals(clip(s.spans, watch, end))
        rows.append(
            {
                "day": day,
                "subject": s.subject,
                "subject_id": s.subject_id,
                "org_id": s.org_id,
                "offline_s": round(offline, 3),
                "longest_offline_s": round(longest, 3),
                "monitored_s": round(monitored, 3),
            }
        )
    return rows


def upsert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    for i in range(0, len(rows), UPSERT_BATCH):
        stmt = insert(OfflineDaily)
        stmt = stmt.on_conflict_do_update(
            index_elements=["day", "subject", "subject_id"],
            set_={
                c: stmt.excluded[c]
                for c in ("org_id", "offline_s", "longest_offline_s", "monitored_s")
            },
        )
        session.execute(stmt, rows[i : i + UPSERT_BATCH])


def refresh_days(
    session: Session,
    first: date,
    last: date,
    now: datetime,
    tz: ZoneInfo,
    limits: Limits,
    cache: StateCache | None = None,
) -> int:
    """Recompute and store the figures of the local days ``first``..``last``; rows written."""
    start = day_bounds(first, tz)[0]
    end = min(day_bounds(last, tz)[1], now)
    if end <= start:
        return 0
    subjects = sensor_spans(session, start, end, now, limits.sensor_offline_after_s, cache)
    subjects += camera_spans(session, start, end, now, limits.keepalive_limit_s, cache)
    rows: list[dict[str, Any]] = []
    day = first
    while day <= last:
        rows += day_rows(subjects, day, tz, now)
        day += timedelta(days=1)
    upsert_rows(session, rows)
    return len(rows)
