"""The RTP fixed header (RFC 3550 §5.1): parse and serialise, no I/O.

Two readers of one layout: :meth:`RtpPacket.parse` is strict and says what is wrong
(tests, tools); :func:`split` is the receive path's, one ``struct`` unpack and one slice
per datagram, ``None`` for anything it cannot use.  :func:`header` is the senders'.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_LENGTH = 12
FIXED_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
SEQ_MOD = 1 << 16
MARKER = 0x80

_pack = FIXED_HEADER.pack
_unpack_from = FIXED_HEADER.unpack_from

# (payload type, marker, sequence number, timestamp, SSRC, payload)
Split = tuple[int, bool, int, int, int, bytes]


class RtpError(ValueError):
    """A datagram is not a valid RTP packet; the message says why."""


def header(payload_type: int, seq: int, ts: int, ssrc: int, marker: bool = False) -> bytes:
    """The 12 bytes before a payload: no CSRC, extension or padding (what senders use)."""
    b1 = (MARKER if marker else 0) | (payload_type & 0x7F)
    return _pack(RTP_VERSION << 6, b1, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)


def split(data: bytes) -> Split | None:
    """The header fields and the payload of a datagram, or None if it is not usable RTP.

    CSRCs and a header extension are skipped, padding is cut off.  The receive path's
    per-packet step: keep it a single unpack and a single slice.
    """
    n = len(data)
    if n < RTP_HEADER_LENGTH:
        return None
    b0, b1, seq, ts, ssrc = _unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        return None
    start = RTP_HEADER_LENGTH + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if start + 4 > n:
            return None
        start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
    end = n - data[-1] if b0 & 0x20 else n
    if start > end:
        return None
    return b1 & 0x7F, b1 >= MARKER, seq, ts, ssrc, data[start:end]


def ssrc_of(data: bytes) -> int | None:
    """The SSRC of a datagram without a full parse (None if it cannot be RTP)."""
    if len(data) < RTP_HEADER_LENGTH or data[0] >> 6 != RTP_VERSION:
        return None
    return int.from_bytes(data[8:12], "big")


@dataclass(slots=True)
class RtpPacket:
    payload_type: int = 96
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    marker: bool = False
    payload: bytes = b""
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < RTP_HEADER_LENGTH:
            raise RtpError(f"RTP packet too short: {len(data)} bytes")
        b0, b1, seq, ts, ssrc = _unpack_from(data)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {b0 >> 6} is not 2")
        pos = RTP_HEADER_LENGTH
        cc = b0 & 0x0F
        csrc: tuple[int, ...] = ()
        if cc:
            end = pos + 4 * cc
            if end > len(data):
                raise RtpError(f"RTP CSRC list ({cc}) runs past the packet end")
            csrc = struct.unpack_from(f"!{cc}I", data, pos)
            pos = end
        ext_profile = None
        ext = b""
        if b0 & 0x10:
            if pos + 4 > len(data):
                raise RtpError("RTP extension header runs past the packet end")
            ext_profile, ext_words = struct.unpack_from("!HH", data, pos)
            end = pos + 4 + 4 * ext_words
            if end > len(data):
                raise RtpError(f"RTP extension ({ext_words} words) runs past the packet end")
            ext = bytes(data[pos + 4 : end])
            pos = end
        end = len(data)
        padding = 0
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or pos + padding > end:
                raise RtpError(f"RTP padding length {padding} is invalid")
            end -= padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            marker=bool(b1 & MARKER),
            payload=bytes(data[pos:end]),
            csrc=tuple(csrc),
            extension_profile=ext_profile,
            extension=ext,
            padding_size=padding,
        )

    def serialize(self) -> bytes:
        if len(self.extension) % 4:
            raise RtpError("RTP extension length must be a multiple of 4 bytes")
        b0 = (RTP_VERSION << 6) | len(self.csrc)
        if self.extension_profile is not None:
            b0 |= 0x10
        if self.padding_size:
            b0 |= 0x20
        b1 = (MARKER if self.marker else 0) | (self.payload_type & 0x7F)
        out = bytearray(
            _pack(b0, b1, self.sequence_number & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)
        )
        for c in self.csrc:
            out += struct.pack("!I", c)
        if self.extension_profile is not None:
            out += struct.pack("!HH", self.extension_profile, len(self.extension) // 4)
            out += self.extension
        out += self.payload
        if self.padding_size:
            out += bytes(self.padding_size - 1) + bytes([self.padding_size])
        return bytes(out)
