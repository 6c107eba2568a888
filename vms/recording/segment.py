"""One spool file of MPEG-TS muxed by PyAV from access units, without re-encoding.

The output stream takes its codec parameters from the SPS/PPS of the first
keyframe (parsed by FFmpeg's raw H.264/H.265 demuxer), so the recorder never
opens a video encoder or decoder on the hot path.  A segment may carry the
camera's audio as a second stream (AAC; see :mod:`vms.recording.audio`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from sip.channel_ref import ChannelRef
from vms.media.frames import AccessUnit, Codec

from .audio import AudioTrack

TIME_BASE = Fraction(1, 90000)
RAW_FORMATS = {Codec.h264: "h264", Codec.h265: "hevc"}
PART_SUFFIX = ".part"
DONE_SUFFIX = ".ts"
MAX_INTERLEAVE_US = 1_000_000  # the muxer holds video at most this long waiting for audio


class StreamTemplate:
    """Codec parameters read from a keyframe's parameter sets; reused while they stay the same."""

    def __init__(self, keyframe: AccessUnit) -> None:
        self.codec = keyframe.codec
        self.key = parameter_sets(keyframe.data, keyframe.codec)
        self._container = av.open(io.BytesIO(keyframe.data), format=RAW_FORMATS[keyframe.codec])
        self.stream = self._container.streams.video[0]

    def matches(self, keyframe: AccessUnit) -> bool:
        same_codec = keyframe.codec == self.codec
        return same_codec and parameter_sets(keyframe.data, keyframe.codec) == self.key

    def close(self) -> None:
        self._container.close()


START_CODE = b"\x00\x00\x01"
H264_PARAMETER_SETS = {7, 8}  # SPS, PPS (ITU-T H.264 Table 7-1)
H265_PARAMETER_SETS = {32, 33, 34}  # VPS, SPS, PPS (ITU-T H.265 Table 7-1)


def parameter_sets(data: bytes, codec: Codec = Codec.h264) -> bytes:
    """The parameter-set NAL units before the first slice, concatenated: a change of resolution
    or profile then forces a new output stream."""
    wanted = H265_PARAMETER_SETS if codec == Codec.h265 else H264_PARAMETER_SETS
    found: list[bytes] = []
    begin = data.find(START_CODE)
    while begin >= 0 and begin + 3 < len(data):
        begin += 3
        end = data.find(START_CODE, begin)
        header = data[begin]
        kind = (header >> 1) & 0x3F if codec == Codec.h265 else header & 0x1F
        if kind in wanted:
            found.append(data[begin : end if end >= 0 else len(data)].rstrip(b"\x00"))
        elif (codec == Codec.h265 and kind < 32) or (codec != Codec.h265 and 1 <= kind <= 5):
            break  # first slice: the parameter sets are all before it
        begin = end
    return b"".join(found)


@dataclass(slots=True)
class SegmentInfo:
    """What the writer knows about a segment when it closes it."""

    path: Path
    channel: ChannelRef
    codec: str
    start: float  # wall-clock seconds
    end: float
    frames: int
    audio_codec: str = ""  # "aac" when the segment holds audio


class SegmentFile:
    """A TS file being written, ``<spool>/<device>_<channel>-<start_ms>.part``; ``.ts`` once
    closed.  The name comes from the validated :class:`ChannelRef` only, never from wire text."""

    def __init__(
        self,
        spool: Path,
        channel: ChannelRef,
        start: float,
        template: StreamTemplate,
        audio: AudioTrack | None = None,
    ) -> None:
        self.channel = channel
        self.start = start
        self.codec = template.codec.value
        self.frames = 0
        self.audio_packets = 0
        self.last_dts: int | None = None
        self._last_audio: int | None = None
        name = f"{channel.slug}-{round(start * 1000)}"
        self.path = spool / (name + PART_SUFFIX)
        self.done_path = spool / (name + DONE_SUFFIX)
        options = {"max_interleave_delta": str(MAX_INTERLEAVE_US)}
        self._out = av.open(str(self.path), "w", format="mpegts", container_options=options)
        self._stream = self._out.add_stream_from_template(template.stream)
        self.audio = audio  # the track whose stream this segment has, if any
        self._audio_stream = audio.add_stream(self._out) if audio is not None else None

    def write(self, pts: int, data: bytes, keyframe: bool) -> None:
        """Mux one access unit; ``pts`` is on the 90 kHz clock, continuous across a recording run.

        Cameras on GB28181 send no B-frames, so DTS equals PTS; a repeated or
        backward timestamp is nudged forward so the muxer never rejects it.
        """
        if self.last_dts is not None and pts <= self.last_dts:
            pts = self.last_dts + 1
        packet = av.Packet(data)
        packet.stream = self._stream
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = pts
        packet.is_keyframe = keyframe
        self._out.mux(packet)
        self.last_dts = pts
        self.frames += 1

    def write_audio(self, pts: int, data: bytes) -> None:
        """Mux one audio frame (AAC) at ``pts`` on the run's 90 kHz clock."""
        if self._audio_stream is None:
            return
        if self._last_audio is not None and pts <= self._last_audio:
            pts = self._last_audio + 1
        packet = av.Packet(data)
        packet.stream = self._audio_stream
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = pts
        self._out.mux(packet)
        self._last_audio = pts
        self.audio_packets += 1

    def close(self, end: float) -> SegmentInfo:
        self._out.close()
        self.path.replace(self.done_path)
        path = self.done_path
        audio = "aac" if self.audio_packets else ""
        return SegmentInfo(path, self.channel, self.codec, self.start, end, self.frames, audio)

    def abort(self) -> None:
        try:
            self._out.close()
        finally:
            self.path.unlink(missing_ok=True)
