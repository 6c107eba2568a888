"""MPEG-TS (ISO/IEC 13818-1) scanning: keyframe offsets and crash truncation.

Pure byte parsing, no I/O: the recorder uses it to index a finished segment
(keyframe PTS and the byte offset a player can start from) and to repair a
spool file cut short by a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TS_PACKET_SIZE = 188
SYNC_BYTE = 0x47
PAT_PID = 0x0000
PTS_MODULO = 1 << 33
RANDOM_ACCESS_INDICATOR = 0x40
VIDEO_STREAM_IDS = range(0xE0, 0xF0)
STREAM_TYPES = {0x1B: "h264", 0x24: "h265"}  # PMT stream_type (ITU-T H.222.0 Table 2-34)
AUDIO_STREAM_TYPES = {0x0F: "aac"}


@dataclass(frozen=True, slots=True)
class PesStart:
    """Where one video PES (one access unit) begins in the file."""

    offset: int  # byte offset of the TS packet holding the PES header
    pts: int | None
    keyframe: bool  # random_access_indicator set by the muxer
    entry: int  # offset a reader may start from (the PAT/PMT just before a keyframe)


@dataclass(slots=True)
class TsScan:
    size: int  # bytes of whole, in-sync packets from the start
    pes: list[PesStart] = field(default_factory=list)
    codec: str | None = None  # from the PMT's video stream_type
    audio_codec: str | None = None  # from its audio stream_type, when it has one

    @property
    def keyframes(self) -> list[PesStart]:
        return [p for p in self.pes if p.keyframe]

    def pts_delta(self, pts: int, base: int) -> int:
        return (pts - base) % PTS_MODULO


def parse_pts(b: bytes) -> int:
    """The 33-bit timestamp of a PES PTS/DTS field (5 bytes, marker bits ignored)."""
    return ((b[0] >> 1) & 0x07) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def scan(data: bytes | memoryview) -> TsScan:
    """Scan whole packets from the start; stop at the first torn or out-of-sync packet."""
    view = memoryview(data)
    result = TsScan(size=0)
    last_pat = -1
    last_pes = -1
    pmt_pid = -1
    pos = 0
    while pos + TS_PACKET_SIZE <= len(view):
        pkt = view[pos : pos + TS_PACKET_SIZE]
        if pkt[0] != SYNC_BYTE:
            break
        pusi = bool(pkt[1] & 0x40)
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        afc = (pkt[3] >> 4) & 0x03
        payload = 4
        rai = False
        if afc & 0x02:
            af_len = pkt[4]
            if af_len > 0:
                rai = bool(pkt[5] & RANDOM_ACCESS_INDICATOR)
            payload = 5 + af_len
        if pid == PAT_PID and pusi:
            last_pat = pos
            pmt_pid = _pmt_pid(bytes(pkt[payload:]))
        elif pid == pmt_pid and pusi and result.codec is None:
            result.codec, result.audio_codec = _codecs(bytes(pkt[payload:]))
        elif (
            pusi
            and afc & 0x01
            and payload + 9 <= TS_PACKET_SIZE
            and pkt[payload : payload + 3] == b"\x00\x00\x01"
            and pkt[payload + 3] in VIDEO_STREAM_IDS
        ):
            pts = None
            if pkt[payload + 7] & 0x80 and payload + 14 <= TS_PACKET_SIZE:
                pts = parse_pts(bytes(pkt[payload + 9 : payload + 14]))
            entry = last_pat if rai and last_pat > last_pes else pos
            result.pes.append(PesStart(pos, pts, rai, entry))
            last_pes = pos
        pos += TS_PACKET_SIZE
    result.size = pos
    return result


def _section(payload: bytes) -> bytes:
    """A PSI section starting in this packet (after its pointer_field), cut to its length."""
    if not payload:
        return b""
    start = 1 + payload[0]
    if start + 3 > len(payload):
        return b""
    length = ((payload[start + 1] & 0x0F) << 8) | payload[start + 2]
    return payload[start : start + 3 + length]


def _pmt_pid(payload: bytes) -> int:
    """The PMT PID of the first programme in a PAT section; -1 if none."""
    sec = _section(payload)
    for i in range(8, len(sec) - 4 - 3, 4):  # programme loop, before the CRC
        program, pid = (sec[i] << 8) | sec[i + 1], ((sec[i + 2] & 0x1F) << 8) | sec[i + 3]
        if program != 0:
            return pid
    return -1


def _codecs(payload: bytes) -> tuple[str | None, str | None]:
    """The codecs named by the first known video and audio stream_types of a PMT section."""
    sec = _section(payload)
    video: str | None = None
    audio: str | None = None
    if len(sec) < 12:
        return video, audio
    i = 12 + (((sec[10] & 0x0F) << 8) | sec[11])
    while i + 5 <= len(sec) - 4:
        stream_type, es_info = sec[i], ((sec[i + 3] & 0x0F) << 8) | sec[i + 4]
        video = video or STREAM_TYPES.get(stream_type)
        audio = audio or AUDIO_STREAM_TYPES.get(stream_type)
        i += 5 + es_info
    return video, audio


def complete_length(data: bytes | memoryview) -> tuple[int, TsScan]:
    """Bytes to keep of a torn file: whole packets up to the start of its last (maybe torn) frame.

    Returns 0 when no keyframe survives, meaning the file holds nothing playable.
    """
    result = scan(data)
    if not result.pes:
        return 0, result
    keep = result.pes[-1].offset
    result.pes.pop()
    result.size = keep
    if not result.keyframes:
        return 0, result
    return keep, result
