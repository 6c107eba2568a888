"""RTP over TCP: RFC 4571 2-byte length framing and RTSP-interleaved ``$ ch len16``.

Pure and byte-testable.  A frame is accepted when its RTP header is plausible
(version 2, length 12..``RTP_MAX_SIZE``, the expected SSRC when known).  On
broken framing the deframer resyncs by finding the known SSRC in two
consecutive packets (as ZLMediaKit's RtpSplitter does) and counts the bytes it
skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

INTERLEAVED_MAGIC = 0x24  # '$'
RTP_MAX_SIZE = 10 * 1024  # ZLM rtpMaxSize=10 (KB): longer frames are broken framing
RTP_MIN_SIZE = 12


@dataclass
class FramingStats:
    packets: int = 0
    resyncs: int = 0
    skipped_bytes: int = 0


class TcpDeframer:
    def __init__(self, ssrcs: set[int] | None = None) -> None:
        self.ssrcs = ssrcs if ssrcs is not None else set()  # empty → any SSRC
        self.stats = FramingStats()
        self._buf = bytearray()
        self._synced = True

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; returns the complete RTP packets in them."""
        self._buf += data
        buf = self._buf
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while True:
            if not self._synced:
                found = self._find_sync(pos)
                if found is None:
                    keep = max(pos, n - RTP_MAX_SIZE * 2 - 8)
                    self.stats.skipped_bytes += keep - pos
                    pos = keep
                    break
                self.stats.skipped_bytes += found - pos
                pos = found
                self._synced = True
            frame = self._frame_at(pos)
            if frame is None:
                break  # need more bytes
            if frame is False:
                self._synced = False
                self.stats.resyncs += 1
                pos += 1
                continue
            start, end = frame
            out.append(bytes(buf[start:end]))
            self.stats.packets += 1
            pos = end
        if pos:
            del buf[:pos]
        return out

    def _valid_rtp(self, start: int, length: int) -> bool:
        buf = self._buf
        if not RTP_MIN_SIZE <= length <= RTP_MAX_SIZE or buf[start] >> 6 != 2:
            return False
        if self.ssrcs:
            return int.from_bytes(buf[start + 8 : start + 12], "big") in self.ssrcs
        return True

    def _frame_at(self, pos: int) -> tuple[int, int] | None | bool:
        """(start, end) of the RTP packet framed at ``pos``; None: need more; False: broken."""
        buf = self._buf
        n = len(buf)
        if n - pos < 2:
            return None
        candidates = [pos + 4] if buf[pos] == INTERLEAVED_MAGIC else []
        candidates.append(pos + 2)
        for start in candidates:
            if start > n:
                return None
            length = int.from_bytes(buf[start - 2 : start], "big")
            if start + RTP_MIN_SIZE > n:
                return None  # header not here yet
            if self._valid_rtp(start, length):
                if start + length > n:
                    return None
                return start, start + length
        return False

    def _find_sync(self, pos: int) -> int | None:
        """A framing start where two consecutive frames carry a known SSRC (or valid RTP)."""
        buf = self._buf
        n = len(buf)
        if self.ssrcs:
            starts = []
            for ssrc in self.ssrcs:
                needle = ssrc.to_bytes(4, "big")
                i = buf.find(needle, pos + 8)
                while i >= 0:
                    starts.append(i - 8)
                    i = buf.find(needle, i + 1)
            starts.sort()
        else:
            starts = list(range(pos + 2, n - RTP_MIN_SIZE))
        for rtp in starts:
            for hdr in (4, 2):
                f = rtp - hdr
                if f < pos or (hdr == 4 and buf[f] != INTERLEAVED_MAGIC):
                    continue
                length = int.from_bytes(buf[rtp - 2 : rtp], "big")
                if not self._valid_rtp(rtp, length):
                    continue
                nxt = rtp + length
                second = self._frame_at(nxt)
                if isinstance(second, tuple):
                    return f
        return None
