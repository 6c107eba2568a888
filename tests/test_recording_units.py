"""Pure parts of recording: TS scanning, parameter sets, the segmenting state machine,
HLS playlists, timeline merging and HTTP ranges — bytes and values in, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import pytest
from fastapi import HTTPException

from api.routers.recordings import _parse_range
from sip.channel_ref import ChannelRef
from storage.models import RecordingSegment
from vms.media.frames import AccessUnit, Codec, Gap
from vms.recording import hls, ts
from vms.recording.index import holes, keyframe_index, merge_ranges, segment_key
from vms.recording.recovery import duration_s, parse_spool_name
from vms.recording.segment import SegmentInfo, parameter_sets
from vms.recording.writer import ChannelWriter, GapInfo

from .recording_support import VTEST, decode_md5s, encode_clip

CH = "34010000001320000031"
DEV = "34010000001180000031"
CAM = ChannelRef(DEV, CH)
T0 = datetime(2026, 11, 25, 8, 0, 0, tzinfo=UTC)


def write_clip(tmp_path: Path, units: list[AccessUnit], segment_s: float = 2.0):
    segments: list[SegmentInfo] = []
    gaps: list[GapInfo] = []
    writer = ChannelWriter(CAM, tmp_path, segment_s, 5.0, segments.append, gaps.append)
    for unit in units:
        writer.handle(unit)
    writer.close()
    return segments, gaps, writer


def test_parse_pts_roundtrip() -> None:
    pts = 0x1_2345_6789
    field = bytes(
        [
            0x21 | ((pts >> 29) & 0x0E),
            (pts >> 22) & 0xFF,
            ((pts >> 14) & 0xFE) | 1,
            (pts >> 7) & 0xFF,
            ((pts << 1) & 0xFE) | 1,
        ]
    )
    assert ts.parse_pts(field) == pts


def test_scan_and_truncate_real_segment(tmp_path: Path) -> None:
    clip = encode_clip()
    segments, gaps, _ = write_clip(tmp_path, clip.access_units(CH, T0.timestamp())[:50])
    assert len(segments) == 1 and gaps == []
    data = segments[0].path.read_bytes()
    scan = ts.scan(data)
    assert scan.size == len(data) and len(data) % ts.TS_PACKET_SIZE == 0
    assert scan.codec == "h264"
    assert len(scan.pes) == 50 and [p.keyframe for p in scan.pes].count(True) == 2
    assert keyframe_index(scan) == [[0.0, scan.keyframes[0].entry], [1.0, scan.keyframes[1].entry]]
    entry = scan.keyframes[1].entry
    assert (data[entry + 1] & 0x1F, data[entry + 2]) == (0, 0)  # the PAT before the keyframe
    assert decode_md5s(data[entry:], "mpegts") == clip.checksums[25:50]  # a player can start there
    assert duration_s(scan) == pytest.approx(2.0)

    keep, torn = ts.complete_length(data[: len(data) - 1000 + 3])
    assert keep % ts.TS_PACKET_SIZE == 0 and len(torn.pes) < 50
    assert len(decode_md5s(data[:keep], "mpegts")) == len(torn.pes)
    assert ts.complete_length(data[:300]) == (0, ts.complete_length(data[:300])[1])
    assert ts.scan(b"\x00" * 1000).size == 0  # out of sync from the start
    assert ts.scan(data[:376] + b"\x11" * 188 + data[564:]).size == 376  # stops at lost sync


def test_h265_recorded_without_reencode(tmp_path: Path) -> None:
    enc = av.CodecContext.create("libx265", "w")
    enc.width, enc.height, enc.pix_fmt = 320, 240, "yuv420p"
    enc.time_base = Fraction(1, 90000)
    enc.options = {"preset": "ultrafast", "x265-params": "log-level=error:bframes=0:keyint=10"}
    units: list[AccessUnit] = []
    with av.open(str(VTEST)) as src:
        for i, frame in enumerate(src.decode(video=0)):
            if i >= 20:
                break
            f = frame.reformat(320, 240, "yuv420p")
            f.pts, f.time_base = i * 3600, Fraction(1, 90000)
            units += [
                AccessUnit(CH, p.pts, p.is_keyframe, bytes(p), Codec.h265, T0.timestamp())
                for p in enc.encode(f)
            ]
    units += [
        AccessUnit(CH, p.pts, p.is_keyframe, bytes(p), Codec.h265, T0.timestamp())
        for p in enc.encode(None)
    ]
    assert units[0].keyframe and parameter_sets(units[0].data, Codec.h265)
    source = decode_md5s(b"".join(u.data for u in units), "hevc")
    segments, _, _ = write_clip(tmp_path, units)
    data = b"".join(s.path.read_bytes() for s in segments)
    assert {s.codec for s in segments} == {"h265"} and ts.scan(data).codec == "h265"
    assert decode_md5s(data, "mpegts") == source


def test_parameter_sets() -> None:
    clip = encode_clip()
    key, inter = clip.units[0][2], clip.units[1][2]
    sets = parameter_sets(key)
    assert sets[0] & 0x1F == 7  # the SPS comes first
    assert sets[:8] in key and key.index(sets[:8]) < 8
    assert sets and sets in key.replace(b"\x00\x00\x00\x01", b"").replace(b"\x00\x00\x01", b"")
    assert parameter_sets(inter) == b""
    assert parameter_sets(key, Codec.h265) != sets  # a different NAL header layout


def test_writer_rolls_over_on_keyframes_and_marks_jumps(tmp_path: Path) -> None:
    clip = encode_clip()
    units = clip.access_units(CH, T0.timestamp())
    jumped = [
        AccessUnit(CH, u.pts + 60 * 90000, u.keyframe, u.data, wallclock=u.wallclock + 60)
        for u in units[100:150]
    ]
    segments, gaps, writer = write_clip(tmp_path, units[:100] + jumped, segment_s=1.5)
    # 1.5 s segments cut at the next keyframe: [0,2) [2,4), then the jump starts a new run
    assert [(s.start - T0.timestamp(), s.end - T0.timestamp()) for s in segments] == [
        (0.0, 2.0),
        (2.0, 4.0),
        (64.0, 66.0),
    ]
    assert gaps == [GapInfo(CAM, T0.timestamp() + 4, T0.timestamp() + 64, "pts-jump")]
    assert [s.frames for s in segments] == [50, 50, 50]
    assert writer.skipped == 0


def test_writer_waits_for_keyframe_and_gap_reason(tmp_path: Path) -> None:
    clip = encode_clip()
    units = clip.access_units(CH, T0.timestamp())
    items = [*units[10:40], Gap(CH, "packet-loss", 0.0), *units[60:100]]
    segments, gaps, writer = write_clip(tmp_path, items)
    assert writer.skipped == 15 + 15  # before the keyframes of seconds 1 and 3
    assert [round(s.start - T0.timestamp(), 3) for s in segments] == [1.0, 3.0]
    assert [g.reason for g in gaps] == ["packet-loss"]
    assert gaps[0].start == pytest.approx(T0.timestamp() + 1.6)


def row(rid: int, start_s: float, end_s: float, size: int = 1000, gap: bool = False, kf=None):
    return RecordingSegment(
        id=rid,
        channel_id=CH,
        start=T0 + timedelta(seconds=start_s),
        end=T0 + timedelta(seconds=end_s),
        size=size,
        is_gap=gap,
        reason="stream-lost" if gap else "",
        keyframes=kf if kf is not None else [[0.0, 0], [1.0, 400], [2.0, 700]],
        object_key=f"k{rid}",
    )


def test_playlist_cut_at_keyframe_with_discontinuity() -> None:
    rows = [row(1, 0, 3), row(2, 3, 6), row(3, 6, 7, gap=True), row(4, 7, 10), row(5, 10, 13)]
    entries = hls.plan(rows, T0 + timedelta(seconds=4.5), T0 + timedelta(seconds=8))
    assert [e.segment.id for e in entries] == [2, 4]
    assert (entries[0].byte_offset, entries[0].byte_length) == (400, 600)
    text = hls.render(entries, T0 + timedelta(seconds=4.5), lambda r: f"/s/{r.id}.ts")
    assert text.splitlines() == [
        "#EXTM3U",
        "#EXT-X-VERSION:4",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-TARGETDURATION:3",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-START:TIME-OFFSET=0.500,PRECISE=YES",
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-25T08:00:04.000Z",
        "#EXTINF:2.000,",
        "#EXT-X-BYTERANGE:600@400",
        "/s/2.ts",
        "#EXT-X-DISCONTINUITY",
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-25T08:00:07.000Z",
        "#EXTINF:3.000,",
        "/s/4.ts",
        "#EXT-X-ENDLIST",
    ]
    assert hls.plan(rows, T0 + timedelta(seconds=20), T0 + timedelta(seconds=30)) == []


def test_timeline_merge_and_holes() -> None:
    rows = [row(1, 0, 3), row(2, 3.2, 6), row(3, 6, 9, gap=True), row(4, 9, 12), row(5, 20, 25)]
    start, end = T0 + timedelta(seconds=1), T0 + timedelta(seconds=22)
    ranges = merge_ranges(rows, start, end)
    assert [(r.start - T0, r.end - T0) for r in ranges] == [
        (timedelta(seconds=1), timedelta(seconds=6)),
        (timedelta(seconds=9), timedelta(seconds=12)),
        (timedelta(seconds=20), timedelta(seconds=22)),
    ]
    assert [(h.start - T0, h.reason) for h in holes(ranges, rows, start, end)] == [
        (timedelta(seconds=6), "stream-lost"),
        (timedelta(seconds=12), "not-recorded"),
    ]


def test_keys_names_and_ranges() -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert segment_key(CAM, t) == f"recordings/{DEV}/{CH}/2026/01/02/030405-678.ts"
    assert parse_spool_name(Path(f"{DEV}_{CH}-1700000000123.part")) == (CAM, 1700000000.123)
    # a spool file of an older version: its channel only (the device is looked up)
    assert parse_spool_name(Path(f"{CH}-1700000000123.ts")) == (CH, 1700000000.123)
    for foreign in ("notes.txt", "..-1700000000123.ts", f"{DEV}_../x-1.ts", f"{CH}x-1.ts"):
        assert parse_spool_name(Path(foreign)) is None
    assert _parse_range("bytes=0-99", 1000) == (0, 99)
    assert _parse_range("bytes=900-", 1000) == (900, 999)
    assert _parse_range("bytes=-100", 1000) == (900, 999)
    assert _parse_range("bytes=0-5000", 1000) == (0, 999)
    for bad in ("bytes=1000-", "bytes=5-2", "items=0-1", "bytes=-0", "bytes=-"):
        with pytest.raises(HTTPException) as err:
            _parse_range(bad, 1000)
        assert err.value.status_code == 416
