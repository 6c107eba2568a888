"""The segment index: object keys, DB rows, and the timeline merged from them.

Upload and indexing are synchronous (they run in the writer thread or an
executor); the merge helpers are pure so the timeline is unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sip.channel_ref import ChannelRef
from storage.db import Database
from storage.models import RecordingSegment
from storage.objects import ObjectStore

from . import ts
from .segment import SegmentInfo
from .writer import CLOCK_HZ, GapInfo

RECORDINGS_PREFIX = "recordings"
PLAYBACK_PREFIX = "playback"
CONTIGUOUS_S = 0.5  # segments closer than this are one continuous range
TS_CONTENT_TYPE = "video/mp2t"


def to_dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def segment_key(channel: ChannelRef, start: datetime, prefix: str = RECORDINGS_PREFIX) -> str:
    """``recordings/<device>/<channel>/<yyyy>/<mm>/<dd>/<HHMMSS>-<ms>.ts``: sortable, stable,
    and made of validated 20-digit codes only."""
    t = start.astimezone(UTC)
    day = f"{t:%Y/%m/%d}/{t:%H%M%S}-{t.microsecond // 1000:03d}"
    return f"{prefix}/{channel.device_id}/{channel.channel_id}/{day}.ts"


def keyframe_index(scan: ts.TsScan) -> list[list[float]]:
    """``[[seconds from the first frame, byte offset to start reading], ...]``."""
    frames = [p for p in scan.pes if p.pts is not None]
    if not frames:
        return []
    base = frames[0].pts
    assert base is not None
    return [
        [round(scan.pts_delta(p.pts, base) / CLOCK_HZ, 4), p.entry]
        for p in frames
        if p.keyframe and p.pts is not None
    ]


def store_segment(
    db: Database,
    objects: ObjectStore,
    info: SegmentInfo,
    data: bytes | None = None,
    source: str = "recorder",
) -> RecordingSegment | None:
    """Upload a closed spool file, index it, then delete the spool file.

    The row is written only after the object exists, so the index never points
    at a missing object; a crash in between leaves the spool file for recovery.
    """
    path = Path(info.path)
    if data is None:
        data = path.read_bytes()
    scan = ts.scan(data)
    keyframes = keyframe_index(scan)
    if not keyframes:
        path.unlink(missing_ok=True)
        return None
    start = to_dt(info.start)
    prefix = PLAYBACK_PREFIX if source != "recorder" else RECORDINGS_PREFIX
    key = segment_key(info.channel, start, prefix)
    objects.put(key, data[: scan.size], TS_CONTENT_TYPE)
    row = RecordingSegment(
        device_id=info.channel.device_id,
        channel_id=info.channel.channel_id,
        start=start,
        end=to_dt(max(info.end, info.start)),
        object_key=key,
        size=scan.size,
        container="ts",
        codec=info.codec,
        audio_codec=info.audio_codec,
        keyframes=keyframes,
        source=source,
    )
    with db.session() as s:
        s.add(row)
    path.unlink(missing_ok=True)
    return row


def store_gap(db: Database, gap: GapInfo, source: str = "recorder") -> None:
    with db.session() as s:
        s.add(
            RecordingSegment(
                device_id=gap.channel.device_id,
                channel_id=gap.channel.channel_id,
                start=to_dt(gap.start),
                end=to_dt(gap.end),
                is_gap=True,
                reason=gap.reason[:32],
                size=0,
                source=source,
            )
        )


SCHEDULE_REASON = "schedule"  # gap reason of time outside the channel's recording windows


def open_schedule_gap(db: Database, channel: ChannelRef, start: datetime, end: datetime) -> int:
    """Mark ``[start, end)`` as "outside the schedule" (not an error); returns the row id.

    ``end`` is the next window's start; :func:`close_schedule_gap` trims it if recording
    resumes earlier (schedule edited) or stops being wanted for another reason.
    """
    with db.session() as s:
        row = RecordingSegment(
            device_id=channel.device_id,
            channel_id=channel.channel_id,
            start=start,
            end=max(end, start),
            is_gap=True,
            reason=SCHEDULE_REASON,
            size=0,
            source="recorder",
        )
        s.add(row)
        s.flush()
        return row.id


def close_schedule_gap(db: Database, row_id: int, end: datetime) -> None:
    """Trim a schedule gap row that reaches past ``end`` (it ends now, not when planned)."""
    with db.session() as s:
        row = s.get(RecordingSegment, row_id)
        if row is not None and row.end > end:
            row.end = max(end, row.start)


def of_camera(channel: ChannelRef) -> tuple[Any, Any]:
    """The WHERE terms of one camera's rows: its device and its channel, never one alone."""
    return (
        RecordingSegment.device_id == channel.device_id,
        RecordingSegment.channel_id == channel.channel_id,
    )


def rows_between(
    session: Session,
    channel: ChannelRef,
    start: datetime,
    end: datetime,
    source: str = "recorder",
) -> list[RecordingSegment]:
    """Segments and gaps of a camera overlapping ``[start, end]``, oldest first."""
    stmt = (
        select(RecordingSegment)
        .where(
            *of_camera(channel),
            RecordingSegment.source == source,
            RecordingSegment.start < end,
            RecordingSegment.end > start,
        )
        .order_by(RecordingSegment.start, RecordingSegment.id)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True, slots=True)
class Span:
    start: datetime
    end: datetime
    reason: str = ""


def merge_ranges(rows: list[RecordingSegment], start: datetime, end: datetime) -> list[Span]:
    """Recorded time clipped to the window, touching segments merged into one range."""
    spans: list[Span] = []
    slack = timedelta(seconds=CONTIGUOUS_S)
    for row in sorted((r for r in rows if not r.is_gap), key=lambda r: r.start):
        a, b = max(row.start, start), min(row.end, end)
        if b <= a:
            continue
        if spans and a <= spans[-1].end + slack:
            if b > spans[-1].end:
                spans[-1] = Span(spans[-1].start, b)
        else:
            spans.append(Span(a, b))
    return spans


def holes(
    ranges: list[Span], rows: list[RecordingSegment], start: datetime, end: datetime
) -> list[Span]:
    """The window minus the recorded ranges; each hole named by the gap row that covers it."""
    gap_rows = [r for r in rows if r.is_gap]
    out: list[Span] = []
    cursor = start
    for span in [*ranges, Span(end, end)]:
        if span.start > cursor:
            reason = "not-recorded"
            for g in gap_rows:
                if g.start < span.start and g.end > cursor:
                    reason = g.reason or "gap"
                    break
            out.append(Span(cursor, span.start, reason))
        cursor = max(cursor, span.end)
    return out
