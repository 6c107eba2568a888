"""Per-stream counters and rates, cheap enough to update per packet."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

RATE_WINDOW_S = 5  # bitrate and fps are averaged over this many whole seconds


@dataclass
class StreamStats:
    packets: int = 0
    bytes: int = 0
    foreign_ssrc: int = 0  # packets dropped for an SSRC that is not ours
    foreign_source: int = 0  # packets dropped: not from the stream's (pinned) source
    refused_connections: int = 0  # TCP connections closed: not the stream's one
    held_dropped: int = 0  # packets held until the SDP answer, dropped when too many
    bad_packets: int = 0  # not RTP at all
    unknown_pt: int = 0  # packets of a payload type the SDP answer did not map (sniffed)
    frames: int = 0
    keyframes: int = 0
    gaps: int = 0
    last_keyframe_at: float | None = None  # time.time()
    last_packet_at: float | None = None  # time.monotonic()
    started_at: float = field(default_factory=time.time)
    _second: int = 0
    _bytes_now: int = 0
    _frames_now: int = 0
    _history: deque[tuple[int, int, int]] = field(default_factory=deque)

    def on_packet(self, size: int, now: float) -> None:
        self.packets += 1
        self.bytes += size
        self.last_packet_at = now
        self._roll(int(now))
        self._bytes_now += size

    def on_frame(self, keyframe: bool, wallclock: float) -> None:
        self.frames += 1
        self._frames_now += 1
        if keyframe:
            self.keyframes += 1
            self.last_keyframe_at = wallclock

    def _roll(self, second: int) -> None:
        if second != self._second:
            if self._second:
                self._history.append((self._second, self._bytes_now, self._frames_now))
                while len(self._history) > RATE_WINDOW_S:
                    self._history.popleft()
            self._second = second
            self._bytes_now = 0
            self._frames_now = 0

    def rates(self, now: float) -> tuple[float, float]:
        """(bits per second, frames per second) over the last whole seconds (read-only)."""
        second = int(now)
        buckets = list(self._history)
        if self._second and self._second < second:
            buckets.append((self._second, self._bytes_now, self._frames_now))
        recent = [h for h in buckets if second - RATE_WINDOW_S <= h[0] < second]
        if not recent:
            return 0.0, 0.0
        span = second - recent[0][0]
        return (
            sum(h[1] for h in recent) * 8 / span,
            sum(h[2] for h in recent) / span,
        )

    def as_dict(self, now: float) -> dict[str, Any]:
        bitrate, fps = self.rates(now)
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "foreign_ssrc": self.foreign_ssrc,
            "foreign_source": self.foreign_source,
            "refused_connections": self.refused_connections,
            "held_dropped": self.held_dropped,
            "bad_packets": self.bad_packets,
            "unknown_pt": self.unknown_pt,
            "frames": self.frames,
            "keyframes": self.keyframes,
            "gaps": self.gaps,
            "bitrate_bps": round(bitrate),
            "fps": round(fps, 2),
            "last_keyframe_at": self.last_keyframe_at,
        }
