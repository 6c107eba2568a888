"""Payloads → RTP packets, and the packet framings used over TCP (no I/O).

A sender timestamps with the frame's 90 kHz PTS, sets the marker bit on a frame's last
packet and keeps payloads under :data:`RTP_MTU` (ZLM ``videoMtuSize``).  Used by the
simulated NVR, the tests and the benchmarks; the receive side reads the same header
through :mod:`rtp.packet`.
"""

from __future__ import annotations

from collections.abc import Iterable

from .packet import header

PT_PS = 96  # MPEG-PS, as GB28181 devices send it
PT_H264 = 98  # RFC 6184
PT_H265 = 99  # RFC 7798
RTP_MTU = 1400


def packetize(
    frames: Iterable[tuple[int, bytes]],
    ssrc: int,
    seq: int = 0,
    payload_type: int = PT_PS,
    mtu: int = RTP_MTU,
) -> list[bytes]:
    """RTP packets for per-frame byte strings (PS): cut at ``mtu``, marker on each last."""
    out = []
    for pts, data in frames:
        size = len(data)
        for off in range(0, size, mtu):
            out.append(
                header(payload_type, seq, pts, ssrc, off + mtu >= size) + data[off : off + mtu]
            )
            seq += 1
    return out


def packetize_payloads(
    frames: Iterable[tuple[int, list[bytes]]], ssrc: int, seq: int, payload_type: int
) -> list[bytes]:
    """RTP packets for per-frame lists of ready payloads (H.264/H.265 units, see ``rtp.h26x``)."""
    out = []
    for pts, payloads in frames:
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            out.append(header(payload_type, seq, pts, ssrc, i == last) + payload)
            seq += 1
    return out


def rfc4571(packet: bytes) -> bytes:
    """One RTP packet framed for TCP (RFC 4571 2-byte length)."""
    return len(packet).to_bytes(2, "big") + packet


def interleaved(packet: bytes, channel: int = 0) -> bytes:
    """One RTP packet framed RTSP-style: ``$``, channel, 2-byte length."""
    return b"$" + bytes([channel]) + len(packet).to_bytes(2, "big") + packet
