"""MPEG-2 program stream (ISO/IEC 13818-1 §2.5) demuxer as NVRs send it over RTP.

A streaming byte parser: RTP payloads are concatenated and parsed as one byte
stream, because pack and PES boundaries do not line up with RTP packets.  The
video elementary stream is cut into access units at NAL level (first slice of a
picture, AUD/SPS/PPS/SEI after a picture), which is exact whatever the packing
(NVRs: one frame per PES; ffmpeg: 2 KiB packs that straddle frames).  The RTP
marker bit cuts a frame early once the sender has shown its markers fall on
frame ends.  Output starts at a keyframe with parameter sets, and again after
any loss, with a :class:`Gap` before it.  With ``keep_audio`` the audio PES
(G.711A/U, AAC) come out at once as audio units on the video's clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import audio, h26x
from .frames import AccessUnit, AudioCodec, AudioUnit, Codec, Gap

PACK_START_CODE = b"\x00\x00\x01\xba"
START_CODE = b"\x00\x00\x01"
PACK_HEADER = 0xBA
SYSTEM_HEADER = 0xBB
PROGRAM_STREAM_MAP = 0xBC
PRIVATE_STREAM_1 = 0xBD
PADDING_STREAM = 0xBE
PROGRAM_END = 0xB9
PTS_MASK = (1 << 33) - 1

# PSM stream_type values seen from NVRs (GB28181 Annex F / ZLM StreamType.h)
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_H265 = 0x24
STREAM_TYPE_MPEG4 = 0x10
STREAM_TYPE_SVAC_VIDEO = 0x80
STREAM_TYPE_AAC = audio.STREAM_TYPE_AAC
STREAM_TYPE_G711A = audio.STREAM_TYPE_G711A
STREAM_TYPE_G711U = audio.STREAM_TYPE_G711U
PSM_VIDEO_CODECS = {STREAM_TYPE_H264: Codec.h264, STREAM_TYPE_H265: Codec.h265}

MAX_ACCESS_UNIT = 8 * 1024 * 1024  # a "frame" longer than this is a broken stream, not video
MARKER_TRUST_FRAMES = 8  # marker bits that fell on frame ends before we cut on them
_START4 = b"\x00\x00\x00\x01"


@dataclass
class DemuxStats:
    pes_packets: int = 0
    access_units: int = 0
    keyframes: int = 0
    skipped_frames: int = 0  # frames dropped while waiting for a keyframe
    resyncs: int = 0
    dropped_bytes: int = 0
    bad_psm: int = 0
    oversize: int = 0  # access units dropped for exceeding MAX_ACCESS_UNIT
    audio_units: int = 0
    audio_unsupported: int = 0  # audio PES of a codec we do not keep (G.722.1, G.729, ...)
    stream_types: dict[int, int] = field(default_factory=dict)  # stream id → stream_type


def read_timestamp(b: bytes | bytearray, i: int) -> int:
    """33-bit PTS/DTS from its 5-byte PES encoding."""
    return (
        ((b[i] >> 1) & 7) << 30
        | b[i + 1] << 22
        | (b[i + 2] >> 1) << 15
        | b[i + 3] << 7
        | b[i + 4] >> 1
    )


class PsDemuxer:
    """Bytes in (RTP payloads in sequence order), access units out."""

    def __init__(
        self,
        channel_id: str,
        keep_audio: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.channel_id = channel_id
        self.keep_audio = keep_audio
        self.clock = clock
        self.stats = DemuxStats()
        self.codec: Codec | None = None
        self.psm_codec: Codec | None = None
        self.resolution: tuple[int, int] | None = None
        self._buf = bytearray()
        self._synced = False
        self._video_id: int | None = None
        self._es = bytearray()
        self._scan = 0
        self._au_start: int | None = None
        self._au_vcl = False
        self._au_key = False
        self._au_pts = 0
        self._pending_pts: int | None = None
        self._pending_off = 0
        self._last_raw_pts: int | None = None
        self._last_pts: int | None = None
        self._last_emitted: int | None = None
        self._pts_step = 3600
        self._waiting_key = True
        self._params: dict[int, bytes] = {}  # parameter-set NAL type → last NAL seen
        self._marker_at: int | None = None
        self._marker_aligned = 0
        self._marker_broken = False
        self._out: list[AccessUnit | Gap | AudioUnit] = []
        self._audio_raw: int | None = None  # last audio PTS as sent, and unwrapped
        self._audio_pts: int | None = None
        self._audio_next: int | None = None  # where the next audio unit would start

    # --- public ------------------------------------------------------------

    def feed(self, payload: bytes) -> list[AccessUnit | Gap | AudioUnit]:
        """Parse one RTP payload; returns the units it completed."""
        self._buf += payload
        self._parse()
        out, self._out = self._out, []
        return out

    def end_of_frame(self) -> list[AccessUnit | Gap | AudioUnit]:
        """The RTP marker bit: the sender says a frame ended here."""
        if self._buf or self._au_start is None or not self._au_vcl:
            return []
        if self._marker_broken or self._marker_aligned < MARKER_TRUST_FRAMES:
            self._marker_at = len(self._es)
            return []
        self._emit(self._au_start, len(self._es))
        self._au_start = None
        self._es.clear()
        self._scan = 0
        self._pending_pts = None
        self._marker_at = 0
        out, self._out = self._out, []
        return out

    def mark_loss(self, reason: str = "packet-loss") -> list[AccessUnit | Gap | AudioUnit]:
        """Packets were lost: drop partial data, resync, wait for the next keyframe."""
        self.stats.dropped_bytes += len(self._buf)
        self._buf.clear()
        self._synced = False
        self._reset_es()
        if self._waiting_key:
            return []
        self._waiting_key = True
        return [Gap(self.channel_id, reason, self.clock())]

    def flush(self) -> list[AccessUnit | Gap | AudioUnit]:
        """End of stream: emit the last complete-looking frame."""
        if self._au_start is not None and self._au_vcl:
            self._emit(self._au_start, len(self._es))
        self._reset_es()
        out, self._out = self._out, []
        return out

    # --- program stream layer ---------------------------------------------

    def _lose_sync(self, pos: int) -> int:
        self._synced = False
        self.stats.resyncs += 1
        self._discard()
        return pos + 1

    def _discard(self) -> None:
        """Drop the frame in progress and wait for the next keyframe, with one Gap."""
        if not self._waiting_key:
            self._waiting_key = True
            self._out.append(Gap(self.channel_id, "bad-stream", self.clock()))
        self._reset_es()

    def _parse(self) -> None:
        buf = self._buf
        n = len(buf)
        pos = 0
        while True:
            if not self._synced:
                i = buf.find(PACK_START_CODE, pos)
                if i < 0:
                    keep = max(pos, n - 3)
                    self.stats.dropped_bytes += keep - pos
                    pos = keep
                    break
                self.stats.dropped_bytes += i - pos
                pos = i
                self._synced = True
            if n - pos < 6:
                break
            if buf[pos] or buf[pos + 1] or buf[pos + 2] != 1:
                pos = self._lose_sync(pos)
                continue
            sid = buf[pos + 3]
            if sid == PACK_HEADER:
                if n - pos < 14:
                    break
                if buf[pos + 4] & 0xC0 == 0x40:  # MPEG-2: 14 bytes + stuffing
                    size = 14 + (buf[pos + 13] & 7)
                elif buf[pos + 4] & 0xF0 == 0x20:  # MPEG-1 pack
                    size = 12
                else:
                    pos = self._lose_sync(pos)
                    continue
                if n - pos < size:
                    break
                pos += size
                continue
            if sid == PROGRAM_END:
                pos += 4
                continue
            if sid < PROGRAM_END:
                pos = self._lose_sync(pos)
                continue
            size = 6 + ((buf[pos + 4] << 8) | buf[pos + 5])
            if n - pos < size:
                break
            if 0xE0 <= sid <= 0xEF:
                if size == 6:
                    pos = self._lose_sync(pos)  # unbounded PES is not allowed in a PS
                    continue
                if self._video_id is None:
                    self._video_id = sid
                if sid == self._video_id:
                    self._video_pes(pos, size)
            elif 0xC0 <= sid <= 0xDF:
                if self.keep_audio:
                    self._audio_pes(pos, size, sid)
            elif sid == PROGRAM_STREAM_MAP:
                self._psm(bytes(buf[pos + 6 : pos + size]))
            pos += size  # system header, private/padding streams: skipped by length
        if pos:
            del buf[:pos]

    def _pes_payload(self, pos: int, size: int) -> tuple[int, int | None]:
        """Offset of a PES payload and its raw PTS (MPEG-2 or MPEG-1 header)."""
        buf = self._buf
        end = pos + size
        i = pos + 6
        if buf[i] & 0xC0 == 0x80:
            flags, hlen = buf[i + 1], buf[i + 2]
            start = i + 3 + hlen
            pts = read_timestamp(buf, i + 3) if flags & 0x80 and hlen >= 5 else None
            return min(start, end), pts
        while i < end and buf[i] == 0xFF:  # MPEG-1 stuffing
            i += 1
        if i < end and buf[i] & 0xC0 == 0x40:  # STD buffer
            i += 2
        if i < end and buf[i] & 0xE0 == 0x20:
            pts = read_timestamp(buf, i) if i + 5 <= end else None
            return min(i + (10 if buf[i] & 0x10 else 5), end), pts
        return min(i + 1, end), None

    def _video_pes(self, pos: int, size: int) -> None:
        self.stats.pes_packets += 1
        start, raw = self._pes_payload(pos, size)
        if raw is not None:
            self._pending_pts = self._unwrap(raw)
            self._pending_off = len(self._es)
        with memoryview(self._buf) as mv:
            self._es += mv[start : pos + size]
        self._scan_es()

    def _audio_pes(self, pos: int, size: int, sid: int) -> None:
        start, raw = self._pes_payload(pos, size)
        data = bytes(self._buf[start : pos + size])
        if not data:
            return
        codec = audio.codec_for(self.stats.stream_types.get(sid), data)
        if codec is None:
            self.stats.audio_unsupported += 1
            return
        pts = self._audio_clock(raw)
        now = self.clock()
        if codec is not AudioCodec.aac:
            self._audio_unit(AudioUnit(self.channel_id, pts, data, codec, wallclock=now))
            return
        for header, frame in audio.adts_frames(data):
            unit = AudioUnit(
                self.channel_id, pts, frame, codec, header.sample_rate, header.channels, now
            )
            self._audio_unit(unit)
            pts += unit.duration

    def _audio_unit(self, unit: AudioUnit) -> None:
        self.stats.audio_units += 1
        self._audio_next = unit.pts + unit.duration
        self._out.append(unit)

    def _audio_clock(self, raw: int | None) -> int:
        """An audio PTS unwrapped like the video's (from the video's last one when there is
        one, so both stay on one clock); without a PTS, right after the previous unit."""
        if raw is None:
            if self._audio_next is not None:
                return self._audio_next
            return self._last_pts or 0
        if self._last_raw_pts is not None and self._last_pts is not None:
            ref_raw, ref = self._last_raw_pts, self._last_pts
        else:
            ref_raw, ref = self._audio_raw, self._audio_pts
        if ref_raw is None or ref is None:
            pts = raw
        else:
            d = (raw - ref_raw) & PTS_MASK
            if d >= 1 << 32:
                d -= 1 << 33
            pts = ref + d
        self._audio_raw, self._audio_pts = raw, pts
        return pts

    def _psm(self, body: bytes) -> None:
        """program_stream_map: remember stream types; bad lengths are counted, not fatal."""
        if len(body) < 6:
            self.stats.bad_psm += 1
            return
        p = 4 + int.from_bytes(body[2:4], "big")
        if p + 2 > len(body):
            self.stats.bad_psm += 1
            return
        end = min(p + 2 + int.from_bytes(body[p : p + 2], "big"), len(body))
        p += 2
        while p + 4 <= end:
            stream_type, es_id = body[p], body[p + 1]
            self.stats.stream_types[es_id] = stream_type
            if 0xE0 <= es_id <= 0xEF and stream_type in PSM_VIDEO_CODECS:
                self.psm_codec = PSM_VIDEO_CODECS[stream_type]
            p += 4 + int.from_bytes(body[p + 2 : p + 4], "big")

    def _unwrap(self, raw: int) -> int:
        if self._last_raw_pts is None or self._last_pts is None:
            pts = raw
        else:
            d = (raw - self._last_raw_pts) & PTS_MASK
            if d >= 1 << 32:
                d -= 1 << 33
            pts = self._last_pts + d
        self._last_raw_pts = raw
        self._last_pts = pts
        return pts

    # --- elementary stream layer ----------------------------------------------

    def _reset_es(self) -> None:
        self._es.clear()
        self._scan = 0
        self._au_start = None
        self._au_vcl = False
        self._pending_pts = None
        self._marker_at = None

    def _scan_es(self) -> None:
        es = self._es
        i = self._scan
        codec = self.codec
        lookahead = 5 if codec is Codec.h264 else 6
        while True:
            j = es.find(START_CODE, i)
            if j < 0:
                i = max(i, len(es) - 2)
                break
            if j + lookahead > len(es):
                i = j
                break
            if codec is None:
                codec = self.codec = h26x.guess_codec(es, j + 3)
                lookahead = 5 if codec is Codec.h264 else 6
                if codec is not None:
                    self._start_au(j)
            else:
                self._on_nal(j, codec)
            i = j + 3
        if self._au_start is not None and len(es) - self._au_start > MAX_ACCESS_UNIT:
            self.stats.oversize += 1
            self._discard()  # bounded memory
            return
        base = self._au_start if self._au_start is not None else i
        if self._marker_at is not None:
            base = min(base, self._marker_at)
        if base > 0:
            del es[:base]
            i -= base
            self._pending_off -= base
            if self._au_start is not None:
                self._au_start -= base
            if self._marker_at is not None:
                self._marker_at -= base
        self._scan = i

    def _on_nal(self, j: int, codec: Codec) -> None:
        es = self._es
        t = h26x.nal_type(codec, es[j + 3])
        vcl = h26x.is_vcl(codec, t)
        prefix = t in (h26x.H264_AU_PREFIX if codec is Codec.h264 else h26x.H265_AU_PREFIX)
        first_slice = vcl and bool(es[j + (4 if codec is Codec.h264 else 5)] & 0x80)
        if self._au_start is None:
            new = prefix or first_slice
            if not new and self._marker_at is not None and self._marker_aligned:
                self._marker_broken = True  # a frame continued after a marker cut
                if not self._waiting_key:
                    self._waiting_key = True
                    self._out.append(Gap(self.channel_id, "bad-stream", self.clock()))
        else:
            new = self._au_vcl and (prefix or first_slice)
        if new:
            self._start_au(j)
        if self._au_start is not None and vcl:
            self._au_vcl = True
            if h26x.is_keyframe_nal(codec, t):
                self._au_key = True

    def _start_au(self, j: int) -> None:
        es = self._es
        cut = j - 1 if j > 0 and es[j - 1] == 0 else j
        if self._marker_at is not None:
            if cut == self._marker_at or (self._au_start is None and self._marker_at == 0):
                self._marker_aligned += 1
            else:
                self._marker_aligned = 0
                self._marker_broken = True
            self._marker_at = None
        if self._au_start is not None and self._au_vcl:
            self._emit(self._au_start, cut)
        self._au_start = cut
        self._au_vcl = False
        self._au_key = False
        if self._pending_pts is not None and j + 3 >= self._pending_off:
            self._au_pts = self._pending_pts
            self._pending_pts = None
        elif self._last_emitted is not None:
            self._au_pts = self._last_emitted + self._pts_step
        else:
            self._au_pts = self._last_pts or 0

    def _emit(self, start: int, end: int) -> None:
        assert self.codec is not None
        codec = self.codec
        data = bytes(self._es[start:end])
        key = self._au_key
        if key:
            data, complete = self._with_parameter_sets(codec, data)
            key = complete
        if self._waiting_key:
            if not key:
                self.stats.skipped_frames += 1
                return
            self._waiting_key = False
        pts = self._au_pts
        if self._last_emitted is not None and pts > self._last_emitted:
            self._pts_step = min(pts - self._last_emitted, 90000)
        self._last_emitted = pts
        self.stats.access_units += 1
        self.stats.keyframes += key
        self._out.append(AccessUnit(self.channel_id, pts, key, data, codec, self.clock()))

    def _with_parameter_sets(self, codec: Codec, data: bytes) -> tuple[bytes, bool]:
        """Keyframe data with SPS/PPS(/VPS) (cached ones prepended if missing); complete?"""
        if codec is Codec.h264:
            needed = (h26x.H264_SPS, h26x.H264_PPS)
        else:
            needed = (h26x.H265_VPS, h26x.H265_SPS, h26x.H265_PPS)
        present: set[int] = set()
        for nal in h26x.split_annexb(data):
            t = h26x.nal_type(codec, nal[0])
            if t in needed:
                present.add(t)
                if self._params.get(t) != nal:
                    self._params[t] = nal
                    if t in (h26x.H264_SPS, h26x.H265_SPS) and t == needed[-2]:
                        self.resolution = h26x.sps_resolution(codec, nal) or self.resolution
            elif h26x.is_vcl(codec, t):
                break
        missing = [t for t in needed if t not in present]
        if missing and all(t in self._params for t in missing):
            data = b"".join(_START4 + self._params[t] for t in missing) + data
            missing = []
        return data, not missing
