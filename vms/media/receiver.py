"""RTP receive for one pulled stream: UDP, TCP passive (we listen), TCP active (we connect).

Transports are thin: :class:`~vms.media.ingest.RtpIngest` does the per-packet work.
What they add is the source check (:mod:`vms.media.source`): a stream takes RTP
from one source — UDP datagrams from the (host, port) of its first valid packet,
TCP from one connection at a time — and drops the rest, counted.  Packets and
connections that come before the SDP answer are held (bounded) and decided when
:meth:`answered` tells the device's ``c=`` address.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable

from vms.logging import get_logger

from .ingest import RtpIngest, Sink
from .source import SourceGate, log_dropped
from .tcp_framing import TcpDeframer

__all__ = [
    "RtpIngest",
    "Sink",
    "TcpActiveReceiver",
    "TcpPassiveReceiver",
    "UdpReceiver",
]

log = get_logger("vms.media.receiver")

UDP_RECV_BUFFER = 4 * 1024 * 1024  # ZLM udp_recv_socket_buffer
HOLD_PACKETS = 2048  # datagrams held from undecided sources until the SDP answer
HOLD_BYTES = 4 * 1024 * 1024
PENDING_TCP_MAX = 2  # connections waiting to be chosen; a further one evicts the oldest
PENDING_TCP_TIMEOUT_S = 10.0  # a connection not chosen by then is closed
PENDING_TCP_BYTES = 1024 * 1024  # held per waiting connection; beyond, its reading pauses


class UdpReceiver(asyncio.DatagramProtocol):
    """Datagrams from the pinned source go to the ingest; any other source's are dropped."""

    def __init__(self, ingest: RtpIngest, gate: SourceGate | None = None) -> None:
        self.ingest = ingest
        self.gate = gate or SourceGate()
        self.transport: asyncio.DatagramTransport | None = None
        self.source: tuple[str, int] | None = None  # pinned, exactly as the socket reports it
        self._held: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._held_bytes = 0

    @classmethod
    async def open(
        cls, ingest: RtpIngest, host: str, port: int, gate: SourceGate | None = None
    ) -> UdpReceiver:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECV_BUFFER)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(lambda: cls(ingest, gate), sock=sock)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr == self.source:  # the hot path: one tuple compare
            self.ingest.on_packet(data, time.monotonic())
        else:
            self._unpinned(data, addr)

    def _unpinned(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.source is not None:
            self._foreign(addr)
            return
        verdict = self.gate.allows(addr[0])
        if verdict is None:
            self._hold(data, addr)
        elif not verdict:
            self._foreign(addr)
        elif self.ingest.accepts(data):
            self.source = addr
            self.gate.pin(addr)
            self.ingest.on_packet(data, time.monotonic())

    def _hold(self, data: bytes, addr: tuple[str, int]) -> None:
        held = self._held
        held.append((data, addr))
        self._held_bytes += len(data)
        while len(held) > HOLD_PACKETS or self._held_bytes > HOLD_BYTES:
            old, _ = held.popleft()
            self._held_bytes -= len(old)
            self.ingest.stats.held_dropped += 1

    def _foreign(self, addr: tuple[str, int]) -> None:
        stats = self.ingest.stats
        stats.foreign_source += 1
        log_dropped(
            "rtp from a foreign source dropped",
            stats.foreign_source,
            channel=self.ingest.demuxer.channel_id,
            source=f"{addr[0]}:{addr[1]}",
            pinned=f"{self.source[0]}:{self.source[1]}" if self.source else None,
        )

    def answered(self, sdp_host: str | None) -> None:
        """The SDP answer came: decide the held datagrams, in their order of arrival."""
        self.gate.answered(sdp_host)
        held, self._held = self._held, deque()
        self._held_bytes = 0
        for data, addr in held:
            self.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp receive error", error=repr(exc))

    def close(self) -> None:
        self._held.clear()
        if self.transport is not None:
            self.transport.close()


class _TcpMediaProtocol(asyncio.Protocol):
    """One TCP media connection: deframe, then ingest — once it is the stream's connection."""

    def __init__(
        self,
        ingest: RtpIngest,
        on_lost: Callable[[_TcpMediaProtocol], None],
        owner: TcpPassiveReceiver | None = None,
    ) -> None:
        self.ingest = ingest
        self.deframer = TcpDeframer(ingest.ssrcs)
        self.on_lost = on_lost
        self.owner = owner
        self.chosen = owner is None  # an accepted connection waits to be chosen
        self.held = bytearray()  # bytes of a waiting connection, before the answer
        self.peer: tuple[str, int] = ("", 0)
        self.expiry: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        if self.owner is not None:
            self.owner._arrived(self)

    def data_received(self, data: bytes) -> None:
        if self.chosen:
            self.feed(self.deframer.feed(data))
        elif self.owner is not None:
            self.owner._waiting_data(self, data)

    def feed(self, packets: list[bytes]) -> None:
        now = time.monotonic()
        for packet in packets:
            self.ingest.on_packet(packet, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        self.on_lost(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TcpPassiveReceiver:
    """We listen on the offered port; the device connects (SDP ``a=setup:passive``).

    One connection at a time: the first one from an allowed host whose bytes
    frame valid RTP of the stream is chosen, its host pinned; others are closed
    (counted) while it lives.  After a cut, a reconnection from the same host is
    taken back at once.
    """

    def __init__(self, ingest: RtpIngest, gate: SourceGate | None = None) -> None:
        self.ingest = ingest
        self.gate = gate or SourceGate()
        self.server: asyncio.Server | None = None
        self.connection: _TcpMediaProtocol | None = None
        self.waiting: list[_TcpMediaProtocol] = []
        self.connections = 0  # connections chosen so far

    @classmethod
    async def open(
        cls, ingest: RtpIngest, host: str, port: int, gate: SourceGate | None = None
    ) -> TcpPassiveReceiver:
        self = cls(ingest, gate)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._accept, host, port, reuse_address=True)
        return self

    def _accept(self) -> _TcpMediaProtocol:
        return _TcpMediaProtocol(self.ingest, self._lost, self)

    def _arrived(self, proto: _TcpMediaProtocol) -> None:
        if self.connection is not None:
            self._refuse(proto, "the stream has its connection")
            return
        if self.gate.allows(proto.peer[0]) is False:
            self._refuse(proto, "not from the device's host")
            return
        if len(self.waiting) >= PENDING_TCP_MAX:
            self._refuse(self.waiting.pop(0), "too many connections waiting")
        self.waiting.append(proto)
        proto.expiry = asyncio.get_running_loop().call_later(
            PENDING_TCP_TIMEOUT_S, self._expire, proto
        )

    def _waiting_data(self, proto: _TcpMediaProtocol, data: bytes) -> None:
        proto.held += data
        if self.gate.final:
            self._try(proto)
        elif len(proto.held) > PENDING_TCP_BYTES and proto.transport is not None:
            proto.transport.pause_reading()  # TCP flow control holds the rest

    def _try(self, proto: _TcpMediaProtocol) -> None:
        """Choose ``proto`` if it may feed the stream and its bytes frame valid RTP."""
        if self.gate.allows(proto.peer[0]) is not True:
            self._refuse(proto, "not from the device's host")
            return
        if not proto.held:
            return
        packets = proto.deframer.feed(bytes(proto.held))
        proto.held.clear()
        if packets:
            self._choose(proto, packets)

    def _choose(self, proto: _TcpMediaProtocol, packets: list[bytes]) -> None:
        self._unwait(proto)
        for other in self.waiting:
            self._refuse(other, "another connection was chosen", unwait=False)
        self.waiting.clear()
        self.connection = proto
        proto.chosen = True
        self.connections += 1
        self.gate.pin(proto.peer)
        proto.feed(packets)

    def answered(self, sdp_host: str | None) -> None:
        """The SDP answer came: decide the connections that wait, in their order."""
        self.gate.answered(sdp_host)
        for proto in list(self.waiting):
            if self.connection is not None:
                break
            if proto.transport is not None:
                proto.transport.resume_reading()
            self._try(proto)

    def _expire(self, proto: _TcpMediaProtocol) -> None:
        if proto in self.waiting:
            self._refuse(proto, "no valid RTP in time")

    def _refuse(self, proto: _TcpMediaProtocol, why: str, unwait: bool = True) -> None:
        if unwait:
            self._unwait(proto)
        stats = self.ingest.stats
        stats.refused_connections += 1
        log_dropped(
            "rtp connection refused",
            stats.refused_connections,
            channel=self.ingest.demuxer.channel_id,
            source=f"{proto.peer[0]}:{proto.peer[1]}",
            reason=why,
        )
        if proto.transport is not None:
            proto.transport.abort()  # no lingering: the descriptor is free at once

    def _unwait(self, proto: _TcpMediaProtocol) -> None:
        if proto in self.waiting:
            self.waiting.remove(proto)
        if proto.expiry is not None:
            proto.expiry.cancel()
            proto.expiry = None

    def _lost(self, proto: _TcpMediaProtocol) -> None:
        if self.connection is proto:
            self.connection = None
            self.ingest.connection_lost()
        else:
            self._unwait(proto)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for proto in [*self.waiting, *([self.connection] if self.connection else [])]:
            proto.close()
        self.waiting.clear()


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
