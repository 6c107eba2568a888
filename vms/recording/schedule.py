"""Weekly recording windows in the node's local time: validation, "inside now?", next change.

A schedule is a list of windows ``{"days": [1..7], "start": "HH:MM", "end": "HH:MM"}``
(ISO weekdays, Monday = 1; seconds ``HH:MM:SS`` allowed; ``end`` may be ``24:00``).  A window
whose end is not after its start crosses midnight and belongs to the day it starts on
(``days: [5], 22:00-06:00`` is Friday 22:00 to Saturday 06:00).  An empty schedule means
"always record".

Local times become instants once per occurrence, so DST is handled as people expect: a
start inside the spring-forward hole begins when the clock jumps past it, and a time that
occurs twice in autumn means its first occurrence.  Pure code, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

DAY_S = 86400
HORIZON = timedelta(days=8)  # a weekly pattern changes within 7 days (+ a DST hour) or never
MAX_WINDOWS = 64
_CLOCK = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")


def clock_seconds(text: str, allow_24: bool = False) -> int:
    """``"HH:MM"`` or ``"HH:MM:SS"`` → seconds since midnight; ``24:00`` only as an end."""
    m = _CLOCK.match(text)
    if m is None:
        raise ValueError(f"time {text!r} is not HH:MM or HH:MM:SS")
    h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
    if mi > 59 or s > 59 or h > 24 or (h == 24 and (mi or s)):
        raise ValueError(f"time {text!r} is out of range")
    if h == 24 and not allow_24:
        raise ValueError(f"time {text!r}: 24:00 is only valid as an end")
    return h * 3600 + mi * 60 + s


class ScheduleWindow(BaseModel):
    """One weekly window as stored in ``Channel.record_schedule`` and sent to the API."""

    model_config = ConfigDict(extra="forbid")
    days: list[Annotated[int, Field(ge=1, le=7)]] = Field(min_length=1)  # ISO weekdays
    start: str
    end: str

    @field_validator("days")
    @classmethod
    def _unique_days(cls, days: list[int]) -> list[int]:
        return sorted(set(days))

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        clock_seconds(value)
        return value

    @field_validator("end")
    @classmethod
    def _end(cls, value: str) -> str:
        clock_seconds(value, allow_24=True)
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> ScheduleWindow:
        if clock_seconds(self.start) == clock_seconds(self.end, allow_24=True):
            raise ValueError("start and end are equal: use 00:00-24:00 for a whole day")
        return self


ScheduleList = Annotated[list[ScheduleWindow], Field(max_length=MAX_WINDOWS)]
_ADAPTER: TypeAdapter[list[ScheduleWindow]] = TypeAdapter(ScheduleList)


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]
    start: int  # seconds after local midnight
    end: int  # seconds after local midnight, 1..86400; <= start → ends the next day

    @classmethod
    def of(cls, w: ScheduleWindow) -> Window:
        return cls(frozenset(w.days), clock_seconds(w.start), clock_seconds(w.end, True))


def resolve(day: date, seconds: int, tz: ZoneInfo) -> datetime:
    """The instant (UTC) when the local wall clock of ``day`` first reaches ``seconds``."""
    naive = datetime.combine(day, time()) + timedelta(seconds=seconds)
    first = naive.replace(tzinfo=tz).astimezone(UTC)  # fold=0: the first of two occurrences
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first
    # the clock skipped this time: it starts when the clock jumps past it (1 s resolution)
    later = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = sorted((int(first.timestamp()), int(later.timestamp())))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


class Schedule:
    """Windows of one channel in one time zone; empty → always active, never changes."""

    def __init__(self, windows: Iterable[Window], tz: ZoneInfo) -> None:
        self.windows = tuple(windows)
        self.tz = tz

    @classmethod
    def parse(cls, raw: Any, tz: ZoneInfo) -> Schedule:
        """From the stored JSON (None/[] → always); ``pydantic.ValidationError`` if malformed."""
        items = _ADAPTER.validate_python(raw or [])
        return cls((Window.of(w) for w in items), tz)

    @property
    def always(self) -> bool:
        return not self.windows

    def occurrences(self, t: datetime) -> list[tuple[datetime, datetime]]:
        """Merged ``[start, end)`` instants of the windows from the day before ``t`` on."""
        today = t.astimezone(self.tz).date()
        spans: list[tuple[datetime, datetime]] = []
        for offset in range(-1, HORIZON.days + 1):
            day = today + timedelta(days=offset)
            for w in self.windows:
                if day.isoweekday() not in w.days:
                    continue
                end_day = day if w.end > w.start else day + timedelta(days=1)
                a, b = resolve(day, w.start, self.tz), resolve(end_day, w.end, self.tz)
                if b > a:
                    spans.append((a, b))
        spans.sort()
        merged: list[tuple[datetime, datetime]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged

    def active(self, t: datetime) -> bool:
        """Is ``t`` (an aware datetime) inside a window?"""
        if self.always:
            return True
        return any(a <= t < b for a, b in self.occurrences(t))

    def next_change(self, t: datetime) -> datetime | None:
        """The first instant after ``t`` where :meth:`active` flips; None if it never does."""
        if self.always:
            return None
        for a, b in self.occurrences(t):
            edge = a if a > t else b if b > t else None
            if edge is not None:
                return edge if edge - t <= HORIZON else None
        return None


def validate(raw: Sequence[Any] | None) -> list[dict[str, Any]]:
    """Normalised JSON of a schedule (for storage); ``pydantic.ValidationError`` if bad."""
    return [w.model_dump() for w in _ADAPTER.validate_python(raw or [])]
