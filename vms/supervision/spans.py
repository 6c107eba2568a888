"""Offline time from a state history: spans, their union, and the day's totals.

Pure functions on aware datetimes, so midnight, partial days and the union of a camera's
two causes (device offline, catalog status OFF) are tested without a database.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

Span = tuple[datetime, datetime]  # [start, end)


def offline_spans(
    start: datetime,
    end: datetime,
    online_at_start: bool,
    changes: Iterable[tuple[datetime, bool]],
    online_until: datetime | None = None,
) -> list[Span]:
    """The offline parts of [start, end) for a subject whose state is ``online_at_start`` at
    ``start`` and then changes as ``changes`` (time, online) say, in time order.

    ``online_until``: the last moment the subject can be believed online (last heard plus
    the offline limit).  Online time after it counts as offline: a state nobody refreshes
    (a device whose offline event was never written because the server stopped) is stale.
    """
    if end <= start:
        return []
    spans: list[Span] = []
    state, since = online_at_start, start
    for at, online in changes:
        if at >= end:
            break
        at = max(at, start)
        if online == state:
            continue
        if not state:
            spans.append((since, at))
        state, since = online, at
    if not state:
        spans.append((since, end))
    elif online_until is not None and online_until < end:
        spans.append((max(since, online_until), end))
    return union(spans)


def union(*span_lists: Iterable[Span]) -> list[Span]:
    """Sorted, merged spans: touching or overlapping spans become one."""
    spans = sorted((a, b) for spans in span_lists for a, b in spans if b > a)
    merged: list[Span] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def clip(spans: Iterable[Span], start: datetime, end: datetime) -> list[Span]:
    """The parts of ``spans`` inside [start, end)."""
    out: list[Span] = []
    for a, b in spans:
        a, b = max(a, start), min(b, end)
        if b > a:
            out.append((a, b))
    return out


def totals(spans: Iterable[Span]) -> tuple[float, float]:
    """(offline seconds, longest continuous offline stretch in seconds) of merged spans."""
    total = longest = 0.0
    for a, b in spans:
        seconds = (b - a).total_seconds()
        total += seconds
        longest = max(longest, seconds)
    return total, longest
