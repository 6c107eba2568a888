"""RTP receive for one pulled stream: UDP, TCP passive (we listen), TCP active (we connect).

Transports are thin; :class:`RtpIngest` does the per-packet work (SSRC filter,
reorder or continuity check, PS demux) and hands units to a sink.  Foreign
SSRCs are dropped ("ssrc mismatched"); the device's own SSRC from its SDP
answer is accepted by :meth:`RtpIngest.rekey`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable

from vms.logging import get_logger

from .frames import AccessUnit, Gap
from .ps import AudioPacket, PsDemuxer
from .reorder import SEQ_MOD, ReorderBuffer, SequenceStats
from .stats import StreamStats
from .tcp_framing import TcpDeframer

log = get_logger("vms.media.receiver")

UDP_RECV_BUFFER = 4 * 1024 * 1024  # ZLM udp_recv_socket_buffer
_HEADER = struct.Struct("!BBHII")
Sink = Callable[[AccessUnit | Gap | AudioPacket], None]


class RtpIngest:
    """SSRC check → sequence order → PS demux → sink, for one stream."""

    def __init__(
        self,
        demuxer: PsDemuxer,
        sink: Sink,
        ssrc: int | None,
        stats: StreamStats,
        reorder: bool = True,
    ) -> None:
        self.demuxer = demuxer
        self.sink = sink
        self.ssrcs: set[int] = set() if ssrc is None else {ssrc}
        self.stats = stats
        self.reorder: ReorderBuffer[tuple[bytes, bool]] | None = (
            ReorderBuffer() if reorder else None
        )
        self.sequence = self.reorder.stats if self.reorder else SequenceStats()
        self._next_seq: int | None = None

    def rekey(self, ssrc: int) -> None:
        """Accept the SSRC the device announced in its answer (it may differ from ours)."""
        self.ssrcs.add(ssrc)

    def on_packet(self, data: bytes, now: float) -> None:
        """One RTP packet (a datagram, or a deframed TCP packet)."""
        if len(data) < 12 or data[0] >> 6 != 2:
            self.stats.bad_packets += 1
            return
        b0, b1, seq, _ts, ssrc = _HEADER.unpack_from(data)
        if self.ssrcs and ssrc not in self.ssrcs:
            self.stats.foreign_ssrc += 1
            return
        start = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:
            if start + 4 > len(data):
                self.stats.bad_packets += 1
                return
            start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
        end = len(data) - (data[-1] if b0 & 0x20 else 0)
        if start > end:
            self.stats.bad_packets += 1
            return
        self.stats.on_packet(len(data), now)
        payload = data[start:end] if start or end != len(data) else data
        marker = bool(b1 & 0x80)
        if self.reorder is not None:
            for lost, (p, m) in self.reorder.push(seq, (payload, marker), now):
                self._demux(p, m, lost)
        else:
            lost = 0
            if self._next_seq is not None:
                lost = (seq - self._next_seq) % SEQ_MOD
                if lost >= SEQ_MOD // 2:
                    lost = 1  # went backwards: sender restart over TCP
                self.sequence.lost += lost
            self.sequence.received += 1
            self._next_seq = (seq + 1) % SEQ_MOD
            self._demux(payload, marker, lost)

    def _demux(self, payload: bytes, marker: bool, lost: int) -> None:
        sink = self.sink
        if lost:
            for item in self.demuxer.mark_loss():
                sink(item)
        for item in self.demuxer.feed(payload):
            sink(item)
        if marker:
            for item in self.demuxer.end_of_frame():
                sink(item)

    def tick(self, now: float) -> None:
        """Timer: give up reorder holes that waited too long."""
        if self.reorder is not None:
            for lost, (p, m) in self.reorder.flush(now):
                self._demux(p, m, lost)

    def connection_lost(self) -> None:
        """A TCP connection ended: what follows is not contiguous with what came before."""
        self._next_seq = None
        for item in self.demuxer.mark_loss("connection-lost"):
            self.sink(item)


class UdpReceiver(asyncio.DatagramProtocol):
    def __init__(self, ingest: RtpIngest) -> None:
        self.ingest = ingest
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, ingest: RtpIngest, host: str, port: int) -> UdpReceiver:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECV_BUFFER)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(lambda: cls(ingest), sock=sock)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.ingest.on_packet(data, time.monotonic())

    def error_received(self, exc: Exception) -> None:
        log.debug("udp receive error", error=repr(exc))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _TcpMediaProtocol(asyncio.Protocol):
    """One TCP media connection: deframe, then ingest."""

    def __init__(self, ingest: RtpIngest, on_lost: Callable[[_TcpMediaProtocol], None]) -> None:
        self.ingest = ingest
        self.deframer = TcpDeframer(ingest.ssrcs)
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        for packet in self.deframer.feed(data):
            self.ingest.on_packet(packet, now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TcpPassiveReceiver:
    """We listen on the offered port; the device connects (SDP ``a=setup:passive``).

    A new connection replaces the current one, so a device that reconnects after a
    cut is taken back at once.
    """

    def __init__(self, ingest: RtpIngest) -> None:
        self.ingest = ingest
        self.server: asyncio.Server | None = None
        self.connection: _TcpMediaProtocol | None = None
        self.connections = 0

    @classmethod
    async def open(cls, ingest: RtpIngest, host: str, port: int) -> TcpPassiveReceiver:
        self = cls(ingest)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._accept, host, port, reuse_address=True)
        return self

    def _accept(self) -> _TcpMediaProtocol:
        if self.connection is not None:
            old, self.connection = self.connection, None
            old.close()
        self.connections += 1
        proto = _TcpMediaProtocol(self.ingest, self._lost)
        self.connection = proto
        return proto

    def _lost(self, proto: _TcpMediaProtocol) -> None:
        if self.connection is proto:
            self.connection = None
        self.ingest.connection_lost()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.connection is not None:
            self.connection.close()


class TcpActiveReceiver:
    """We connect to the device's IP/port from its SDP answer (``a=setup:active``)."""

    def __init__(self, ingest: RtpIngest) -> None:
        self.ingest = ingest
        self.connection: _TcpMediaProtocol | None = None
        self.lost = asyncio.Event()

    @classmethod
    async def connect(
        cls, ingest: RtpIngest, host: str, port: int, timeout_s: float = 5.0
    ) -> TcpActiveReceiver:
        self = cls(ingest)
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: _TcpMediaProtocol(ingest, self._lost), host, port),
            timeout_s,
        )
        self.connection = proto
        return self

    def _lost(self, proto: _TcpMediaProtocol) -> None:
        self.ingest.connection_lost()
        self.lost.set()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
