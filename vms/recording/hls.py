"""HLS VOD playlists (RFC 8216) over recorded TS segments.

Playback may start at any second: the first segment is cut with a byte range
at the keyframe at or before it (the keyframe index stores where the PAT/PMT
before that keyframe begins), and EXT-X-START points the player at the exact
second.  A change of recording run (a gap) gets EXT-X-DISCONTINUITY.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.models import RecordingSegment

RUN_TOLERANCE_S = 0.001  # segments of one run touch exactly; anything else restarts timestamps


@dataclass(frozen=True, slots=True)
class PlaylistEntry:
    segment: RecordingSegment
    start: datetime  # wall-clock time of the entry's first frame
    duration: float
    byte_offset: int
    byte_length: int
    discontinuity: bool


def entry_keyframe(row: RecordingSegment, at: datetime) -> tuple[float, int]:
    """(offset seconds, byte offset) of the last keyframe at or before ``at`` in a segment."""
    target = (at - row.start).total_seconds()
    chosen = (0.0, 0)
    for offset_s, byte_offset in row.keyframes or []:
        if offset_s <= target + 1e-6:
            chosen = (float(offset_s), int(byte_offset))
        else:
            break
    return chosen


def plan(rows: list[RecordingSegment], start: datetime, end: datetime) -> list[PlaylistEntry]:
    """The segments covering ``[start, end]``, the first one cut at its keyframe."""
    segments = sorted(
        (r for r in rows if not r.is_gap and r.start < end and r.end > start),
        key=lambda r: r.start,
    )
    entries: list[PlaylistEntry] = []
    prev_end: datetime | None = None
    for row in segments:
        offset_s, byte_offset = (0.0, 0)
        if not entries:
            offset_s, byte_offset = entry_keyframe(row, start)
        first = row.start + timedelta(seconds=offset_s)
        gap = prev_end is not None and abs((row.start - prev_end).total_seconds()) > RUN_TOLERANCE_S
        entries.append(
            PlaylistEntry(
                segment=row,
                start=first,
                duration=max((row.end - first).total_seconds(), 0.001),
                byte_offset=byte_offset,
                byte_length=row.size - byte_offset,
                discontinuity=gap,
            )
        )
        prev_end = row.end
    return entries


def render(
    entries: list[PlaylistEntry], start: datetime, url_for: Callable[[RecordingSegment], str]
) -> str:
    """The playlist text; ``url_for`` gives each segment's (token-carrying) URL."""
    target = max(math.ceil(e.duration) for e in entries)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:4",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    lead = max((start - entries[0].start).total_seconds(), 0.0)
    if lead > 0:
        lines.append(f"#EXT-X-START:TIME-OFFSET={lead:.3f},PRECISE=YES")
    for i, entry in enumerate(entries):
        if entry.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if i == 0 or entry.discontinuity:
            stamp = entry.start.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{stamp}")
        lines.append(f"#EXTINF:{entry.duration:.3f},")
        if entry.byte_offset:
            lines.append(f"#EXT-X-BYTERANGE:{entry.byte_length}@{entry.byte_offset}")
        lines.append(url_for(entry.segment))
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
