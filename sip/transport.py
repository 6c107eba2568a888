"""SIP over UDP, TCP and TLS (RFC 3261 §18, §26.2): sockets only, no SIP logic.

Protocol classes rather than streams: no task per connection, so an idle TCP
device costs a buffer, not a coroutine.  A TCP reply goes back on the
connection the request came in on (NATed devices cannot be reached otherwise).

Incoming TCP connections are bounded (:class:`TcpLimits`): at most
``max_connections`` (never more than a quarter of the process's file descriptors),
the stalest connection that carries no registration making room for a new one; one
with no complete message for ``idle_s`` is closed (``bound_idle_s`` once a
registration runs on it).  A trickle of bytes that never completes a message does not
count as activity.

TLS (optional, on its own port, 5061 by convention) is TCP with a handshake in front: the
same framing, bounds and reply-on-the-same-connection rule; a handshake must finish within
``TLS_HANDSHAKE_S`` (a half-open TLS connection is no cheaper to hold than a TCP one).
"""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl
import time
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
FD_SHARE = 4  # SIP/TCP may hold at most 1/FD_SHARE of the descriptors (RTP, HTTP, DB need theirs)
TLS_HANDSHAKE_S = 10.0


@dataclass(frozen=True)
class TcpLimits:
    """Bounds for incoming TCP connections; 0 → no idle timeout (the device side)."""

    max_connections: int = MAX_TCP_CONNECTIONS
    idle_s: float = 0.0  # without a registration
    bound_idle_s: float = 0.0  # carrying a registration


def fd_cap(wanted: int) -> int:
    """``wanted``, but well under the soft limit on open files."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return wanted
    return max(1, min(wanted, soft // FD_SHARE))


class TcpConnection(asyncio.Protocol):
    """One TCP peer: frames by Content-Length, closes on garbage it cannot resync."""

    def __init__(self, owner: SipTransport, incoming: bool = True, name: str = "TCP") -> None:
        self.owner = owner
        self.name = name  # "TCP", or "TLS" over the same framing
        self.incoming = incoming  # accepted by our listener (outgoing ones are never idled)
        self.bound = False  # a registration runs on it (set by the registrar)
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.last_message = time.monotonic()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] - uvloop's is no asyncio.Transport
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer(self.name, host, port, self)
        if self.incoming and not self.owner.admit(self):
            transport.close()
            return
        self.owner.connections.add(self)
        if self.incoming:
            self.owner.incoming.add(self)

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            self.owner.on_error(data, self.peer, exc)
            self.close()
            return
        if messages:
            self.last_message = time.monotonic()
        for msg in messages:
            self.owner.on_message(msg, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.forget(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def write(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.owner.forget(self)

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


@dataclass(frozen=True, eq=False)
class Peer:
    """Where a message came from, and so where its answer goes."""

    transport: str  # "UDP", "TCP" or "TLS"
    host: str
    port: int
    conn: TcpConnection | None = None

    @property
    def stream(self) -> bool:
        """TCP or TLS: answers go down the connection, and it can be lost."""
        return self.transport != "UDP"

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
    """UDP and TCP listeners on one port, TLS on another, plus outgoing connections."""

    def __init__(
        self, on_message: MessageHandler, on_error: ErrorHandler, limits: TcpLimits | None = None
    ) -> None:
        self.on_message = on_message
        self.on_error = on_error
        self.limits = limits or TcpLimits()
        self.max_connections = fd_cap(self.limits.max_connections)
        self.connections: set[TcpConnection] = set()
        self.incoming: set[TcpConnection] = set()  # accepted ones, the bounded kind
        self.counts = {"tcp_refused": 0, "tcp_evicted": 0, "tcp_idle_closed": 0}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tls: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.tls_port = 0  # 0: no TLS listener
        # outgoing TLS (a device's connection lost, a TLS client): verifies the peer
        self.client_tls: ssl.SSLContext | None = None

    # --- bounds on incoming TCP ------------------------------------------------------

    def admit(self, conn: TcpConnection) -> bool:
        """Room for a new incoming connection: the stalest unbound one goes when full."""
        if len(self.incoming) < self.max_connections:
            return True
        idle = [c for c in self.incoming if not c.bound]
        if not idle:
            self.counts["tcp_refused"] += 1
            return False
        min(idle, key=lambda c: c.last_message).close()
        self.counts["tcp_evicted"] += 1
        return True

    def forget(self, conn: TcpConnection) -> None:
        self.connections.discard(conn)
        self.incoming.discard(conn)

    def _idle_limit(self, conn: TcpConnection) -> float:
        return self.limits.bound_idle_s if conn.bound else self.limits.idle_s

    def sweep(self, now: float | None = None) -> int:
        """Close incoming connections silent past their limit; how many were closed."""
        now = time.monotonic() if now is None else now
        closed = 0
        for conn in list(self.incoming):
            limit = self._idle_limit(conn)
            if limit > 0 and now - conn.last_message > limit:
                conn.close()
                closed += 1
        self.counts["tcp_idle_closed"] += closed
        return closed

    async def _sweep_forever(self) -> None:
        limits = [x for x in (self.limits.idle_s, self.limits.bound_idle_s) if x > 0]
        period = max(0.05, min(1.0, min(limits) / 4))
        while True:
            await asyncio.sleep(period)
            if self.sweep():
                log.info("idle tcp connections closed", open=len(self.connections))

    async def listen(
        self,
        host: str,
        port: int,
        transports: tuple[str, ...] = ("udp", "tcp"),
        tls: ssl.SSLContext | None = None,
        tls_port: int = 0,
    ) -> None:
        """Bind; with port 0 UDP picks a free port and TCP takes the same number.  With
        "tls" among ``transports`` (and a server context) TLS listens on ``tls_port``
        (0: any free one)."""
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
        if "tls" in transports:
            if tls is None:
                raise ValueError("SIP over TLS needs a certificate and key")
            self._tls = await loop.create_server(
                lambda: TcpConnection(self, name="TLS"),
                host,
                tls_port,
                ssl=tls,
                ssl_handshake_timeout=TLS_HANDSHAKE_S,
                reuse_address=True,
                backlog=1024,
            )
            self.tls_port = self._tls.sockets[0].getsockname()[1]
        if (self._tcp is not None or self._tls is not None) and (
            self.limits.idle_s > 0 or self.limits.bound_idle_s > 0
        ):
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="sip-tcp-idle")

    def send(self, msg: SipMessage, peer: Peer) -> None:
        """Best-effort send; a lost UDP datagram is the transaction layer's business."""
        data = msg.serialise() if isinstance(msg, (SipRequest, SipResponse)) else b""
        self.send_bytes(data, peer)

    def send_bytes(self, data: bytes, peer: Peer) -> None:
        if peer.stream:
            if peer.conn is not None and peer.conn.write(data):
                return
            log.debug("tcp peer gone", peer=peer.addr)
            return
        if self._udp is not None:
            self._udp.sendto(data, peer.addr)

    async def connect(self, host: str, port: int, timeout: float = 5.0, tls: bool = False) -> Peer:
        """An outgoing TCP (or, with ``tls``, TLS verified by ``client_tls``) connection
        whose incoming messages reach ``on_message``."""
        loop = asyncio.get_running_loop()
        secure: dict[str, object] = {}
        if tls:
            secure = {
                "ssl": self.client_tls or ssl.create_default_context(),
                "server_hostname": host,
                "ssl_handshake_timeout": TLS_HANDSHAKE_S,
            }
        name = "TLS" if tls else "TCP"
        _, proto = await asyncio.wait_for(
            loop.create_connection(
                lambda: TcpConnection(self, incoming=False, name=name), host, port, **secure
            ),
            timeout,
        )
        assert proto.peer is not None
        return proto.peer

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        for server in (self._tcp, self._tls):
            if server is not None:
                server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for server in (self._tcp, self._tls):
            if server is not None:
                await server.wait_closed()
        self._tcp = self._tls = None
        if self.connections:
            await asyncio.wait([c.closed for c in list(self.connections)], timeout=2)
