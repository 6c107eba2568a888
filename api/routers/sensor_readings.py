"""A point's readings for charts and export: raw rows for short ranges, 1-minute or 1-hour
buckets (min/max/avg/last) for longer ones, so a month's chart reads 720 rows, not 2.6 million.

``step`` picks the resolution (0 raw, 60, 3600); without it the finest one whose rows fit
in ``limit`` is taken (raw only up to ``RAW_MAX_SPAN``).  Buckets still open in the ingest
service (the current minute and hour) are merged in, so the newest bucket is not missing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.sensor_models import Quality, Reading, ReadingAggregate, Sensor

from ..deps import HUMANS, CallerDep, ServicesDep, SessionDep, require_roles
from ..sensor_access import invalid, visible_row

router = APIRouter(prefix="/api/sensors", tags=["sensors"])

RAW_MAX_SPAN = timedelta(hours=6)
DEFAULT_SPAN = timedelta(hours=1)
MAX_LIMIT = 10_000
CSV_MAX_ROWS = 1_000_000
STEPS = (0, 60, 3600)
QUALITY_NAMES = {q.value: q.name for q in Quality}


class ReadingsOut(BaseModel):
    sensor_id: int
    tag: str
    unit: str
    start: datetime
    end: datetime
    step: int  # 0 raw rows; 60 or 3600 buckets
    truncated: bool  # more rows than ``limit``: narrow the range or take a coarser step
    rows: list[dict[str, Any]]  # raw: at, value, quality; buckets: at, count, min, max, avg, last


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _window(
    start: datetime | None, end: datetime | None, step: int | None
) -> tuple[datetime, datetime]:
    if step is not None and step not in STEPS:
        raise invalid([("step", f"step must be one of {list(STEPS)} (0 = raw rows)")], "query")
    end = _aware(end) if end is not None else datetime.now(UTC)
    start = _aware(start) if start is not None else end - DEFAULT_SPAN
    if start >= end:
        raise invalid([("start", "start must be before end")], "query")
    return start.astimezone(UTC), end.astimezone(UTC)


def _raw_count(session: Session, pk: int, start: datetime, end: datetime, cap: int) -> int:
    inner = (
        select(Reading.id)
        .where(Reading.sensor_pk == pk, Reading.at >= start, Reading.at < end)
        .limit(cap + 1)
    )
    return session.scalar(select(func.count()).select_from(inner.subquery())) or 0


def choose_step(
    session: Session, pk: int, start: datetime, end: datetime, cap: int, step: int | None
) -> int:
    if step is not None:
        return step
    span = end - start
    if span <= RAW_MAX_SPAN and _raw_count(session, pk, start, end, cap) <= cap:
        return 0
    return 60 if span.total_seconds() / 60 <= cap else 3600


def _floor(at: datetime, period: int) -> datetime:
    return datetime.fromtimestamp(int(at.timestamp() // period) * period, UTC)


def raw_rows(session: Session, pk: int, start: datetime, end: datetime) -> Any:
    return session.execute(
        select(Reading.at, Reading.value, Reading.quality)
        .where(Reading.sensor_pk == pk, Reading.at >= start, Reading.at < end)
        .order_by(Reading.at, Reading.id)
        .execution_options(yield_per=5000)
    )


def bucket_rows(
    session: Session, pk: int, period: int, start: datetime, end: datetime, open_buckets: Any
) -> Iterator[dict[str, Any]]:
    """Stored buckets merged with the ones the ingest service still holds open."""
    stmt = (
        select(ReadingAggregate)
        .where(
            ReadingAggregate.sensor_pk == pk,
            ReadingAggregate.period == period,
            ReadingAggregate.bucket >= _floor(start, period),
            ReadingAggregate.bucket < end,
        )
        .order_by(ReadingAggregate.bucket)
        .execution_options(yield_per=5000)
    )
    pending = _open(pk, period, start, end, open_buckets)
    for agg in session.scalars(stmt):
        while pending and pending[0][0] < agg.bucket:
            yield _bucket(*pending.pop(0))
        row = {"count": agg.count, "min": agg.min, "max": agg.max, "sum": agg.sum}
        row |= {"last": agg.last, "last_ts": agg.last_at.timestamp()}
        if pending and pending[0][0] == agg.bucket:
            row = _merge(row, pending.pop(0)[1])
        yield _bucket(agg.bucket, row)
    for at, row in pending:
        yield _bucket(at, row)


def _open(pk: int, period: int, start: datetime, end: datetime, buckets: Any) -> list[Any]:
    """The last two buckets up to now, if the ingest service has not written them yet."""
    if buckets is None:
        return []
    now = datetime.now(UTC)
    first = max(
        int(_floor(start, period).timestamp()), int(now.timestamp()) // period * period - period
    )
    out = []
    for ts in range(first, int(min(end, now).timestamp()) + 1, period):
        b = buckets.get((pk, period, ts))  # a single dict read: safe beside the event loop
        if b is not None:
            at = datetime.fromtimestamp(ts, UTC)
            fields = {"count": b.count, "min": b.min, "max": b.max, "sum": b.sum}
            out.append((at, fields | {"last": b.last, "last_ts": b.last_ts}))
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    newer = b if b["last_ts"] >= a["last_ts"] else a
    return {
        "count": a["count"] + b["count"],
        "min": min(a["min"], b["min"]),
        "max": max(a["max"], b["max"]),
        "sum": a["sum"] + b["sum"],
        "last": newer["last"],
        "last_ts": newer["last_ts"],
    }


def _bucket(at: datetime, b: dict[str, Any]) -> dict[str, Any]:
    avg = b["sum"] / b["count"] if b["count"] else None
    return {"at": at, "avg": avg} | {k: b[k] for k in ("count", "min", "max", "last")}


def _open_buckets(services: Any) -> Any:
    ingest = services.ingest
    return ingest.aggregator.buckets if ingest is not None else None


@router.get(
    "/{sensor_id}/readings", response_model=ReadingsOut, dependencies=[require_roles(*HUMANS)]
)
def readings(
    sensor_id: int,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    start: datetime | None = Query(None, description="from (ISO 8601); default end − 1 h"),
    end: datetime | None = Query(None, description="before (ISO 8601); default now"),
    step: int | None = Query(None, description="0 raw, 60 or 3600 s buckets; default: auto"),
    limit: int = Query(5000, ge=1, le=MAX_LIMIT),
) -> ReadingsOut:
    row = visible_row(caller, session, Sensor, sensor_id, "sensor")
    start, end = _window(start, end, step)
    chosen = choose_step(session, row.id, start, end, limit, step)
    if chosen == 0:
        items: Iterator[dict[str, Any]] = (
            {"at": at, "value": value, "quality": quality}
            for at, value, quality in raw_rows(session, row.id, start, end)
        )
    else:
        items = bucket_rows(session, row.id, chosen, start, end, _open_buckets(services))
    rows = []
    for item in items:
        rows.append(item)
        if len(rows) > limit:
            break
    return ReadingsOut(
        sensor_id=row.id,
        tag=row.tag,
        unit=row.unit,
        start=start,
        end=end,
        step=chosen,
        truncated=len(rows) > limit,
        rows=rows[:limit],
    )


@router.get("/{sensor_id}/readings.csv", dependencies=[require_roles(*HUMANS)])
def readings_csv(
    sensor_id: int,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    start: datetime | None = Query(None),
    end: datetime | None = Query(None),
    step: int | None = Query(None, description="0 raw, 60 or 3600; default: raw when it fits"),
) -> StreamingResponse:
    """UTF-8 CSV with a BOM (spreadsheets read 中文), times in the node's time zone, at most
    ``CSV_MAX_ROWS`` rows (a longer range of raw rows falls back to 1-minute buckets)."""
    row = visible_row(caller, session, Sensor, sensor_id, "sensor")
    start, end = _window(start, end, step)
    pk, tag, unit = row.id, row.tag, row.unit
    span_ok = (end - start).total_seconds() / 60 <= CSV_MAX_ROWS
    if step is None:
        fits = _raw_count(session, pk, start, end, CSV_MAX_ROWS) <= CSV_MAX_ROWS
        step = 0 if fits else (60 if span_ok else 3600)
    tz = ZoneInfo(services.settings.server.timezone)
    open_buckets = _open_buckets(services)

    def generate() -> Iterator[str]:
        buf = io.StringIO()
        out = csv.writer(buf)
        buf.write("\ufeff")
        with services.db.sessions() as s:
            if step == 0:
                out.writerow(("tag", "unit", "at", "value", "quality"))
                items: Iterator[tuple[Any, ...]] = (
                    (tag, unit, at.astimezone(tz).isoformat(), value, QUALITY_NAMES.get(q, q))
                    for at, value, q in raw_rows(s, pk, start, end)
                )
            else:
                out.writerow(("tag", "unit", "bucket", "count", "min", "max", "avg", "last"))
                items = (
                    (tag, unit, b["at"].astimezone(tz).isoformat())
                    + tuple(b[k] for k in ("count", "min", "max", "avg", "last"))
                    for b in bucket_rows(s, pk, step, start, end, open_buckets)
                )
            for n, item in enumerate(items):
                if n >= CSV_MAX_ROWS:
                    break
                out.writerow(item)
                if buf.tell() > 64 * 1024:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
        yield buf.getvalue()

    name = f"{tag}-{'raw' if step == 0 else f'{step}s'}.csv"
    headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}"}
    return StreamingResponse(generate(), media_type="text/csv; charset=utf-8", headers=headers)
