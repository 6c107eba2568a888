"""RTP header, reorder buffer, TCP framing, port and SSRC allocation: bytes in, facts out."""

from __future__ import annotations

import random

import pytest

from rtp.packet import RtpError, RtpPacket, ssrc_of
from rtp.packetizer import interleaved, rfc4571
from vms.media.ports import PoolExhausted, PortPool, SsrcAllocator, ssrc_value
from vms.media.reorder import ReorderBuffer
from vms.media.tcp_framing import TcpDeframer

# A captured GB28181 PS/RTP packet header (Hikvision NVR): V=2, M=0, PT=96, seq 0x1a2b,
# ts 0x000a5d6c, SSRC 0x0BEBC201 ("0200000001"), then the start of a pack header.
CAPTURED = bytes.fromhex("80601a2b000a5d6c0bebc201000001ba44b2a1e4b401")


def test_rtp_parse_captured() -> None:
    p = RtpPacket.parse(CAPTURED)
    assert (p.payload_type, p.sequence_number, p.timestamp) == (96, 0x1A2B, 0x0A5D6C)
    assert p.ssrc == ssrc_value("0200000001") == 0x0BEBC201
    assert not p.marker
    assert p.payload.startswith(b"\x00\x00\x01\xba")
    assert ssrc_of(CAPTURED) == 0x0BEBC201


def test_rtp_roundtrip_with_csrc_extension_padding() -> None:
    p = RtpPacket(
        payload_type=96,
        sequence_number=65535,
        timestamp=0xFFFFFFFF,
        ssrc=7,
        marker=True,
        payload=b"abc",
        csrc=(1, 2),
        extension_profile=0xBEDE,
        extension=b"\x01\x02\x03\x04",
        padding_size=4,
    )
    q = RtpPacket.parse(p.serialize())
    assert q == p


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x60", "too short"),
        (b"\x40" + bytes(11), "version"),
        (b"\x8f" + bytes(11), "CSRC"),
        (b"\x90" + bytes(11) + b"\x00\x00\x00\x09", "extension"),
        (b"\xa0" + bytes(11) + b"\x00\x00\x00\x20", "padding"),
    ],
)
def test_rtp_malformed(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        RtpPacket.parse(data)


def test_reorder_in_order_and_swapped() -> None:
    buf: ReorderBuffer[int] = ReorderBuffer(capacity=8)
    out = []
    for seq in [65533, 65535, 65534, 0, 2, 1, 3]:  # wraps around 65535 → 0
        out += buf.push(seq, seq, now=0.0)
    assert [item for _, item in out] == [65533, 65534, 65535, 0, 1, 2, 3]
    assert all(lost == 0 for lost, _ in out)
    assert (buf.stats.received, buf.stats.lost) == (7, 0)


def test_reorder_loss_late_and_duplicates() -> None:
    buf: ReorderBuffer[int] = ReorderBuffer(capacity=3, max_wait_s=10)
    out = []
    for seq in [10, 11, 13, 14, 15, 16]:  # 12 missing: given up after 3 held + 1
        out += buf.push(seq, seq, now=0.0)
    assert [item for _, item in out] == [10, 11, 13, 14, 15, 16]
    assert [lost for lost, _ in out] == [0, 0, 1, 0, 0, 0]
    assert buf.push(12, 12, now=0.0) == []  # late
    assert buf.push(14, 14, now=0.0) == []  # duplicate
    assert (buf.stats.lost, buf.stats.late, buf.stats.duplicates) == (1, 1, 1)


def test_reorder_bounded_wait_by_time() -> None:
    buf: ReorderBuffer[int] = ReorderBuffer(capacity=100, max_wait_s=0.05)
    assert [i for _, i in buf.push(1, 1, 0.0)] == [1]
    assert buf.push(3, 3, 0.0) == []
    assert buf.flush(0.01) == []
    assert buf.flush(0.06) == [(1, 3)]
    assert buf.stats.lost == 1


def test_reorder_sender_restart() -> None:
    buf: ReorderBuffer[int] = ReorderBuffer()
    buf.push(100, 100, 0.0)
    out = buf.push(40000, 1, 0.0)
    assert out == [(1, 1)] and buf.stats.restarts == 1
    assert buf.push(40001, 2, 0.0) == [(0, 2)]


def _rtp(seq: int, ssrc: int = 0x0BEBC201, size: int = 100) -> bytes:
    return RtpPacket(sequence_number=seq, ssrc=ssrc, payload=bytes([seq % 256]) * size).serialize()


def test_tcp_rfc4571_and_interleaved_any_split() -> None:
    packets = [_rtp(i) for i in range(20)]
    stream = b"".join(rfc4571(p) if i % 2 else interleaved(p) for i, p in enumerate(packets))
    rng = random.Random(1)
    d = TcpDeframer({0x0BEBC201})
    got: list[bytes] = []
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, 300)
        got += d.feed(stream[pos : pos + step])
        pos += step
    assert got == packets
    assert d.stats.resyncs == 0


def test_tcp_resync_after_garbage_and_oversize_length() -> None:
    g = [rfc4571(_rtp(i)) for i in range(8)]
    stream = (
        g[0]
        + b"\xff\xfe garbage that is not framing \x00\x01"
        + g[1]
        + g[2]
        + b"\x30\x00"  # a 12 KB length: over RTP_MAX_SIZE, rejected
        + g[3]
        + g[4]
        + rfc4571(_rtp(99, ssrc=1234))  # foreign SSRC: broken framing for us
        + b"".join(g[5:])
    )
    d = TcpDeframer({0x0BEBC201})
    got = d.feed(stream)
    assert got == [x[2:] for x in g]
    assert d.stats.resyncs == 3 and d.stats.skipped_bytes > 0


def test_tcp_resync_needs_two_consecutive_packets() -> None:
    d = TcpDeframer({0x0BEBC201})
    lone = rfc4571(_rtp(1))
    assert d.feed(b"\x00\x05junk" + lone + b"\x13\x37") == []
    assert d.feed(rfc4571(_rtp(2)) + rfc4571(_rtp(3))) == [_rtp(2), _rtp(3)]


def test_port_pool_round_robin_and_exhaustion() -> None:
    pool = PortPool(30000, 30002)
    assert [pool.allocate() for _ in range(3)] == [30000, 30001, 30002]
    with pytest.raises(PoolExhausted):
        pool.allocate()
    pool.release(30001)
    assert pool.allocate() == 30001


def test_ssrc_format_unique_and_freed() -> None:
    alloc = SsrcAllocator("3402000000")
    live = alloc.allocate()
    hist = alloc.allocate(history=True)
    assert live[:6] == "020000" and hist[:6] == "120000"  # GB28181: live/history, domain
    assert ssrc_value("0200000001") == 0x0BEBC201
    alloc.release(live)
    assert alloc.in_use() == 1
    seen = {alloc.allocate() for _ in range(100)}
    assert len(seen) == 100 and all(s[:6] == "020000" and len(s) == 10 for s in seen)
    with pytest.raises(ValueError):
        SsrcAllocator("34020")


def test_stream_stats_rates_over_whole_seconds() -> None:
    from vms.media.stats import StreamStats

    st = StreamStats()
    for i in range(500):  # 5 s of 100 packets/s of 1000 bytes, 25 frames/s
        t = 100.0 + i / 100
        st.on_packet(1000, t)
        if i % 4 == 0:
            st.on_frame(i % 100 == 0, t)
    bitrate, fps = st.rates(105.0)
    assert bitrate == 800_000 and fps == 25
    assert st.rates(100.5) == (0.0, 0.0)  # no whole second yet
    assert st.as_dict(105.0)["keyframes"] == 5
