"""SIP over UDP and TCP (RFC 3261 §18): sockets only, no SIP logic.

Protocol classes rather than streams: no task per connection, so an idle TCP
device costs a buffer, not a coroutine.  A TCP reply goes back on the
connection the request came in on (NATed devices cannot be reached otherwise).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from .message import (
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    parse_datagram,
)

log = structlog.get_logger("sip.transport")

MAX_TCP_CONNECTIONS = 20000
UDP_RCVBUF = 4 * 1024 * 1024


class TcpConnection(asyncio.Protocol):
    """One TCP peer: frames by Content-Length, closes on garbage it cannot resync."""

    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] - uvloop's is no asyncio.Transport
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer("TCP", host, port, self)
        if len(self.owner.connections) >= MAX_TCP_CONNECTIONS:
            transport.close()
            return
        self.owner.connections.add(self)

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            self.owner.on_error(data, self.peer, exc)
            if self.transport is not None:
                self.transport.close()
            return
        for msg in messages:
            self.owner.on_message(msg, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def write(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


@dataclass(frozen=True, eq=False)
class Peer:
    """Where a message came from, and so where its answer goes."""

    transport: str  # "UDP" or "TCP"
    host: str
    port: int
    conn: TcpConnection | None = None

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        peer = Peer("UDP", addr[0], addr[1])
        if not data.strip():  # keepalive CRLF pings
            return
        try:
            msg = parse_datagram(data)
        except SipParseError as exc:
            self.owner.on_error(data, peer, exc)
            return
        self.owner.on_message(msg, peer)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error", error=repr(exc))


MessageHandler = Callable[[SipRequest | SipResponse, Peer], None]
ErrorHandler = Callable[[bytes, Peer, SipParseError], None]


class SipTransport:
    """UDP and TCP listeners on one port, plus outgoing TCP connections."""

    def __init__(self, on_message: MessageHandler, on_error: ErrorHandler) -> None:
        self.on_message = on_message
        self.on_error = on_error
        self.connections: set[TcpConnection] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self.host = "127.0.0.1"
        self.port = 0

    async def listen(
        self, host: str, port: int, transports: tuple[str, ...] = ("udp", "tcp")
    ) -> None:
        """Bind; with port 0 UDP picks a free port and TCP takes the same number."""
        loop = asyncio.get_running_loop()
        wanted = port
        for _attempt in range(20):
            port = wanted
            try:
                if "udp" in transports:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
                    sock.bind((host, port))
                    self._udp, _ = await loop.create_datagram_endpoint(
                        lambda: _Udp(self), sock=sock
                    )
                    port = self._udp.get_extra_info("sockname")[1]
                if "tcp" in transports:
                    self._tcp = await loop.create_server(
                        lambda: TcpConnection(self), host, port, reuse_address=True, backlog=1024
                    )
                    port = self._tcp.sockets[0].getsockname()[1]
                break
            except OSError:
                if self._udp is not None:
                    self._udp.close()
                    self._udp = None
                if wanted != 0 or _attempt == 19:
                    raise
        self.host, self.port = host, port

    def send(self, msg: SipMessage, peer: Peer) -> None:
        """Best-effort send; a lost UDP datagram is the transaction layer's business."""
        data = msg.serialise() if isinstance(msg, (SipRequest, SipResponse)) else b""
        self.send_bytes(data, peer)

    def send_bytes(self, data: bytes, peer: Peer) -> None:
        if peer.transport == "TCP":
            if peer.conn is not None and peer.conn.write(data):
                return
            log.debug("tcp peer gone", peer=peer.addr)
            return
        if self._udp is not None:
            self._udp.sendto(data, peer.addr)

    async def connect(self, host: str, port: int, timeout: float = 5.0) -> Peer:
        """An outgoing TCP connection whose incoming messages reach ``on_message``."""
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: TcpConnection(self), host, port), timeout
        )
        assert proto.peer is not None
        return proto.peer

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None
        if self.connections:
            await asyncio.wait([c.closed for c in list(self.connections)], timeout=2)
