"""What a demuxed camera stream yields: video access units, audio units and gaps.

The vocabulary shared by the media hub (``vms.media``), its consumers and the analyzer
hosts, which take frames without the rest of the node; value classes only, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Codec(enum.StrEnum):
    h264 = "h264"
    h265 = "h265"


class AudioCodec(enum.StrEnum):
    """Audio a GB28181 PS carries that we keep (PSM stream types 0x90, 0x91, 0x0F)."""

    pcma = "pcma"  # G.711 A-law, 8 kHz mono
    pcmu = "pcmu"  # G.711 µ-law, 8 kHz mono
    aac = "aac"  # AAC in ADTS frames


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


@dataclass(frozen=True, slots=True)
class Gap:
    """Marks a discontinuity: frames were lost or dropped before the next unit."""

    channel_id: str
    reason: str  # "slow-consumer", "packet-loss", "stream-lost", "restarted"
    wallclock: float = 0.0


@dataclass(frozen=True, slots=True)
class AudioUnit:
    """Audio as the camera sent it: G.711 samples (one byte each), or one ADTS AAC frame.

    ``pts`` is on the video's 90 kHz clock (PS audio and video share the SCR base), so a
    consumer keeps the two in step without any conversion.
    """

    channel_id: str
    pts: int
    data: bytes
    codec: AudioCodec
    sample_rate: int = 8000
    channels: int = 1
    wallclock: float = 0.0

    @property
    def samples(self) -> int:
        """Samples per channel in ``data`` (an ADTS frame holds 1024)."""
        if self.codec is AudioCodec.aac:
            return 1024
        return len(self.data) // max(self.channels, 1)

    @property
    def duration(self) -> int:
        """Length on the 90 kHz clock."""
        return self.samples * 90000 // max(self.sample_rate, 1)
