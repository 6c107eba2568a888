"""The sender side, for simulated devices, tests and benchmarks: PS bytes → RTP packets.

A device timestamps RTP with the frame's 90 kHz PTS and sets the marker bit on
a frame's last packet; payloads stay under ``RTP_MTU`` (ZLM ``videoMtuSize``).
``ps_frames`` groups a program stream into per-frame chunks at pack headers by
the PTS of their video PES, which works for NVR-style and ffmpeg-muxed PS.
"""

from __future__ import annotations

import struct

from sip.rtp_payloads import (  # noqa: F401 - re-exported for tests and benchmarks
    PT_H264,
    PT_H265,
    RTP_MTU,
    h264_payloads,
    h265_payloads,
    rtp_payload_packets,
)

from .ps import PACK_START_CODE, read_timestamp

PT_PS = 96


def _video_pts(pack: bytes) -> int | None:
    """PTS of the first video PES in one pack, if it carries one."""
    i = 0
    while True:
        i = pack.find(b"\x00\x00\x01", i)
        if i < 0 or i + 9 > len(pack):
            return None
        sid = pack[i + 3]
        if 0xE0 <= sid <= 0xEF:
            if pack[i + 6] & 0xC0 == 0x80 and pack[i + 7] & 0x80:
                return read_timestamp(pack, i + 9)
            return None
        i += 4


def ps_frames(ps: bytes) -> list[tuple[int, bytes]]:
    """Split a program stream into (pts, bytes) chunks, one per presentation time."""
    starts = []
    i = ps.find(PACK_START_CODE)
    while i >= 0:
        starts.append(i)
        i = ps.find(PACK_START_CODE, i + 4)
    if not starts:
        return []
    starts.append(len(ps))
    frames: list[tuple[int, bytearray]] = []
    for a, b in zip(starts, starts[1:], strict=False):
        pack = ps[a:b]
        pts = _video_pts(pack)
        if not frames or (pts is not None and pts != frames[-1][0]):
            frames.append((pts if pts is not None else 0, bytearray()))
        frames[-1][1].extend(pack)
    return [(pts, bytes(data)) for pts, data in frames]


def rtp_packets(
    frames: list[tuple[int, bytes]],
    ssrc: int,
    seq: int = 0,
    payload_type: int = PT_PS,
    mtu: int = RTP_MTU,
) -> list[bytes]:
    """RTP packets for per-frame chunks: 90 kHz timestamps, marker on each frame's last."""
    out = []
    header = struct.Struct("!BBHII")
    for pts, data in frames:
        ts = pts & 0xFFFFFFFF
        for off in range(0, len(data), mtu):
            last = off + mtu >= len(data)
            b1 = (0x80 if last else 0) | payload_type
            out.append(header.pack(0x80, b1, seq & 0xFFFF, ts, ssrc) + data[off : off + mtu])
            seq += 1
    return out


def rfc4571(packet: bytes) -> bytes:
    """One RTP packet framed for TCP (RFC 4571 2-byte length)."""
    return len(packet).to_bytes(2, "big") + packet


def interleaved(packet: bytes, channel: int = 0) -> bytes:
    """One RTP packet framed RTSP-style: ``$``, channel, 2-byte length."""
    return b"$" + bytes([channel]) + len(packet).to_bytes(2, "big") + packet


# --- raw H.264 / H.265 over RTP (RFC 6184 / RFC 7798, non-interleaved mode) ---------------
