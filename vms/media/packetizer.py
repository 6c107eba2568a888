"""The sender side of PS, for tests and benchmarks: a program stream cut into frames.

``ps_frames`` groups a program stream into per-frame chunks at pack headers by the PTS
of their video PES, which works for NVR-style and ffmpeg-muxed PS; ``rtp.packetizer``
turns the chunks into packets.
"""

from __future__ import annotations

from .ps import PACK_START_CODE, read_timestamp


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
