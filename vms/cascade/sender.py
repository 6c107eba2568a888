"""PS over RTP to a superior platform: our access units muxed as an NVR would, no re-encode.

One :class:`RtpSender` per forwarded stream: the superior's SSRC (its ``y=``), our own
sequence numbers, the RTP timestamp the 90 kHz PTS, the marker on a frame's last packet.
The link is the superior's choice in its offer: UDP datagrams to its ``c=``/``m=``, or RFC
4571 framing over TCP — we connect (it offered ``a=setup:passive``) or we listen on a
port of the media range and it connects (it offered ``a=setup:active``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from rtp.packetizer import packetize, rfc4571
from rtp.ps_mux import STREAM_TYPE_H264, STREAM_TYPE_H265, mux_frame
from vms.logging import get_logger
from vms.media.frames import AccessUnit, Codec

log = get_logger("vms.cascade.sender")

TCP_HIGH_WATER = 512 * 1024  # bytes queued to a slow superior before the sender waits
UDP_ERRORS_MAX = 50  # ICMP errors in a row (nobody listens): the superior is gone
CONNECT_TIMEOUT_S = 5.0


class LinkClosed(ConnectionError):
    """The superior's end went away (TCP closed, UDP refused)."""


@dataclass
class SendStats:
    packets: int = 0
    bytes: int = 0
    frames: int = 0
    keyframes: int = 0
    started_at: float = 0.0  # time.time() of the first packet
    last_at: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "frames": self.frames,
            "keyframes": self.keyframes,
            "started_at": self.started_at,
            "last_at": self.last_at,
        }


class Link:
    """Where packets go; ``write`` never blocks, ``drain`` waits when a TCP peer is slow."""

    kind = ""

    def write(self, packets: list[bytes]) -> None:
        raise NotImplementedError

    async def drain(self) -> None:
        return None

    @property
    def closed(self) -> bool:
        return False

    def close(self) -> None:
        raise NotImplementedError


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.errors = 0

    def error_received(self, exc: Exception) -> None:
        self.errors += 1


class UdpLink(Link):
    """A connected UDP socket: its local port goes into the answer (symmetric RTP)."""

    kind = "udp"

    def __init__(self, transport: asyncio.DatagramTransport, protocol: _UdpProtocol) -> None:
        self.transport = transport
        self.protocol = protocol

    @classmethod
    async def open(cls, local_host: str, host: str, port: int) -> UdpLink:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _UdpProtocol, local_addr=(local_host, 0), remote_addr=(host, port)
        )
        return cls(transport, protocol)

    @property
    def local_port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    def write(self, packets: list[bytes]) -> None:
        if self.closed:
            raise LinkClosed("the superior refuses our RTP (ICMP errors)")
        errors = self.protocol.errors
        send = self.transport.sendto
        for p in packets:
            send(p)
        if self.protocol.errors == errors:
            self.protocol.errors = 0  # a refusal is counted in a row only

    @property
    def closed(self) -> bool:
        return self.transport.is_closing() or self.protocol.errors >= UDP_ERRORS_MAX

    def close(self) -> None:
        self.transport.close()


class TcpLink(Link):
    """RFC 4571 framing on a connection we opened (active) or accepted (passive)."""

    def __init__(self, writer: asyncio.StreamWriter, kind: str) -> None:
        self.writer = writer
        self.kind = kind

    @classmethod
    async def connect(cls, host: str, port: int) -> TcpLink:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
        return cls(writer, "tcp-active")

    def write(self, packets: list[bytes]) -> None:
        if self.closed:
            raise LinkClosed("the superior closed the TCP connection")
        self.writer.write(b"".join(rfc4571(p) for p in packets))

    async def drain(self) -> None:
        transport = self.writer.transport
        if transport.get_write_buffer_size() > TCP_HIGH_WATER:
            await self.writer.drain()

    @property
    def closed(self) -> bool:
        return self.writer.transport.is_closing()

    def close(self) -> None:
        self.writer.close()


class TcpListener:
    """We listen (the superior offered ``a=setup:active``); the first connection is the link."""

    def __init__(self) -> None:
        self.server: asyncio.base_events.Server | None = None
        self.accepted: asyncio.Future[TcpLink] | None = None
        self.taken = False
        self.port = 0

    async def open(self, host: str, port: int) -> int:
        self.accepted = asyncio.get_running_loop().create_future()
        self.server = await asyncio.start_server(self._on_connect, host, port)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.accepted is None or self.accepted.done():
            writer.close()  # one stream, one connection
            return
        self.accepted.set_result(TcpLink(writer, "tcp-passive"))

    async def wait(self, timeout: float) -> TcpLink:
        """The superior's connection (TimeoutError if none came in time)."""
        assert self.accepted is not None
        try:
            link = await asyncio.wait_for(asyncio.shield(self.accepted), timeout)
            self.taken = True
            return link
        finally:
            self.close()  # no more connections once one came (or none did in time)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        fut = self.accepted
        if fut is None:
            return
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled() and not self.taken:
            fut.result().close()  # connected, never used: hang up


def stream_type(codec: Codec) -> int:
    return STREAM_TYPE_H265 if codec is Codec.h265 else STREAM_TYPE_H264


class RtpSender:
    """Access units → PS → RTP packets on a link."""

    def __init__(self, ssrc: int, payload_type: int, link: Link) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.link = link
        self.seq = 0
        self.stats = SendStats()

    def send(self, au: AccessUnit, pts: int) -> None:
        """One frame at ``pts`` (90 kHz, the stream's own timeline)."""
        ps = mux_frame(au.data, pts, au.keyframe, stream_type(au.codec))
        packets = packetize(((pts, ps),), self.ssrc, self.seq, self.payload_type)
        self.link.write(packets)
        self.seq = (self.seq + len(packets)) & 0xFFFF
        st = self.stats
        now = time.time()
        if not st.started_at:
            st.started_at = now
        st.last_at = now
        st.packets += len(packets)
        st.bytes += len(ps) + 12 * len(packets)
        st.frames += 1
        st.keyframes += au.keyframe

    async def drain(self) -> None:
        await self.link.drain()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.link.close()
