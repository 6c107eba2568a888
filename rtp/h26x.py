"""H.264 (RFC 6184) and H.265 (RFC 7798) RTP payloads on the sending side, no I/O.

The receive side (``vms/media/rtp_h26x.py``) undoes exactly this.  Annex-B splitting lives
here, the lowest layer that needs it; ``vms.media.h26x`` uses it for parsing too.
"""

from __future__ import annotations

from collections.abc import Iterator

from .packetizer import PT_H264, RTP_MTU, packetize_payloads

START_CODE = b"\x00\x00\x01"


def split_annexb(data: bytes) -> Iterator[bytes]:
    """NAL units (without start codes) of an Annex-B byte string."""
    i = data.find(START_CODE)
    while i >= 0:
        start = i + 3
        nxt = data.find(START_CODE, start)
        end = len(data) if nxt < 0 else nxt
        nal = data[start:end]
        if nxt >= 0 and nal.endswith(b"\x00"):
            nal = nal.rstrip(b"\x00")  # trailing zero of a 4-byte start code
        if nal:
            yield nal
        i = nxt


def _fragments(nal: bytes, header_len: int, mtu: int) -> list[bytes]:
    body = nal[header_len:]
    step = mtu - header_len - 1
    return [body[i : i + step] for i in range(0, len(body), step)]


def h264_payloads(nals: list[bytes], mtu: int = RTP_MTU) -> list[bytes]:
    """One frame's NALs as RTP payloads: STAP-A for runs of small NALs, FU-A for large."""
    out: list[bytes] = []
    stap: list[bytes] = []

    def close_stap() -> None:
        if len(stap) == 1:
            out.append(stap[0])
        elif stap:
            nri = max(n[0] & 0x60 for n in stap)
            out.append(bytes([nri | 24]) + b"".join(len(n).to_bytes(2, "big") + n for n in stap))
        stap.clear()

    for nal in nals:
        if len(nal) > mtu:
            close_stap()
            parts = _fragments(nal, 1, mtu - 1)
            indicator = (nal[0] & 0xE0) | 28
            for i, part in enumerate(parts):
                fu = nal[0] & 0x1F | (0x80 if i == 0 else 0) | (0x40 if i == len(parts) - 1 else 0)
                out.append(bytes([indicator, fu]) + part)
        else:
            if 1 + sum(2 + len(n) for n in stap) + 2 + len(nal) > mtu:
                close_stap()
            stap.append(nal)
    close_stap()
    return out


def h265_payloads(nals: list[bytes], mtu: int = RTP_MTU) -> list[bytes]:
    """One frame's NALs as RTP payloads: AP for runs of small NALs, FU for large."""
    out: list[bytes] = []
    ap: list[bytes] = []

    def close_ap() -> None:
        if len(ap) == 1:
            out.append(ap[0])
        elif ap:
            tid = min(n[1] & 0x07 for n in ap)
            header = bytes([48 << 1, tid])
            out.append(header + b"".join(len(n).to_bytes(2, "big") + n for n in ap))
        ap.clear()

    for nal in nals:
        if len(nal) > mtu:
            close_ap()
            parts = _fragments(nal, 2, mtu - 1)
            header = bytes([(nal[0] & 0x81) | (49 << 1), nal[1]])
            t = (nal[0] >> 1) & 0x3F
            for i, part in enumerate(parts):
                fu = t | (0x80 if i == 0 else 0) | (0x40 if i == len(parts) - 1 else 0)
                out.append(header + bytes([fu]) + part)
        else:
            if 2 + sum(2 + len(n) for n in ap) + 2 + len(nal) > mtu:
                close_ap()
            ap.append(nal)
    close_ap()
    return out


def h264_packets(
    frame: bytes, pts: int, ssrc: int, seq: int, payload_type: int = PT_H264
) -> list[bytes]:
    """RTP packets of one Annex-B H.264 frame (STAP-A / FU-A); marker on the last."""
    return packetize_payloads(
        [(pts, h264_payloads(list(split_annexb(frame))))], ssrc, seq, payload_type
    )
