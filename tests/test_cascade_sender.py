"""The cascade's media sender on real sockets: access units → PS → RTP over UDP, TCP active and
TCP passive (RFC 4571), received by the node's own receive path (RtpIngest + PS demux), which
must give back the same units, bit for bit."""

from __future__ import annotations

import asyncio
import socket

import pytest

from rtp.ps_mux import STREAM_TYPE_H265, mux_frame
from vms.cascade.sender import (
    LinkClosed,
    RtpSender,
    TcpLink,
    TcpListener,
    UdpLink,
)
from vms.media.frames import AccessUnit, Codec
from vms.media.ps import PsDemuxer
from vms.media.receiver import (
    RtpIngest,
    TcpActiveReceiver,
    TcpPassiveReceiver,
    UdpReceiver,
)
from vms.media.stats import StreamStats

from .media_support import Collector, encode_units

SSRC = 1440000002  # "1440000002": a superior's playback y=
CH = "34020000001320000001"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def units(codec: str = "libx264", n: int = 40) -> list[AccessUnit]:
    c = Codec.h265 if codec == "libx265" else Codec.h264
    return [
        AccessUnit(CH, pts, key, data, c) for pts, key, data in encode_units(n, codec=codec, gop=10)
    ]


def ingest(reorder: bool) -> tuple[RtpIngest, Collector]:
    sink = Collector()
    return RtpIngest(PsDemuxer(CH), sink, SSRC, StreamStats(), reorder=reorder), sink


def assert_same(sent: list[AccessUnit], got: list[AccessUnit]) -> None:
    assert [u.data for u in got] == [u.data for u in sent]
    assert [u.keyframe for u in got] == [u.keyframe for u in sent]
    base = got[0].pts - sent[0].pts
    assert [u.pts - base for u in got] == [u.pts for u in sent]
    assert {u.codec for u in got} == {sent[0].codec}


async def send_all(sender: RtpSender, clip: list[AccessUnit]) -> None:
    for i, au in enumerate(clip):
        sender.send(au, au.pts)
        await sender.drain()
        if i % 8 == 7:
            await asyncio.sleep(0.002)  # no burst bigger than a socket buffer


async def test_udp_sender_to_the_receive_path() -> None:
    clip = units()
    ing, sink = ingest(reorder=True)
    port = free_port()
    receiver = await UdpReceiver.open(ing, "127.0.0.1", port)
    link = await UdpLink.open("127.0.0.1", "127.0.0.1", port)
    sender = RtpSender(SSRC, 96, link)
    try:
        await send_all(sender, clip)
        # the last frame is complete once a later packet arrives: send one more keyframe
        sender.send(clip[0], clip[-1].pts + 3600)
        await sink.wait_for(lambda: len(sink.units) >= len(clip))
    finally:
        sender.close()
        receiver.close()
    assert_same(clip, sink.units[: len(clip)])
    assert ing.sequence.lost == 0
    assert sender.stats.frames == len(clip) + 1 and sender.stats.packets > len(clip)
    assert link.local_port > 0


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
async def test_tcp_active_sender(codec: str) -> None:
    """The superior offered a=setup:passive: it listens, we connect (RFC 4571 framing)."""
    clip = units(codec)
    ing, sink = ingest(reorder=False)
    port = free_port(socket.SOCK_STREAM)
    receiver = await TcpPassiveReceiver.open(ing, "127.0.0.1", port)
    sender = RtpSender(SSRC, 96, await TcpLink.connect("127.0.0.1", port))
    try:
        await send_all(sender, clip)
        sender.send(clip[0], clip[-1].pts + 3600)
        await sink.wait_for(lambda: len(sink.units) >= len(clip))
    finally:
        sender.close()
        receiver.close()
    assert_same(clip, sink.units[: len(clip)])


async def test_tcp_passive_sender() -> None:
    """The superior offered a=setup:active: we listen on a port, it connects to us."""
    clip = units()
    ing, sink = ingest(reorder=False)
    listener = TcpListener()
    port = await listener.open("127.0.0.1", 0)
    connect = asyncio.create_task(TcpActiveReceiver.connect(ing, "127.0.0.1", port))
    link = await listener.wait(5)
    receiver = await connect
    sender = RtpSender(SSRC, 96, link)
    try:
        await send_all(sender, clip)
        sender.send(clip[0], clip[-1].pts + 3600)
        await sink.wait_for(lambda: len(sink.units) >= len(clip))
    finally:
        sender.close()
        receiver.close()
    assert_same(clip, sink.units[: len(clip)])


async def test_tcp_passive_times_out_without_a_connection() -> None:
    listener = TcpListener()
    port = await listener.open("127.0.0.1", 0)
    with pytest.raises(TimeoutError):
        await listener.wait(0.2)
    with pytest.raises(OSError):  # the port is closed again
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)


async def test_closed_tcp_peer_ends_the_send() -> None:
    accepted: list[asyncio.StreamWriter] = []

    def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = RtpSender(SSRC, 96, await TcpLink.connect("127.0.0.1", port))
    clip = units(n=10)
    try:
        async with asyncio.timeout(5):
            while not accepted:
                await asyncio.sleep(0.01)
        accepted[0].close()
        server.close()
        with pytest.raises((LinkClosed, ConnectionError)):
            async with asyncio.timeout(10):
                while True:
                    for au in clip:
                        sender.send(au, au.pts)
                        await sender.drain()
                    await asyncio.sleep(0.01)
    finally:
        sender.close()


async def test_udp_to_nobody_ends_the_send() -> None:
    """ICMP port unreachable in a row: the superior is gone, the link says so."""
    link = await UdpLink.open("127.0.0.1", "127.0.0.1", free_port())
    sender = RtpSender(SSRC, 96, link)
    au = units(n=1)[0]
    try:
        with pytest.raises(LinkClosed):
            async with asyncio.timeout(10):
                while True:
                    sender.send(au, 0)
                    await asyncio.sleep(0.001)
    finally:
        sender.close()


def test_h265_units_are_muxed_with_their_stream_type() -> None:
    clip = units("libx265", n=2)
    demuxer = PsDemuxer(CH)
    got = []
    for au in clip:
        got += demuxer.feed(mux_frame(au.data, au.pts, au.keyframe, STREAM_TYPE_H265))
        got += demuxer.end_of_frame()
    assert demuxer.stats.stream_types[0xE0] == STREAM_TYPE_H265
    assert [u.codec for u in got if isinstance(u, AccessUnit)][:1] == [Codec.h265]
