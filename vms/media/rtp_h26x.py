"""Raw H.264 / H.265 over RTP (RFC 6184, RFC 7798) → Annex-B access units, no I/O.

Some NVRs/IPCs answer the INVITE with ``a=rtpmap:98 H264/90000`` (or 99/100
``H265/90000``) and send the elementary stream itself instead of MPEG-PS.  Only
non-interleaved mode is handled (what devices send): H.264 single NAL, STAP-A,
FU-A; H.265 single NAL, AP, FU (no DONL).  A frame is the NALs of one RTP
timestamp, cut early by the marker bit.  Output starts at a keyframe that
carries its parameter sets, and again after any loss, with a :class:`Gap`
before it, like the PS demuxer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from . import h26x
from .frames import AccessUnit, Codec, Gap

# RFC 6184 §5.2 NAL unit types used for packetization
H264_STAP_A = 24
H264_FU_A = 28
# RFC 7798 §4.4 payload header types
H265_AP = 48
H265_FU = 49
H265_PACI = 50

RTP_TS_MOD = 1 << 32
MAX_ACCESS_UNIT = 8 * 1024 * 1024  # same bound as the PS demuxer
_START4 = b"\x00\x00\x00\x01"


@dataclass
class DepacketizerStats:
    access_units: int = 0
    keyframes: int = 0
    skipped_frames: int = 0  # frames dropped while waiting for a keyframe
    dropped_fragments: int = 0  # FU fragments without their start, or cut short
    bad_payloads: int = 0  # unsupported or truncated packetization units
    oversize: int = 0


def h264_payload_ok(payload: bytes) -> bool:
    """Whether a payload starts with an RFC 6184 non-interleaved NAL/packet header."""
    if not payload or payload[0] & 0x80:
        return False
    t = payload[0] & 0x1F
    return 1 <= t <= 23 or t in (H264_STAP_A, H264_FU_A)


class H26xDepacketizer:
    """RTP payloads in sequence order in, access units out (one stream, one codec)."""

    def __init__(
        self, channel_id: str, codec: Codec, clock: Callable[[], float] = time.time
    ) -> None:
        self.channel_id = channel_id
        self.codec = codec
        self.clock = clock
        self.stats = DepacketizerStats()
        self.resolution: tuple[int, int] | None = None
        self._h264 = codec is Codec.h264
        self._nals: list[bytes] = []
        self._size = 0
        self._ts: int | None = None
        self._fu: bytearray | None = None
        self._broken = False  # the current frame lost a piece: drop it
        self._waiting_key = True
        self._params: dict[int, bytes] = {}
        self._last_raw: int | None = None
        self._last_pts: int | None = None
        self._out: list[AccessUnit | Gap] = []

    # --- public ------------------------------------------------------------

    def feed(self, payload: bytes, timestamp: int, marker: bool) -> list[AccessUnit | Gap]:
        """One RTP payload with its timestamp and marker bit."""
        if self._ts is not None and timestamp != self._ts:
            self._finish()
        self._ts = timestamp
        if self._h264:
            self._unpack_h264(payload)
        else:
            self._unpack_h265(payload)
        if marker:
            self._finish()
        out, self._out = self._out, []
        return out

    def end_of_frame(self) -> list[AccessUnit | Gap]:
        """The marker bit is passed to :meth:`feed`; kept for the demuxer interface."""
        return []

    def mark_loss(self, reason: str = "packet-loss") -> list[AccessUnit | Gap]:
        """Packets were lost: drop the partial frame and wait for the next keyframe."""
        self._reset_frame()
        if self._waiting_key:
            return []
        self._waiting_key = True
        return [Gap(self.channel_id, reason, self.clock())]

    def flush(self) -> list[AccessUnit | Gap]:
        """End of stream: emit the last frame if it is whole."""
        self._finish()
        out, self._out = self._out, []
        return out

    # --- packetization units ---------------------------------------------------

    def _unpack_h264(self, p: bytes) -> None:
        if not p or p[0] & 0x80:
            self.stats.bad_payloads += 1
            return
        t = p[0] & 0x1F
        if 1 <= t <= 23:
            self._fu_abort()
            self._add(p)
        elif t == H264_STAP_A:
            self._fu_abort()
            self._aggregate(p, 1)
        elif t == H264_FU_A:
            if len(p) < 3:
                self.stats.bad_payloads += 1
                return
            self._fragment(p[1], bytes([(p[0] & 0xE0) | (p[1] & 0x1F)]), p[2:])
        else:
            self.stats.bad_payloads += 1  # STAP-B, MTAP, FU-B: interleaved mode only

    def _unpack_h265(self, p: bytes) -> None:
        if len(p) < 3 or p[0] & 0x80:
            self.stats.bad_payloads += 1
            return
        t = (p[0] >> 1) & 0x3F
        if t < H265_AP:
            self._fu_abort()
            self._add(p)
        elif t == H265_AP:
            self._fu_abort()
            self._aggregate(p, 2)
        elif t == H265_FU:
            header = bytes([(p[0] & 0x81) | ((p[2] & 0x3F) << 1), p[1]])
            self._fragment(p[2], header, p[3:])
        else:
            self.stats.bad_payloads += 1  # PACI and reserved types

    def _aggregate(self, p: bytes, skip: int) -> None:
        i = skip
        while i + 2 <= len(p):
            size = int.from_bytes(p[i : i + 2], "big")
            i += 2
            if size == 0 or i + size > len(p):
                self.stats.bad_payloads += 1
                self._broken = True
                return
            self._add(p[i : i + size])
            i += size

    def _fragment(self, fu_header: int, nal_header: bytes, body: bytes) -> None:
        start, end = fu_header & 0x80, fu_header & 0x40
        if start:
            self._fu_abort()
            self._fu = bytearray(nal_header)
        elif self._fu is None:
            self.stats.dropped_fragments += 1  # its start was lost
            self._broken = True
            return
        self._fu += body
        if end:
            nal, self._fu = bytes(self._fu), None
            self._add(nal)

    def _fu_abort(self) -> None:
        if self._fu is not None:
            self.stats.dropped_fragments += 1  # a new NAL began before the end fragment
            self._fu = None
            self._broken = True

    def _add(self, nal: bytes) -> None:
        self._nals.append(nal)
        self._size += len(nal) + 4
        if self._size > MAX_ACCESS_UNIT:
            self.stats.oversize += 1
            self._nals.clear()
            self._size = 0
            self._broken = True

    # --- access units ----------------------------------------------------------

    def _reset_frame(self) -> None:
        self._nals.clear()
        self._size = 0
        self._fu = None
        self._broken = False

    def _finish(self) -> None:
        if self._fu is not None:
            self._fu_abort()
        nals, broken, ts = self._nals, self._broken, self._ts
        self._nals, self._size, self._broken = [], 0, False
        if broken:
            if not self._waiting_key:
                self._waiting_key = True
                self._out.append(Gap(self.channel_id, "packet-loss", self.clock()))
            self.stats.skipped_frames += 1
            return
        if not nals or ts is None:
            return
        self._emit(nals, ts)

    def _emit(self, nals: list[bytes], ts: int) -> None:
        codec = self.codec
        if self._h264:
            needed: tuple[int, ...] = (h26x.H264_SPS, h26x.H264_PPS)
        else:
            needed = (h26x.H265_VPS, h26x.H265_SPS, h26x.H265_PPS)
        vcl = key = False
        present: set[int] = set()
        for nal in nals:
            t = h26x.nal_type(codec, nal[0])
            if h26x.is_vcl(codec, t):
                vcl = True
                key = key or h26x.is_keyframe_nal(codec, t)
            elif t in needed:
                present.add(t)
                if self._params.get(t) != nal:
                    self._params[t] = nal
                    if t == needed[-2]:  # the SPS
                        self.resolution = h26x.sps_resolution(codec, nal) or self.resolution
        if not vcl:
            return  # parameter sets or SEI alone: cached, prepended to the next keyframe
        data = b"".join(_START4 + nal for nal in nals)
        if key:
            missing = [t for t in needed if t not in present]
            if missing and all(t in self._params for t in missing):
                data = b"".join(_START4 + self._params[t] for t in missing) + data
            elif missing:
                key = False  # a keyframe nobody can decode from
        if self._waiting_key:
            if not key:
                self.stats.skipped_frames += 1
                return
            self._waiting_key = False
        self.stats.access_units += 1
        self.stats.keyframes += key
        pts = self._unwrap(ts)
        self._out.append(AccessUnit(self.channel_id, pts, key, data, codec, self.clock()))

    def _unwrap(self, raw: int) -> int:
        """32-bit RTP timestamp → monotonic 90 kHz pts (same rule as the PS demuxer's PTS)."""
        if self._last_raw is None or self._last_pts is None:
            pts = raw
        else:
            d = (raw - self._last_raw) % RTP_TS_MOD
            if d >= RTP_TS_MOD // 2:
                d -= RTP_TS_MOD
            pts = self._last_pts + d
        self._last_raw = raw
        self._last_pts = pts
        return pts
