"""The files of a download job: one MPEG-TS part per INVITE, then one MP4 from all of them.

A part is written as the units arrive (PyAV, no re-encode), so what reached the disk
survives a crash: :func:`scan_part` finds the last whole frame of a part (dropping a torn
tail) and the media time it reached, from which the job resumes with a new part.
:func:`build_mp4` joins the parts on the media timeline — each part's first frame is at
its ``from`` time, frames at or after the next part's start (``until``) are left out — and
remuxes them into one MP4 whose timestamps count from its first keyframe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av

from vms.media.frames import AccessUnit

from . import ts
from .segment import StreamTemplate

CLOCK_HZ = 90000
TIME_BASE = Fraction(1, CLOCK_HZ)
HEAD_BYTES = 1 << 20  # enough to hold a part's first PES
TAIL_BYTES = 4 << 20  # enough to hold its last few frames


@dataclass(frozen=True, slots=True)
class PartScan:
    """What a part file holds: its first and last frame, on its own 90 kHz clock."""

    first_pts: int
    last_pts: int
    size: int  # bytes kept (whole frames)

    @property
    def span_s(self) -> float:
        return ((self.last_pts - self.first_pts) % ts.PTS_MODULO) / CLOCK_HZ


class PartWriter:
    """Writes one part; call from a single worker thread (the job's), never the event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames = 0
        self.bytes = 0
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self._template: StreamTemplate | None = None
        self._out: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._last_dts = -1

    def write(self, unit: AccessUnit) -> bool:
        """Mux one access unit; False while waiting for the first keyframe."""
        if self._out is None:
            if not unit.keyframe:
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._template = StreamTemplate(unit)
            self._out = av.open(str(self.path), "w", format="mpegts")
            self._stream = self._out.add_stream_from_template(self._template.stream)
            self.first_pts = unit.pts
        assert self.first_pts is not None
        pts = max(unit.pts - self.first_pts, self._last_dts + 1)
        packet = av.Packet(unit.data)
        packet.stream = self._stream
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = pts
        packet.is_keyframe = unit.keyframe
        self._out.mux(packet)
        self._last_dts = pts
        self.last_pts = unit.pts
        self.frames += 1
        self.bytes += len(unit.data)
        return True

    @property
    def span_s(self) -> float:
        """Media seconds from the part's first frame to its last one written."""
        if self.first_pts is None or self.last_pts is None:
            return 0.0
        return (self.last_pts - self.first_pts) / CLOCK_HZ

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._template is not None:
            self._template.close()
            self._template = None


def scan_part(path: Path, closed: bool = False) -> PartScan | None:
    """The part's first and last whole frame; None if nothing usable.  A part its writer did
    not close (a crash) loses its last frame, which may be torn: the file is cut before it.

    Reads only its head and tail: a part of an hour is hundreds of megabytes.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    with path.open("rb") as f:
        head = ts.scan(f.read(min(size, HEAD_BYTES)))
        tail_at = max(0, size - TAIL_BYTES) // ts.TS_PACKET_SIZE * ts.TS_PACKET_SIZE
        f.seek(tail_at)
        tail = ts.scan(f.read())
    first = next((p.pts for p in head.pes if p.pts is not None), None)
    frames = tail.pes if closed else tail.pes[:-1]
    last = next((p.pts for p in reversed(frames) if p.pts is not None), None)
    if first is None or last is None:
        return None
    keep = tail.size + tail_at if closed else tail_at + tail.pes[-1].offset
    if keep < size:
        os.truncate(path, keep)
    return PartScan(first, last, keep)


@dataclass(frozen=True, slots=True)
class PartSpan:
    path: Path
    start: datetime  # media time of the part's first frame (what its INVITE asked for)
    until: datetime | None  # frames at or after this belong to the next part


@dataclass(frozen=True, slots=True)
class Mp4Result:
    frames: int
    duration_s: float  # first to last frame, plus one frame
    first: datetime
    last: datetime


class NothingDownloaded(Exception):
    """No decodable frame arrived for the range."""


def build_mp4(parts: list[PartSpan], job_end: datetime, out: Path) -> Mp4Result:
    """Remux the parts into one MP4 on the media timeline, from the first keyframe."""
    container = av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"})
    stream = None
    frames = 0
    first: datetime | None = None
    last: datetime | None = None
    last_pts = -1
    step = CLOCK_HZ // 25
    try:
        for part in parts:
            if not part.path.exists():
                continue
            with av.open(str(part.path), format="mpegts") as src:
                if not src.streams.video:
                    continue
                video = src.streams.video[0]
                base: int | None = None
                for packet in src.demux(video):
                    if packet.pts is None or packet.size == 0:
                        continue
                    if base is None:
                        base = packet.pts
                    offset = float((packet.pts - base) * video.time_base)
                    at = part.start + timedelta(seconds=offset)
                    if (part.until is not None and at >= part.until) or at > job_end:
                        break
                    if first is None:
                        if not packet.is_keyframe:
                            continue
                        first = at
                        stream = container.add_stream_from_template(video)
                    pts = round((at - first).total_seconds() * CLOCK_HZ)
                    pts = max(pts, last_pts + 1)
                    if last_pts >= 0:
                        step = min(max(pts - last_pts, 1), CLOCK_HZ)
                    packet.stream = stream
                    packet.time_base = TIME_BASE
                    packet.pts = packet.dts = pts
                    container.mux(packet)
                    last_pts, last = pts, at
                    frames += 1
    finally:
        container.close()
    if first is None or last is None:
        out.unlink(missing_ok=True)
        raise NothingDownloaded("no decodable frame arrived for the range")
    duration = (last - first).total_seconds() + step / CLOCK_HZ
    return Mp4Result(frames, duration, first, last)
