"""An off-path RTP attacker on loopback: blind SSRC scans over UDP, hijacking TCP connections.

Loopback has a whole /8, so an attacker "on another host" binds 127.0.0.x: the source
check tells hosts apart even though every peer of the tests is on this machine.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path

from rtp.packetizer import rfc4571
from vms.media.frames import AccessUnit
from vms.media.ps import PsDemuxer

from .media_support import ffmpeg_ps, packets_of

ATTACKER_HOST = "127.0.0.77"  # not the device's host
SCAN_PACKETS = 2000


@dataclass
class Injection:
    """What the attacker sends: RTP of its own clip, and the access units that clip holds."""

    packets: list[bytes]  # PS over RTP, SSRC 0: re-stamped per probe
    units: set[bytes]  # the clip's access units as a demuxer yields them

    def probe(self, i: int, ssrc: int, seq: int) -> bytes:
        """Packet ``i`` of the clip (cycling) with another SSRC and sequence number."""
        p = bytearray(self.packets[i % len(self.packets)])
        p[2:4] = (seq & 0xFFFF).to_bytes(2, "big")
        p[8:12] = (ssrc & 0xFFFFFFFF).to_bytes(4, "big")
        return bytes(p)

    def found_in(self, units: list[AccessUnit]) -> int:
        """How many of ``units`` are the attacker's frames."""
        return sum(1 for u in units if bytes(u.data) in self.units)


def injection(path: Path) -> Injection:
    """A 2 s 320x240 clip of another pattern: its frames can never be the device's."""
    ps = ffmpeg_ps(path, seconds=2, size="320x240", gop=10)
    demuxer = PsDemuxer("34020000001320000099")
    units = [u for u in demuxer.feed(ps) if isinstance(u, AccessUnit)]
    units += [u for u in demuxer.flush() if isinstance(u, AccessUnit)]
    return Injection(packets_of(ps, ssrc=0), {bytes(u.data) for u in units})


def scan_ssrcs(exact: int, count: int = SCAN_PACKETS) -> list[int]:
    """A blind scan of the GB28181 SSRC space of ``exact``'s prefix, ``exact`` itself included."""
    head = exact - exact % 10_000
    step = max(1, 10_000 // count)
    probes = [head + (n * step) % 10_000 for n in range(count - 1)]
    return [exact, *probes]


async def udp_scan(
    inj: Injection,
    port: int,
    ssrcs: list[int],
    host: str = "127.0.0.1",
    seconds: float = 1.0,
    seq0: int = 0,
) -> int:
    """Send one probe per SSRC to ``port`` within about ``seconds``; the number sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    sent = 0
    try:
        batches = max(1, int(seconds / 0.01))
        per = max(1, len(ssrcs) // batches + 1)
        for start in range(0, len(ssrcs), per):
            for k, ssrc in enumerate(ssrcs[start : start + per], start):
                try:
                    sock.sendto(inj.probe(k, ssrc, seq0 + k), ("127.0.0.1", port))
                    sent += 1
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            await asyncio.sleep(0.01)
    finally:
        sock.close()
    return sent


async def tcp_hijack(
    inj: Injection, port: int, ssrc: int, host: str = ATTACKER_HOST, count: int = 200
) -> bool:
    """Connect to a TCP-passive media port and push ``count`` packets with the stream's SSRC.

    True when the receiver closed the connection on us (refused), False if it kept it
    open for a second after the packets.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    try:
        data = b"".join(rfc4571(inj.probe(i, ssrc, 30_000 + i)) for i in range(count))
        try:
            writer.write(data)
            await writer.drain()
        except ConnectionError:
            return True
        try:
            got = await asyncio.wait_for(reader.read(1), 1.0)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return got == b""
    finally:
        writer.close()
