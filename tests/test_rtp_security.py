"""Issue 19, RTP edge: random SSRCs, one pinned media source, one TCP connection per stream.

The receivers are real sockets on loopback; the device sends ffmpeg's clip, the attacker
(another port, or another loopback host) a clip of its own, and the device's frames must
come out exactly as ffmpeg made them, with not one of the attacker's.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from vms.media import receiver as receiver_mod
from vms.media.ports import PoolExhausted, SsrcAllocator
from vms.media.receiver import TcpPassiveReceiver, UdpReceiver
from vms.media.source import SourceGate, SourcePolicy, normalise_host

from .media_support import (
    SSRC,
    Reference,
    decode_units,
    make_ingest,
    ps_clip,
    send_udp,
    settle,
    tcp_stream,
)
from .rtp_attack import ATTACKER_HOST, Injection, injection, scan_ssrcs, tcp_hijack, udp_scan


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], Reference]:
    return ps_clip(tmp_path_factory, "rtpsec")


@pytest.fixture(scope="module")
def attacker(tmp_path_factory: pytest.TempPathFactory) -> Injection:
    return injection(tmp_path_factory.mktemp("rtpsec-attacker") / "attack.ps")


def assert_identical(units: list, ref: Reference) -> None:
    assert [u.keyframe for u in units] == ref.flags
    assert [u.pts for u in units] == ref.pts
    assert decode_units(units) == ref.digests


class UdpDevice:
    """The device's sending socket: one source port for the whole stream."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))

    async def send(self, port: int, packets: list[bytes], burst: int = 20) -> None:
        for i, p in enumerate(packets):
            self.sock.sendto(p, ("127.0.0.1", port))
            if i % burst == burst - 1:
                await asyncio.sleep(0.002)

    def close(self) -> None:
        self.sock.close()


def udp_port(rx: UdpReceiver) -> int:
    assert rx.transport is not None
    return int(rx.transport.get_extra_info("sockname")[1])


# --- SSRC -----------------------------------------------------------------------------------


def test_ssrcs_are_random_of_the_gb_form_and_never_collide() -> None:
    alloc = SsrcAllocator("3402000000")
    first = [alloc.allocate() for _ in range(50)]
    tails = [int(s[6:]) for s in first]
    assert all(len(s) == 10 and s[:6] == "020000" for s in first)
    # the old allocator handed out 0001, 0002, …: the next SSRC is no longer predictable
    assert sum(1 for a, b in zip(tails, tails[1:], strict=False) if b == a + 1) < 5
    assert first != [SsrcAllocator("3402000000").allocate() for _ in range(50)]
    rest = [alloc.allocate() for _ in range(9999 - 50)]
    assert len(set(first + rest)) == 9999  # every one distinct: a collision is drawn again
    assert alloc.collisions > 0
    with pytest.raises(PoolExhausted):
        alloc.allocate()
    alloc.release(first[7])
    assert alloc.allocate() == first[7]  # the only free one
    assert alloc.allocate(history=True)[:6] == "120000"  # playback has its own space


# --- the gate ----------------------------------------------------------------------------------


def test_gate_decides_hosts_only_once_the_answer_is_known() -> None:
    gate = SourceGate.waiting(SourcePolicy.device, ["127.0.0.1"])
    assert gate.allows("127.0.0.1") is None and gate.allows("10.0.0.9") is None
    gate.answered("10.0.0.9")  # the SDP c= host (another NIC of the NVR)
    assert gate.allows("127.0.0.1") and gate.allows("10.0.0.9")
    assert gate.allows(ATTACKER_HOST) is False
    gate.pin(("10.0.0.9", 4000))
    assert gate.allows("127.0.0.1") is False and gate.allows("10.0.0.9")  # pinned host only
    open_gate = SourceGate.waiting("any", [])
    open_gate.answered("0.0.0.0")  # unusable c= addresses are ignored
    assert open_gate.hosts == set() and open_gate.allows(ATTACKER_HOST)
    assert normalise_host("::ffff:127.0.0.1") == "127.0.0.1" and normalise_host("nvr.lan") is None


# --- UDP -----------------------------------------------------------------------------------------


async def test_udp_blind_scan_injects_nothing(
    clip: tuple[list[bytes], Reference], attacker: Injection
) -> None:
    """The attack: 2,000 probes in 1 s over the SSRC space (the exact SSRC among them)."""
    packets, ref = clip
    ingest, sink = make_ingest()
    rx = await UdpReceiver.open(ingest, "127.0.0.1", 0)
    try:
        port = udp_port(rx)
        device = asyncio.create_task(send_udp(port, packets, burst=10))
        await sink.wait_for(lambda: ingest.stats.packets > 0)  # the device's first packet pins
        ssrcs = scan_ssrcs(SSRC)
        sent = await udp_scan(attacker, port, ssrcs, seq0=40)  # seqs inside the device's range
        await device
        await sink.wait_for(lambda: ingest.stats.packets == len(packets))
        await settle(lambda: ingest.stats.foreign_source, quiet_s=0.1)
    finally:
        rx.close()
    sink.units += ingest.demuxer.flush()
    assert sent == len(ssrcs) == 2000
    assert ingest.stats.foreign_source == sent  # every probe dropped, counted
    assert rx.source is not None and rx.gate.pinned == ("127.0.0.1", rx.source[1])
    assert attacker.found_in(sink.units) == 0
    assert ingest.sequence.lost == 0 and ingest.sequence.duplicates == 0
    assert_identical(sink.units, ref)


async def test_udp_before_the_answer_only_the_device_hosts_can_pin(
    clip: tuple[list[bytes], Reference], attacker: Injection
) -> None:
    """An attacker racing the device (right SSRC, first to arrive) from another host."""
    packets, ref = clip
    ingest, sink = make_ingest()
    gate = SourceGate.waiting("device", ["127.0.0.1"])
    rx = await UdpReceiver.open(ingest, "127.0.0.1", 0, gate)
    device = UdpDevice()
    try:
        port = udp_port(rx)
        sent = await udp_scan(attacker, port, [SSRC] * 300, host=ATTACKER_HOST, seconds=0.2)
        await device.send(port, packets[:100])
        await asyncio.sleep(0.2)
        assert ingest.stats.packets == 0  # all held: nothing decided before the answer
        rx.answered("127.0.0.1")
        await device.send(port, packets[100:])
        await sink.wait_for(lambda: ingest.stats.packets == len(packets))
    finally:
        device.close()
        rx.close()
    sink.units += ingest.demuxer.flush()
    assert ingest.stats.foreign_source == sent and ingest.stats.held_dropped == 0
    assert attacker.found_in(sink.units) == 0
    assert_identical(sink.units, ref)


async def test_udp_from_a_host_the_device_never_named_is_dropped(
    clip: tuple[list[bytes], Reference],
) -> None:
    """``device`` refuses a source on another host; ``any`` (NAT) pins it."""
    packets, _ = clip
    for policy, expect in (("device", 0), ("any", len(packets))):
        ingest, sink = make_ingest()
        rx = await UdpReceiver.open(
            ingest, "127.0.0.1", 0, SourceGate.waiting(policy, ["127.0.0.1"])
        )
        device = UdpDevice("127.0.0.9")
        try:
            rx.answered("127.0.0.1")
            await device.send(udp_port(rx), packets)
            await settle(lambda: ingest.stats.packets + ingest.stats.foreign_source, 0.1)  # noqa: B023
        finally:
            device.close()
            rx.close()
        assert ingest.stats.packets == expect
        assert ingest.stats.foreign_source == len(packets) - expect


async def test_udp_hold_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receiver_mod, "HOLD_PACKETS", 50)
    ingest, _ = make_ingest()
    rx = await UdpReceiver.open(ingest, "127.0.0.1", 0, SourceGate.waiting("device", []))
    try:
        for i in range(120):
            rx.datagram_received(b"\x80" + bytes(20), (ATTACKER_HOST, 1000 + i))
        assert len(rx._held) == 50 and ingest.stats.held_dropped == 70
    finally:
        rx.close()


# --- TCP passive -----------------------------------------------------------------------------


def tcp_port(rx: TcpPassiveReceiver) -> int:
    assert rx.server is not None
    return int(rx.server.sockets[0].getsockname()[1])


async def test_tcp_passive_second_connection_cannot_replace_the_device(
    clip: tuple[list[bytes], Reference], attacker: Injection
) -> None:
    """The attack: while the device streams, connect and send RTP with its SSRC."""
    packets, ref = clip
    half = len(packets) // 2
    ingest, sink = make_ingest(reorder=False)
    rx = await TcpPassiveReceiver.open(ingest, "127.0.0.1", 0)
    try:
        port = tcp_port(rx)
        _, device = await asyncio.open_connection("127.0.0.1", port)
        device.write(tcp_stream(packets[:half]))
        await device.drain()
        await sink.wait_for(lambda: ingest.stats.packets == half)
        assert await tcp_hijack(attacker, port, SSRC, host="127.0.0.1")  # same host, too
        assert await tcp_hijack(attacker, port, SSRC)  # another host
        device.write(tcp_stream(packets[half:]))
        await device.drain()
        await sink.wait_for(lambda: ingest.stats.packets == len(packets))
        assert (
            rx.connection is not None
            and rx.connection.peer[1] == (device.get_extra_info("sockname")[1])
        )
        device.close()
    finally:
        rx.close()
    sink.units += ingest.demuxer.flush()
    assert rx.connections == 1 and ingest.stats.refused_connections == 2
    assert attacker.found_in(sink.units) == 0 and not sink.gaps
    assert_identical(sink.units, ref)


async def test_tcp_passive_reconnection_only_from_the_pinned_host(
    clip: tuple[list[bytes], Reference], attacker: Injection
) -> None:
    packets, _ = clip
    ingest, sink = make_ingest(reorder=False)
    rx = await TcpPassiveReceiver.open(ingest, "127.0.0.1", 0)
    try:
        port = tcp_port(rx)
        _, w1 = await asyncio.open_connection("127.0.0.1", port)
        w1.write(tcp_stream(packets[:100]))
        await w1.drain()
        await sink.wait_for(lambda: ingest.stats.packets == 100)
        w1.transport.abort()  # the device's link is cut
        await sink.wait_for(lambda: rx.connection is None)
        assert await tcp_hijack(attacker, port, SSRC)  # the attacker cannot step in
        _, w2 = await asyncio.open_connection("127.0.0.1", port)  # the device comes back
        w2.write(tcp_stream(packets[100:200]))
        await w2.drain()
        await sink.wait_for(lambda: ingest.stats.packets == 200)
        w2.close()
    finally:
        rx.close()
    assert rx.connections == 2 and ingest.stats.refused_connections == 1
    assert attacker.found_in(sink.units) == 0


async def test_tcp_passive_before_the_answer_the_device_host_wins(
    clip: tuple[list[bytes], Reference], attacker: Injection
) -> None:
    """Both connect before the SDP answer is known; the attacker is first and sends first."""
    packets, ref = clip
    ingest, sink = make_ingest(reorder=False)
    gate = SourceGate.waiting("device", [])  # the device's host comes with the answer
    rx = await TcpPassiveReceiver.open(ingest, "127.0.0.1", 0, gate)
    try:
        port = tcp_port(rx)
        hijack = asyncio.create_task(tcp_hijack(attacker, port, SSRC))
        await asyncio.sleep(0.2)
        _, device = await asyncio.open_connection("127.0.0.1", port)
        device.write(tcp_stream(packets[:50]))
        await device.drain()
        await asyncio.sleep(0.2)
        assert ingest.stats.packets == 0 and len(rx.waiting) == 2
        rx.answered("127.0.0.1")
        assert await hijack
        device.write(tcp_stream(packets[50:]))
        await device.drain()
        await sink.wait_for(lambda: ingest.stats.packets == len(packets))
        device.close()
    finally:
        rx.close()
    sink.units += ingest.demuxer.flush()
    assert attacker.found_in(sink.units) == 0
    assert_identical(sink.units, ref)


async def test_tcp_passive_waiting_connections_are_few_and_expire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(receiver_mod, "PENDING_TCP_TIMEOUT_S", 0.3)
    ingest, _ = make_ingest(reorder=False)
    rx = await TcpPassiveReceiver.open(ingest, "127.0.0.1", 0, SourceGate.waiting("any", []))
    writers = []
    try:
        for _ in range(6):  # idle connections: a descriptor each, held by nobody useful
            _, w = await asyncio.open_connection("127.0.0.1", tcp_port(rx))
            writers.append(w)
        await settle(lambda: ingest.stats.refused_connections, quiet_s=0.05)
        assert len(rx.waiting) <= receiver_mod.PENDING_TCP_MAX
        async with asyncio.timeout(10):
            while rx.waiting:  # the rest expire: nothing valid came in time
                await asyncio.sleep(0.05)
        assert ingest.stats.refused_connections == 6
    finally:
        for w in writers:
            w.close()
        rx.close()


def test_dropped_packets_are_logged_sparsely(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of dropped packets is visible in the log, in a handful of lines."""
    import vms.media.source as source_mod

    logged: list[int] = []

    class Spy:
        def warning(self, what: str, dropped: int, **_: object) -> None:
            logged.append(dropped)

    monkeypatch.setattr(source_mod, "log", Spy())
    for n in range(1, 20_001):
        source_mod.log_dropped("rtp from a foreign source dropped", n)
    assert logged == [1, 10, 100, 1000, 10_000]
