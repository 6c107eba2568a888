"""Clip export: recorded TS segments remuxed to one MP4 by PyAV, without re-encoding.

The clip starts at the keyframe at or before the requested start (a decoder
needs it) and ends with the last frame at or before the requested end.
Timestamps are rebuilt from wall-clock time so gaps between runs keep their
real length and the MP4 timeline stays monotonic.  The recording's audio (AAC)
comes along on the same timeline.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

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
    clip = _Clip(out, end)
    try:
        for entry in entries:
            row = entry.segment
            data = objects.get_range(row.object_key, entry.byte_offset, entry.byte_length)
            with av.open(io.BytesIO(data), format="mpegts") as src:
                clip.add(src, entry.start)
    finally:
        out.close()
    if clip.first_wall is None or clip.last_wall is None:
        out_path.unlink(missing_ok=True)
        raise NothingToExport("no decodable frame in the requested range")
    return ExportResult(out_path, clip.first_wall, clip.last_wall, clip.frames)


class _Clip:
    """The MP4 being written: its video stream and, when the recording has it, its audio
    (AAC; the muxer's ``aac_adtstoasc`` filter turns the TS's ADTS frames into MP4 samples)."""

    def __init__(self, out: av.container.OutputContainer, end: datetime) -> None:
        self.out = out
        self.end = end
        self.video: av.stream.Stream | None = None
        self.audio: av.stream.Stream | None = None
        self.audio_params: tuple[int, int] | None = None
        self.first_wall: datetime | None = None
        self.last_wall: datetime | None = None
        self.frames = 0
        self.audio_packets = 0
        self._last = {"video": -1, "audio": -1}

    def add(self, src: av.container.InputContainer, entry_start: datetime) -> None:
        vstream = src.streams.video[0]
        if self.video is None:
            self.video = self.out.add_stream_from_template(vstream)
        astream = self._audio_of(src)
        streams = [vstream] + ([astream] if astream is not None else [])
        base_pts: int | None = None
        early: list[av.Packet] = []  # audio before the entry's first video packet
        for packet in src.demux(streams):
            if packet.pts is None or packet.size == 0:
                continue
            if packet.stream is astream:
                if base_pts is None:
                    early.append(packet)
                else:
                    self._audio(packet, astream, base_pts, entry_start)
                continue
            if base_pts is None:
                base_pts = packet.pts
            wall = entry_start + timedelta(
                seconds=float((packet.pts - base_pts) * vstream.time_base)
            )
            if wall > self.end:
                break
            if self.first_wall is None:
                if not packet.is_keyframe:
                    continue
                self.first_wall = wall
            self._mux(packet, self.video, "video", wall)
            self.last_wall = wall
            self.frames += 1
            for held in early:  # the clip has started: audio that came first can go in
                self._audio(held, astream, base_pts, entry_start)
            early.clear()

    def _audio_of(self, src: av.container.InputContainer) -> av.stream.Stream | None:
        """The entry's AAC stream when it matches the clip's (the first one found sets it)."""
        if not src.streams.audio:
            return None
        astream = src.streams.audio[0]
        ctx = astream.codec_context
        if ctx.name != "aac" or not ctx.sample_rate:
            return None
        params = (ctx.sample_rate, ctx.channels)
        if self.audio is None and self.frames == 0:
            self.audio = self.out.add_stream_from_template(astream)
            self.audio_params = params
        return astream if self.audio is not None and params == self.audio_params else None

    def _audio(self, packet: av.Packet, astream: Any, base_pts: int, entry_start: datetime) -> None:
        """Mux one audio packet if it lies inside the clip (from its first keyframe on)."""
        seconds = float((packet.pts - base_pts) * astream.time_base)
        wall = entry_start + timedelta(seconds=seconds)
        if self.first_wall is None or self.audio is None or not self.first_wall <= wall <= self.end:
            return
        self._mux(packet, self.audio, "audio", wall)
        self.audio_packets += 1

    def _mux(self, packet: av.Packet, stream: Any, kind: str, wall: datetime) -> None:
        assert self.first_wall is not None
        pts = max(round((wall - self.first_wall).total_seconds() * 90000), self._last[kind] + 1)
        packet.stream = stream
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = pts
        self.out.mux(packet)
        self._last[kind] = pts
