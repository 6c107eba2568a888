"""1-minute and 1-hour aggregates, built as readings pass and merged into the database.

Charts over a day or a month read buckets, not raw rows.  Buckets are summed in memory
(a dict update per reading) and written when they close; a late reading for a bucket
already written is merged by an upsert (count and sum added, min/max widened, ``last``
kept from whichever side is newer), so the figures stay exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, case, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from storage.sensor_models import ReadingAggregate

PERIODS = (60, 3600)
CLOSE_GRACE_S = 5.0  # a bucket is written this long after it ends (readings arrive late)

Key = tuple[int, int, int]  # sensor_pk, period, bucket start (epoch seconds)


class Bucket:
    __slots__ = ("count", "min", "max", "sum", "last", "last_ts")

    def __init__(self, value: float, ts: float) -> None:
        self.count = 1
        self.min = self.max = self.sum = self.last = value
        self.last_ts = ts

    def add(self, value: float, ts: float) -> None:
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        elif value > self.max:
            self.max = value
        if ts >= self.last_ts:
            self.last, self.last_ts = value, ts


class Aggregator:
    def __init__(self) -> None:
        self.buckets: dict[Key, Bucket] = {}

    def add(self, sensor_pk: int, ts: float, value: float) -> None:
        for period in PERIODS:
            key = (sensor_pk, period, int(ts // period) * period)
            bucket = self.buckets.get(key)
            if bucket is None:
                self.buckets[key] = Bucket(value, ts)
            else:
                bucket.add(value, ts)

    def take(self, now_ts: float | None = None) -> list[tuple[Key, Bucket]]:
        """Remove and return the closed buckets (all of them when ``now_ts`` is None)."""
        if now_ts is None:
            out = list(self.buckets.items())
            self.buckets.clear()
            return out
        closed = [k for k in self.buckets if k[2] + k[1] + CLOSE_GRACE_S <= now_ts]
        return [(k, self.buckets.pop(k)) for k in closed]

    def put_back(self, items: Iterable[tuple[Key, Bucket]]) -> None:
        """After a failed write: merge the buckets back so that nothing is lost."""
        for key, b in items:
            known = self.buckets.get(key)
            if known is None:
                self.buckets[key] = b
                continue
            known.count += b.count
            known.sum += b.sum
            known.min = min(known.min, b.min)
            known.max = max(known.max, b.max)
            if b.last_ts >= known.last_ts:
                known.last, known.last_ts = b.last, b.last_ts


def _rows(items: list[tuple[Key, Bucket]]) -> list[dict[str, Any]]:
    return [
        {
            "sensor_pk": pk,
            "period": period,
            "bucket": datetime.fromtimestamp(start, UTC),
            "count": b.count,
            "min": b.min,
            "max": b.max,
            "sum": b.sum,
            "last": b.last,
            "last_at": datetime.fromtimestamp(b.last_ts, UTC),
        }
        for (pk, period, start), b in items
    ]


def upsert_aggregates(conn: Connection, items: list[tuple[Key, Bucket]]) -> None:
    """Merge buckets into ``reading_aggregates`` in the connection's open transaction."""
    if not items:
        return
    table = ReadingAggregate.__table__
    postgres = conn.dialect.name == "postgresql"
    stmt = (pg_insert if postgres else sqlite_insert)(table)
    new = stmt.excluded
    least, greatest = (func.least, func.greatest) if postgres else (func.min, func.max)
    newer = new.last_at >= table.c.last_at
    stmt = stmt.on_conflict_do_update(
        index_elements=["sensor_pk", "period", "bucket"],
        set_={
            "count": table.c.count + new.count,
            "sum": table.c.sum + new.sum,
            "min": least(table.c.min, new.min),
            "max": greatest(table.c.max, new.max),
            "last": case((newer, new.last), else_=table.c.last),
            "last_at": case((newer, new.last_at), else_=table.c.last_at),
        },
    )
    rows = _rows(items)
    for i in range(0, len(rows), 2000):
        conn.execute(stmt, rows[i : i + 2000])
