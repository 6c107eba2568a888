"""What flows out of the stream hub: H.264/H.265 access units, never decoded.

Recorder, live viewers and the analyzer sampler all consume these.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Codec(enum.StrEnum):
    h264 = "h264"
    h265 = "h265"


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One video frame as Annex-B NAL units (start codes included).

    ``pts`` is on the 90 kHz clock of the RTP/PES timestamps, unwrapped to be
    monotonic per stream.  Keyframes carry their parameter sets (SPS/PPS[/VPS])
    in ``data`` so a consumer can start at any keyframe.
    """

    channel_id: str
    pts: int
    keyframe: bool
    data: bytes
    codec: Codec = Codec.h264
    wallclock: float = 0.0  # time.time() when the frame was assembled

    @property
    def pts_s(self) -> float:
        return self.pts / 90000.0


class StreamConsumer(Protocol):
    """A hub subscriber: gets every unit, or is skipped to the next keyframe if slow."""

    name: str

    def on_unit(self, unit: AccessUnit) -> None: ...

    def on_gap(self, channel_id: str, reason: str) -> None: ...
