"""One RTP header for both directions: the receive path's ``split`` reads what ``RtpPacket``
and the senders' ``header`` / ``packetize`` write, and refuses what cannot be RTP."""

from __future__ import annotations

import pytest

from rtp.h26x import h264_packets
from rtp.packet import RtpPacket, header, split, ssrc_of
from rtp.packetizer import PT_H264, PT_PS, RTP_MTU, packetize, packetize_payloads

# A captured GB28181 PS/RTP packet header (Hikvision NVR): V=2, M=0, PT=96, seq 0x1a2b,
# ts 0x000a5d6c, SSRC 0x0BEBC201 ("0200000001"), then the start of a pack header.
CAPTURED = bytes.fromhex("80601a2b000a5d6c0bebc201000001ba44b2a1e4b401")


def test_split_reads_a_captured_packet() -> None:
    assert split(CAPTURED) == (96, False, 0x1A2B, 0x0A5D6C, 0x0BEBC201, CAPTURED[12:])


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(payload=b"\x00\x00\x01\xba", marker=True),
        RtpPacket(payload_type=98, csrc=(1, 2, 3), payload=b"abc", sequence_number=65535),
        RtpPacket(extension_profile=0xBEDE, extension=b"\x01\x02\x03\x04", payload=b"x" * 1400),
        RtpPacket(padding_size=4, payload=b"pad me", timestamp=0xFFFFFFFF, ssrc=0xFFFFFFFF),
        RtpPacket(csrc=(9,), extension_profile=1, extension=bytes(8), padding_size=1),
    ],
)
def test_split_agrees_with_the_strict_parser(packet: RtpPacket) -> None:
    data = packet.serialize()
    p = RtpPacket.parse(data)
    assert split(data) == (
        p.payload_type,
        p.marker,
        p.sequence_number,
        p.timestamp,
        p.ssrc,
        p.payload,
    )
    assert ssrc_of(data) == p.ssrc


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x60",  # too short
        b"\x40" + bytes(11),  # version 1
        b"\x8f" + bytes(11),  # 15 CSRCs announced, none there
        b"\x90" + bytes(11) + b"\x00\x00\x00\x09",  # extension runs past the end
        b"\xa0" + bytes(11) + b"\x00\x00\x00\x20",  # padding longer than the packet
    ],
)
def test_split_refuses_what_is_not_rtp(data: bytes) -> None:
    assert split(data) is None


def test_header_is_what_the_parser_reads() -> None:
    data = header(PT_PS, 0x1_0005, 0x1_0000_0007, 42, marker=True) + b"payload"
    p = RtpPacket.parse(data)
    assert (p.payload_type, p.sequence_number, p.timestamp, p.ssrc, p.marker) == (
        96,
        5,
        7,
        42,
        True,
    )
    assert p.payload == b"payload"


def test_packetize_cuts_frames_at_the_mtu_marks_their_ends_and_wraps_seq() -> None:
    frames = [(3600, b"a" * (RTP_MTU * 2 + 1)), (7200, b"b" * 10)]
    out = packetize(frames, ssrc=7, seq=65534)
    parsed = [RtpPacket.parse(p) for p in out]
    assert [p.sequence_number for p in parsed] == [65534, 65535, 0, 1]
    assert [p.marker for p in parsed] == [False, False, True, True]
    assert [p.timestamp for p in parsed] == [3600, 3600, 3600, 7200]
    assert [len(p.payload) for p in parsed] == [RTP_MTU, RTP_MTU, 1, 10]
    assert b"".join(p.payload for p in parsed[:3]) == frames[0][1]


def test_h264_frames_become_payload_packets_with_one_marker() -> None:
    frame = (
        b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x01\x68\xce" + b"\x00\x00\x01\x65" + bytes(3000)
    )
    out = h264_packets(frame, 90_000, ssrc=5, seq=10)
    parsed = [RtpPacket.parse(p) for p in out]
    assert {p.payload_type for p in parsed} == {PT_H264}
    assert [p.marker for p in parsed] == [False] * (len(parsed) - 1) + [True]
    assert parsed[0].payload[0] & 0x1F == 24  # STAP-A with SPS + PPS
    assert all(p.payload[0] & 0x1F == 28 for p in parsed[1:])  # FU-A for the IDR
    again = packetize_payloads([(90_000, [p.payload for p in parsed])], 5, 10, PT_H264)
    assert again == out
