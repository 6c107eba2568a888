"""When Tables 2 and 3 are due, on the local wall clock.

The province expects Table 2 "at least once per calendar day" and Table 3 "every 10
minutes" (spec/alarms.md §2, §3).  A period counted from the last send drifts: 24 h plus
the scheduler's own tick slips past midnight and skips a day, and 600 s from start-up
lands at :03, :13, ...  So both are fixed points of the local day instead: Table 2 at
``uplink.table2_at`` (and whenever nothing was sent since the last such point, e.g. after
a restart), Table 3 on the multiples of its period counted from local midnight.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


def parse_clock(text: str) -> time:
    """``HH:MM`` (or ``HH:MM:SS``) → a time of day; ValueError naming the format."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"{text!r} is not HH:MM")
    h, m, s = (int(p) for p in (*parts, "00")[:3])
    if h > 23 or m > 59 or s > 59:
        raise ValueError(f"{text!r} is not a time of day")
    return time(h, m, s)


def _local_at(day: datetime, clock: time, tz: ZoneInfo) -> datetime:
    """``clock`` on ``day``'s local date, as UTC (a clock time a DST gap skips moves on)."""
    naive = datetime.combine(day.date(), clock)
    return naive.replace(tzinfo=tz).astimezone(UTC)


def last_table2_point(now: datetime, clock: time, tz: ZoneInfo) -> datetime:
    """The latest daily Table 2 time at or before ``now`` (UTC)."""
    local = now.astimezone(tz)
    today = _local_at(local, clock, tz)
    return today if today <= now else _local_at(local - timedelta(days=1), clock, tz)


def next_table2_point(now: datetime, clock: time, tz: ZoneInfo) -> datetime:
    """The first daily Table 2 time after ``now`` (UTC)."""
    local = now.astimezone(tz)
    today = _local_at(local, clock, tz)
    return today if today > now else _local_at(local + timedelta(days=1), clock, tz)


def next_slot(now: datetime, period_s: float, tz: ZoneInfo) -> datetime:
    """The first multiple of ``period_s`` after ``now``, counted from local midnight (UTC).

    A period that does not divide the day restarts at midnight: the last slot of a day may
    be shorter, never longer."""
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (local - midnight).total_seconds()
    slot = midnight + timedelta(seconds=(elapsed // period_s + 1) * period_s)
    return min(slot, midnight + timedelta(days=1)).astimezone(UTC)  # wall-clock arithmetic
