"""MPEG-2 Program Stream muxing of H.264/H.265 access units as GB28181 NVRs send it
(ISO 13818-1 §2.5).

Keyframes: pack header (0xBA), system header (0xBB), program stream map (0xBC), then video
PES (0xE0); other frames: pack header and PES.  Frames over one PES's size are split,
only the first PES carrying the PTS.  Audio (G.711, AAC) goes in its own pack with one
PES (0xC0), listed in the system header and the PSM when the stream has it.  No I/O.  Two
senders use it: the simulated NVR (``simdevice``) and the cascade forwarding our streams to
a superior (``vms.cascade``).
"""

from __future__ import annotations

import functools
import struct

PACK_START = b"\x00\x00\x01\xba"
SYSTEM_HEADER_START = b"\x00\x00\x01\xbb"
PSM_START = b"\x00\x00\x01\xbc"
VIDEO_STREAM_ID = 0xE0
AUDIO_STREAM_ID = 0xC0
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_H265 = 0x24
STREAM_TYPE_AAC = 0x0F
STREAM_TYPE_G711A = 0x90
STREAM_TYPE_G711U = 0x91
MAX_PES_PAYLOAD = 0xFFFF - 8  # PES_packet_length counts flags, header length and PTS
MUX_RATE = 6106  # units of 50 bytes/s (~2.4 Mbit/s); informative only


def _crc32_mpeg(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
    return crc


def pack_header(scr: int) -> bytes:
    scr &= (1 << 33) - 1
    ext = 0
    b = bytes(
        [
            0x40 | (((scr >> 30) & 0x07) << 3) | 0x04 | ((scr >> 28) & 0x03),
            (scr >> 20) & 0xFF,
            (((scr >> 15) & 0x1F) << 3) | 0x04 | ((scr >> 13) & 0x03),
            (scr >> 5) & 0xFF,
            ((scr & 0x1F) << 3) | 0x04 | ((ext >> 7) & 0x03),
            ((ext & 0x7F) << 1) | 0x01,
            (MUX_RATE >> 14) & 0xFF,
            (MUX_RATE >> 6) & 0xFF,
            ((MUX_RATE & 0x3F) << 2) | 0x03,
            0xF8,  # reserved, no stuffing
        ]
    )
    return PACK_START + b


@functools.cache
def system_header(audio: bool = False) -> bytes:
    rate_bound = MUX_RATE
    body = bytes(
        [
            0x80 | ((rate_bound >> 15) & 0x7F),
            (rate_bound >> 7) & 0xFF,
            ((rate_bound & 0x7F) << 1) | 0x01,
            0x04 if audio else 0x00,  # audio_bound (6 bits), fixed 0, CSPS 0
            0xE1,  # audio lock, video lock, marker, video_bound 1
            0xFF,  # packet rate restriction 1, reserved
            VIDEO_STREAM_ID,
            0xE0 | 0x00 | ((1024 >> 8) & 0x1F),  # '11', P-STD scale 1, size bound 1024 KB
            1024 & 0xFF,
        ]
    )
    if audio:  # '11', P-STD scale 0 (128 bytes), size bound 32 × 128 bytes
        body += bytes([AUDIO_STREAM_ID, 0xC0, 32])
    return SYSTEM_HEADER_START + struct.pack(">H", len(body)) + body


@functools.cache
def program_stream_map(stream_type: int = STREAM_TYPE_H264, audio_type: int | None = None) -> bytes:
    es_map = bytes([stream_type, VIDEO_STREAM_ID, 0x00, 0x00])
    if audio_type is not None:
        es_map += bytes([audio_type, AUDIO_STREAM_ID, 0x00, 0x00])
    body = bytes([0xE0, 0xFF]) + struct.pack(">H", 0) + struct.pack(">H", len(es_map)) + es_map
    length = len(body) + 4  # + CRC
    head = PSM_START + struct.pack(">H", length) + body
    return head + struct.pack(">I", _crc32_mpeg(head))


def _pts_bytes(pts: int) -> bytes:
    pts &= (1 << 33) - 1
    return bytes(
        [
            0x21 | ((pts >> 29) & 0x0E),
            (pts >> 22) & 0xFF,
            ((pts >> 14) & 0xFE) | 0x01,
            (pts >> 7) & 0xFF,
            ((pts << 1) & 0xFE) | 0x01,
        ]
    )


def pes_packets(data: bytes, pts: int, stream_id: int = VIDEO_STREAM_ID) -> list[bytes]:
    out = []
    for i in range(0, max(len(data), 1), MAX_PES_PAYLOAD):
        chunk = data[i : i + MAX_PES_PAYLOAD]
        if i == 0:
            header = bytes([0x80, 0x80, 5]) + _pts_bytes(pts)
        else:
            header = bytes([0x80, 0x00, 0])
        length = len(header) + len(chunk)
        out.append(
            b"\x00\x00\x01" + bytes([stream_id]) + struct.pack(">H", length) + header + chunk
        )
    return out


def mux_frame(
    annexb: bytes,
    pts: int,
    keyframe: bool,
    stream_type: int = STREAM_TYPE_H264,
    audio_type: int | None = None,
) -> bytes:
    """One access unit as PS bytes; ``audio_type``: the stream also carries that audio."""
    parts = [pack_header(pts)]
    if keyframe:
        parts += [
            system_header(audio_type is not None),
            program_stream_map(stream_type, audio_type),
        ]
    parts += pes_packets(annexb, pts)
    return b"".join(parts)


def mux_audio(data: bytes, pts: int) -> bytes:
    """One audio frame (G.711 samples, an ADTS frame) in its own pack, as NVRs send it."""
    return pack_header(pts) + b"".join(pes_packets(data, pts, AUDIO_STREAM_ID))
