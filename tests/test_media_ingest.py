"""Acceptance: ffmpeg's PS, sent as RTP over real UDP/TCP sockets, demuxes to ffmpeg's frames.

Also the faults: loss and reordering, garbage datagrams and TCP bytes, a cut TCP connection.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from rtp.packet import RtpPacket
from vms.media.receiver import TcpActiveReceiver, TcpPassiveReceiver, UdpReceiver

from .media_support import (
    SSRC,
    Reference,
    check_segments,
    decode_units,
    impair,
    make_ingest,
    ps_clip,
    send_udp,
    settle,
    tcp_stream,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], Reference]:
    return ps_clip(tmp_path_factory, "media")


def assert_identical(units: list, ref: Reference) -> None:
    assert len(units) == len(ref.flags)
    assert [u.keyframe for u in units] == ref.flags
    assert [u.pts for u in units] == ref.pts
    assert decode_units(units) == ref.digests


async def test_udp_matches_ffmpeg(clip: tuple[list[bytes], Reference]) -> None:
    packets, ref = clip
    ingest, sink = make_ingest()
    rx = await UdpReceiver.open(ingest, "127.0.0.1", 0)
    try:
        port = rx.transport.get_extra_info("sockname")[1]
        await send_udp(port, packets)
        await sink.wait_for(lambda: ingest.stats.packets == len(packets))
    finally:
        rx.close()
    sink.units += ingest.demuxer.flush()
    assert ingest.sequence.lost == 0 and not sink.gaps
    assert_identical(sink.units, ref)


@pytest.mark.parametrize("framing", ["rfc4571", "interleaved"])
async def test_tcp_passive_matches_ffmpeg(
    clip: tuple[list[bytes], Reference], framing: str
) -> None:
    packets, ref = clip
    ingest, sink = make_ingest(reorder=False)
    rx = await TcpPassiveReceiver.open(ingest, "127.0.0.1", 0)
    try:
        port = rx.server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(tcp_stream(packets, framing))
        await writer.drain()
        await sink.wait_for(lambda: ingest.stats.packets == len(packets))
        writer.close()
    finally:
        rx.close()
    sink.units += ingest.demuxer.flush()
    assert_identical(sink.units, ref)


async def test_tcp_active_matches_ffmpeg(clip: tuple[list[bytes], Reference]) -> None:
    packets, ref = clip
    ingest, sink = make_ingest(reorder=False)

    async def device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(tcp_stream(packets))
        await writer.drain()
        await reader.read()  # until we close
        writer.close()

    server = await asyncio.start_server(device, "127.0.0.1", 0)
    rx = await TcpActiveReceiver.connect(ingest, "127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        await sink.wait_for(lambda: ingest.stats.packets == len(packets))
    finally:
        rx.close()
        server.close()
        await server.wait_closed()
    sink.units += ingest.demuxer.flush()
    assert_identical(sink.units, ref)


@pytest.mark.parametrize("loss", [0.01, 0.05])
async def test_udp_loss_and_reordering(clip: tuple[list[bytes], Reference], loss: float) -> None:
    packets, ref = clip
    sent = impair(packets, loss=loss, reorder=0.05, seed=int(loss * 1000))
    ingest, sink = make_ingest()
    rx = await UdpReceiver.open(ingest, "127.0.0.1", 0)
    try:
        await send_udp(rx.transport.get_extra_info("sockname")[1], sent)
        await sink.wait_for(lambda: ingest.stats.packets == len(sent))
        await asyncio.sleep(0.15)
        ingest.tick(ingest.stats.last_packet_at + 1)  # give up the last hole
    finally:
        rx.close()
    sink(None)
    for item in ingest.demuxer.flush():
        sink(item)
    seqs = sorted(int.from_bytes(p[2:4], "big") for p in sent)
    assert ingest.sequence.lost == seqs[-1] - seqs[0] + 1 - len(sent)
    assert ingest.sequence.received == len(sent)
    assert ingest.sequence.late == 0 and ingest.sequence.duplicates == 0
    assert sink.gaps and all(g.reason == "packet-loss" for g in sink.gaps)
    assert 0 < check_segments(sink.items, ref) < len(ref.flags)


async def test_udp_garbage_datagrams(clip: tuple[list[bytes], Reference]) -> None:
    packets, ref = clip
    rng = random.Random(7)
    mixed: list[bytes] = []
    for i, p in enumerate(packets):
        mixed.append(p)
        if i % 5 == 0:
            mixed.append(rng.randbytes(rng.randint(0, 1500)))
        if i % 7 == 0:
            foreign = RtpPacket(sequence_number=i, ssrc=SSRC + 1, payload=rng.randbytes(900))
            mixed.append(foreign.serialize())
    ingest, sink = make_ingest()
    rx = await UdpReceiver.open(ingest, "127.0.0.1", 0)
    try:
        await send_udp(rx.transport.get_extra_info("sockname")[1], mixed)
        await sink.wait_for(lambda: ingest.stats.packets == len(packets))
        await asyncio.sleep(0.05)
    finally:
        rx.close()
    sink.units += ingest.demuxer.flush()
    assert ingest.stats.foreign_ssrc >= len(packets) // 7
    assert ingest.stats.bad_packets > 0
    assert_identical(sink.units, ref)


async def test_tcp_garbage_bytes_resync(clip: tuple[list[bytes], Reference]) -> None:
    packets, ref = clip
    rng = random.Random(3)
    stream = bytearray()
    for i, p in enumerate(packets):
        if i == 350:
            stream += b"\xff\xff" + p  # a broken length prefix: this packet is lost
        else:
            stream += tcp_stream([p])
        if i % 150 == 149:
            stream += rng.randbytes(300)  # garbage between packets: skipped, nothing lost
    ingest, sink = make_ingest(reorder=False)
    rx = await TcpPassiveReceiver.open(ingest, "127.0.0.1", 0)
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", rx.server.sockets[0].getsockname()[1]
        )
        writer.write(bytes(stream))
        await writer.drain()
        await settle(lambda: ingest.stats.packets)
        writer.close()
    finally:
        rx.close()
    for item in ingest.demuxer.flush():
        sink(item)
    assert rx.connections == 1 and rx.connection is not None
    framing = rx.connection.deframer.stats
    assert framing.resyncs == len(packets) // 150 + 1 and framing.skipped_bytes > 1400
    assert ingest.sequence.lost == 1 and len(sink.gaps) == 1
    assert len(ref.flags) // 2 < check_segments(sink.items, ref) < len(ref.flags)


async def test_tcp_cut_mid_stream_then_reconnect(clip: tuple[list[bytes], Reference]) -> None:
    packets, ref = clip
    half = len(packets) // 2
    ingest, sink = make_ingest(reorder=False)
    rx = await TcpPassiveReceiver.open(ingest, "127.0.0.1", 0)
    port = rx.server.sockets[0].getsockname()[1]
    try:
        _, w1 = await asyncio.open_connection("127.0.0.1", port)
        w1.write(tcp_stream(packets[:half]) + b"\x05\xdc\x80\x60")  # ends inside a frame
        await w1.drain()
        await sink.wait_for(lambda: ingest.stats.packets == half)
        w1.transport.abort()
        await sink.wait_for(lambda: bool(sink.gaps))
        _, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(tcp_stream(packets[half + 3 :]))
        await w2.drain()
        await sink.wait_for(lambda: ingest.stats.packets == len(packets) - 3)
        w2.close()
    finally:
        rx.close()
    for item in ingest.demuxer.flush():
        sink(item)
    assert [g.reason for g in sink.gaps] == ["connection-lost"]
    assert rx.connections == 2
    assert len(ref.flags) // 2 < check_segments(sink.items, ref) < len(ref.flags)


def test_clip_has_several_keyframes(clip: tuple[list[bytes], Reference], tmp_path: Path) -> None:
    _, ref = clip
    assert sum(ref.flags) >= 3 and len(ref.flags) == 100
