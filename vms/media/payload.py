"""Which parser an RTP payload type goes to: the SDP answer's rtpmap, else a sniff.

ZLMediaKit/WVP offer ``96 PS``, ``98 H264``, ``99 H265`` (GB/T 28181-2022 also
uses 100 for H.265); a device's answer may map them otherwise, and some send a
payload type they never announced, which is then recognised from its bytes.
"""

from __future__ import annotations

from .ps import PACK_START_CODE
from .rtp_h26x import h264_payload_ok

PS = "PS"
H264 = "H264"
H265 = "H265"
TS = "TS"
DEFAULT_PAYLOAD_TYPES: dict[int, str] = {96: PS, 98: H264, 99: H265, 100: H265}
_ALIASES = {"MP2P": PS, "MPEG-PS": PS, "HEVC": H265, "MP2T": TS}
TS_PACKET = 188
TS_SYNC = 0x47
SNIFF_PACKETS = 12  # H.264-looking payloads in a row before an unknown PT is taken as H.264


def encoding_name(rtpmap: str) -> str:
    """``H264/90000`` → ``H264`` (upper case, common aliases folded)."""
    name = rtpmap.split("/", 1)[0].strip().upper()
    return _ALIASES.get(name, name)


def payload_type_map(answered: dict[int, str]) -> dict[int, str]:
    """The defaults overridden by what the device answered."""
    merged = dict(DEFAULT_PAYLOAD_TYPES)
    merged.update({pt: encoding_name(enc) for pt, enc in answered.items()})
    return merged


def sniff(payload: bytes) -> str | None:
    """PS or TS when the bytes say so for sure; H264 when they could be; None otherwise."""
    if payload.startswith(PACK_START_CODE):
        return PS
    n = len(payload)
    if n and n % TS_PACKET == 0 and all(payload[i] == TS_SYNC for i in range(0, n, TS_PACKET)):
        return TS
    if h264_payload_ok(payload):
        return H264
    return None
