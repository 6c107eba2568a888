"""PS demuxer and NAL helpers, with NVR-style program streams built byte by byte."""

from __future__ import annotations

import pytest

from rtp.packetizer import packetize
from vms.media import h26x
from vms.media.frames import AccessUnit, AudioUnit, Codec, Gap
from vms.media.packetizer import ps_frames
from vms.media.ps import PsDemuxer

from .media_support import decode_units, encode_units, nvr_frame

CH = "34020000001320000001"


@pytest.fixture(scope="module")
def h264_units() -> list[tuple[int, bool, bytes]]:
    return encode_units(30, (320, 240), "libx264", gop=10)


@pytest.fixture(scope="module")
def h265_units() -> list[tuple[int, bool, bytes]]:
    return encode_units(12, (320, 240), "libx265", gop=6)


def demux_all(
    ps: bytes, chunk: int = 1400, demuxer: PsDemuxer | None = None
) -> tuple[list[AccessUnit], list[object]]:
    d = demuxer or PsDemuxer(CH)
    out: list[object] = []
    for i in range(0, len(ps), chunk):
        out += d.feed(ps[i : i + chunk])
    out += d.flush()
    return [x for x in out if isinstance(x, AccessUnit)], out


def test_nvr_stream_any_packet_split(h264_units: list[tuple[int, bool, bytes]]) -> None:
    ps = b"".join(nvr_frame(data, pts, key) for pts, key, data in h264_units)
    for chunk in (1, 7, 188, 1400, 100000):
        units, _ = demux_all(ps, chunk)
        assert [u.data for u in units] == [data for _, _, data in h264_units]
        assert [u.keyframe for u in units] == [key for _, key, _ in h264_units]
        assert [u.pts for u in units] == [pts for pts, _, _ in h264_units]
    assert len(decode_units(units)) == len(h264_units)


def test_stuffing_no_system_header_no_psm_split_pes(
    h264_units: list[tuple[int, bool, bytes]],
) -> None:
    ps = b"".join(
        nvr_frame(
            data,
            pts,
            key,
            with_psm=False,
            with_system_header=False,
            stuffing=3,
            max_pes=1000,  # frames over a PES split, PTS on the first only
            private=True,  # Hikvision 0xBD and padding 0xBE are skipped
        )
        for pts, key, data in h264_units
    )
    d = PsDemuxer(CH)
    units, _ = demux_all(ps, 1400, d)
    assert [u.data for u in units] == [data for _, _, data in h264_units]
    assert d.codec is Codec.h264 and d.psm_codec is None  # guessed from NAL headers
    assert d.resolution == (320, 240)


def test_starts_at_keyframe_after_mid_gop_join(h264_units: list[tuple[int, bool, bytes]]) -> None:
    ps = b"".join(nvr_frame(data, pts, key) for pts, key, data in h264_units[3:])
    d = PsDemuxer(CH)
    units, _ = demux_all(ps, 500, d)
    first_key = next(i for i, (_, k, _) in enumerate(h264_units) if i >= 3 and k)
    assert units[0].keyframe and units[0].data == h264_units[first_key][2]
    assert len(units) == len(h264_units) - first_key
    assert d.stats.access_units == len(units)


def test_loss_gap_then_next_keyframe(h264_units: list[tuple[int, bool, bytes]]) -> None:
    d = PsDemuxer(CH)
    frames = [nvr_frame(data, pts, key) for pts, key, data in h264_units]
    out: list[object] = []
    for i, f in enumerate(frames):
        if i == 12:
            out += d.feed(f[: len(f) // 2])
            out += d.mark_loss()
            continue
        out += d.feed(f)
    out += d.flush()
    gaps = [x for x in out if isinstance(x, Gap)]
    assert len(gaps) == 1 and gaps[0].reason == "packet-loss"
    after = out[out.index(gaps[0]) + 1 :]
    assert isinstance(after[0], AccessUnit) and after[0].keyframe
    assert after[0].pts == h264_units[20][0]


def test_pts_unwrap_across_33_bits(h264_units: list[tuple[int, bool, bytes]]) -> None:
    base = (1 << 33) - 5 * 3600
    ps = b"".join(
        nvr_frame(data, (base + i * 3600) & ((1 << 33) - 1), key)
        for i, (_, key, data) in enumerate(h264_units)
    )
    units, _ = demux_all(ps)
    assert [u.pts for u in units] == [base + i * 3600 for i in range(len(h264_units))]


def test_audio_kept_or_dropped(h264_units: list[tuple[int, bool, bytes]]) -> None:
    ps = b"".join(
        nvr_frame(data, pts, key, audio=b"\xd5" * 160) for pts, key, data in h264_units[:10]
    )
    _, dropped = demux_all(ps)
    assert not any(isinstance(x, AudioUnit) for x in dropped)
    _, kept = demux_all(ps, demuxer=PsDemuxer(CH, keep_audio=True))
    audio = [x for x in kept if isinstance(x, AudioUnit)]
    assert len(audio) == 10 and audio[0].data == b"\xd5" * 160 and audio[0].codec == "pcma"


def test_garbage_and_bad_psm_do_not_crash(h264_units: list[tuple[int, bool, bytes]]) -> None:
    frames = [nvr_frame(data, pts, key) for pts, key, data in h264_units]
    bad_psm = b"\x00\x00\x01\xbc\x00\x06\xe0\xff\xff\xff\x00\x00"  # info length past the end
    ps = bytes(range(256)) * 3 + bad_psm + b"".join(frames)
    d = PsDemuxer(CH)
    units, _ = demux_all(ps, 999, d)
    assert len(units) == len(h264_units)
    assert d.stats.dropped_bytes >= 768


def test_h265_detected_behind_wrong_psm(h265_units: list[tuple[int, bool, bytes]]) -> None:
    ps = b"".join(nvr_frame(data, pts, key, video_type=0x1B) for pts, key, data in h265_units)
    d = PsDemuxer(CH)
    units, _ = demux_all(ps, 1400, d)
    assert d.codec is Codec.h265 and d.psm_codec is Codec.h264
    assert [u.data for u in units] == [data for _, _, data in h265_units]
    assert units[0].keyframe and all(u.codec is Codec.h265 for u in units)
    assert d.resolution == (320, 240)
    assert len(decode_units(units, Codec.h265)) == len(h265_units)


def test_marker_bit_cuts_frames_once_trusted(h264_units: list[tuple[int, bool, bytes]]) -> None:
    frames = [(pts, nvr_frame(data, pts, key)) for pts, key, data in h264_units]
    d = PsDemuxer(CH)
    emitted_at: list[int] = []  # index of the frame whose marker packet released a unit
    for i, packet in enumerate(packetize(frames, 1)):
        d.feed(packet[12:])
        if packet[1] & 0x80:
            if d.end_of_frame():
                emitted_at.append(i)
    assert len(emitted_at) >= len(frames) - 10  # once trusted, no one-frame delay


def test_keyframe_without_parameter_sets_gets_cached_ones(
    h264_units: list[tuple[int, bool, bytes]],
) -> None:
    def strip(data: bytes) -> bytes:
        nals = [n for n in h26x.split_annexb(data) if n[0] & 0x1F not in (7, 8)]
        return b"".join(b"\x00\x00\x00\x01" + n for n in nals)

    keys = [i for i, (_, k, _) in enumerate(h264_units) if k]
    stream = [
        (pts, key, data if i == keys[0] else strip(data))
        for i, (pts, key, data) in enumerate(h264_units)
    ]
    units, _ = demux_all(b"".join(nvr_frame(d, p, k) for p, k, d in stream))
    second = units[keys[1]]
    assert second.keyframe
    types = [n[0] & 0x1F for n in h26x.split_annexb(second.data)]
    assert types[:2] == [7, 8]


def test_ffmpeg_grouping_helper(h264_units: list[tuple[int, bool, bytes]]) -> None:
    ps = b"".join(nvr_frame(data, pts, key) for pts, key, data in h264_units)
    groups = ps_frames(ps)
    assert [pts for pts, _ in groups] == [pts for pts, _, _ in h264_units]
    assert b"".join(g for _, g in groups) == ps


def test_nal_helpers() -> None:
    data = b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce\x00\x00\x01\x65\x88"
    assert list(h26x.split_annexb(data)) == [b"\x67\x42", b"\x68\xce", b"\x65\x88"]
    assert h26x.guess_codec(b"\x67\x42") is Codec.h264
    assert h26x.guess_codec(b"\x40\x01") is Codec.h265
    assert h26x.guess_codec(b"\x41\x9a") is None
    assert h26x.is_keyframe_nal(Codec.h265, 19) and not h26x.is_keyframe_nal(Codec.h264, 1)
    assert h26x.sps_resolution(Codec.h264, b"\x67") is None


def test_endless_access_unit_is_bounded(
    h264_units: list[tuple[int, bool, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vms.media import ps as ps_module

    monkeypatch.setattr(ps_module, "MAX_ACCESS_UNIT", 200_000)
    d = PsDemuxer(CH)
    first = b"".join(nvr_frame(data, pts, key) for pts, key, data in h264_units[:12])
    out = d.feed(first)
    junk = b"\x00\x00\x00\x01\x41\x9a" + b"\x55" * 60000  # one slice that never ends
    for i in range(6):
        out += d.feed(nvr_frame(junk if i == 0 else b"\x55" * 60000, 999_000 + i, False))
    assert d.stats.oversize == 1 and len(d._es) < 200_000
    assert any(isinstance(x, Gap) and x.reason == "bad-stream" for x in out)
    rest = b"".join(nvr_frame(data, pts, key) for pts, key, data in h264_units[20:])
    units = [x for x in d.feed(rest) + d.flush() if isinstance(x, AccessUnit)]
    assert units[0].keyframe and len(units) == 10
