"""Clip export: recorded TS segments remuxed to one MP4 by PyAV, without re-encoding.

The clip starts at the keyframe at or before the requested start (a decoder
needs it) and ends with the last frame at or before the requested end.
Timestamps are rebuilt from wall-clock time so gaps between runs keep their
real length and the MP4 timeline stays monotonic.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av

from storage.models import RecordingSegment
from storage.objects import ObjectStore

from .hls import plan

TIME_BASE = Fraction(1, 90000)


class NothingToExport(Exception):
    """No recorded frame lies in the requested range."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    start: datetime  # wall-clock time of the first frame (a keyframe)
    end: datetime  # wall-clock time of the last frame
    frames: int


def export_mp4(
    objects: ObjectStore,
    rows: list[RecordingSegment],
    start: datetime,
    end: datetime,
    out_path: Path,
) -> ExportResult:
    entries = plan(rows, start, end)
    if not entries:
        raise NothingToExport("no recording in the requested range")
    out = av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"})
    stream = None
    frames = 0
    first_wall: datetime | None = None
    last_wall: datetime | None = None
    last_pts = -1
    try:
        for entry in entries:
            row = entry.segment
            data = objects.get_range(row.object_key, entry.byte_offset, entry.byte_length)
            with av.open(io.BytesIO(data), format="mpegts") as src:
                vstream = src.streams.video[0]
                if stream is None:
                    stream = out.add_stream_from_template(vstream)
                base_pts: int | None = None
                for packet in src.demux(vstream):
                    if packet.pts is None or packet.size == 0:
                        continue
                    if base_pts is None:
                        base_pts = packet.pts
                    seconds = float((packet.pts - base_pts) * vstream.time_base)
                    wall = entry.start + timedelta(seconds=seconds)
                    if wall > end:
                        break
                    if first_wall is None:
                        if not packet.is_keyframe:
                            continue
                        first_wall = wall
                    pts = max(round((wall - first_wall).total_seconds() * 90000), last_pts + 1)
                    packet.stream = stream
                    packet.time_base = TIME_BASE
                    packet.pts = packet.dts = pts
                    out.mux(packet)
                    last_pts = pts
                    last_wall = wall
                    frames += 1
    finally:
        out.close()
    if first_wall is None or last_wall is None:
        out_path.unlink(missing_ok=True)
        raise NothingToExport("no decodable frame in the requested range")
    return ExportResult(out_path, first_wall, last_wall, frames)
