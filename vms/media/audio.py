"""Audio in a GB28181 program stream: which codec a PSM stream type names, ADTS framing.

No I/O.  G.711 (A-law 0x90, µ-law 0x91) is one byte per 8 kHz sample and needs no
framing; AAC (0x0F) comes as ADTS frames (ISO/IEC 13818-7 §6.2), one or more per PES,
which are split so that every :class:`~vms.media.frames.AudioUnit` is one frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from .frames import AudioCodec

# PSM stream_type values of GB/T 28181 Annex F for audio
STREAM_TYPE_AAC = 0x0F
STREAM_TYPE_G711A = 0x90
STREAM_TYPE_G711U = 0x91
STREAM_TYPE_G722_1 = 0x92
STREAM_TYPE_G723_1 = 0x93
STREAM_TYPE_G729 = 0x99
STREAM_TYPE_SVAC_AUDIO = 0x9B
KEPT = {
    STREAM_TYPE_G711A: AudioCodec.pcma,
    STREAM_TYPE_G711U: AudioCodec.pcmu,
    STREAM_TYPE_AAC: AudioCodec.aac,
}
G711_RATE = 8000
ADTS_HEADER = 7  # bytes without CRC (protection_absent = 1)
ADTS_SAMPLES = 1024  # AAC-LC samples per frame
ADTS_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)


@dataclass(frozen=True, slots=True)
class AdtsHeader:
    profile: int  # audio object type - 1 (1 = AAC-LC)
    sample_rate: int
    channels: int
    length: int  # whole frame, header included

    @classmethod
    def parse(cls, data: bytes | memoryview, at: int = 0) -> AdtsHeader | None:
        """The header at ``at``, or None when the bytes there are not one."""
        if len(data) - at < ADTS_HEADER or data[at] != 0xFF or data[at + 1] & 0xF6 != 0xF0:
            return None  # syncword 0xFFF, layer 00
        rate_index = (data[at + 2] >> 2) & 0x0F
        if rate_index >= len(ADTS_RATES):
            return None
        channels = ((data[at + 2] & 0x01) << 2) | (data[at + 3] >> 6)
        length = ((data[at + 3] & 0x03) << 11) | (data[at + 4] << 3) | (data[at + 5] >> 5)
        header = ADTS_HEADER if data[at + 1] & 0x01 else ADTS_HEADER + 2
        if length < header:
            return None
        return cls((data[at + 2] >> 6) & 0x03, ADTS_RATES[rate_index], channels or 1, length)


def adts_frames(data: bytes) -> list[tuple[AdtsHeader, bytes]]:
    """The whole ADTS frames at the start of ``data``; parsing stops at the first bad or cut
    one (what follows it cannot be placed in time)."""
    out: list[tuple[AdtsHeader, bytes]] = []
    pos = 0
    while True:
        header = AdtsHeader.parse(data, pos)
        if header is None or pos + header.length > len(data):
            return out
        out.append((header, data[pos : pos + header.length]))
        pos += header.length


def codec_for(stream_type: int | None, payload: bytes) -> AudioCodec | None:
    """The codec of an audio PES from its PSM stream type; without a PSM entry, AAC when the
    bytes are ADTS (G.711 has no signature, so it is never guessed)."""
    if stream_type is not None:
        return KEPT.get(stream_type)
    if AdtsHeader.parse(payload) is not None:
        return AudioCodec.aac
    return None
