"""An attacker on the LAN with no credentials: bare UDP/TCP sockets speaking SIP by hand.

No simulator code: what it sends is built here, so the tests show what anyone who can
reach the platform's port can do, and what the platform answers.
"""

from __future__ import annotations

import asyncio
import itertools
import socket

from sip import manscdp
from sip.message import (
    SipRequest,
    SipResponse,
    StreamFramer,
    new_branch,
    new_call_id,
    new_tag,
    parse_datagram,
)

from .sip_support import DOMAIN, SERVER_ID

_cseq = itertools.count(1)


def register(
    device_id: str,
    port: int,
    *,
    transport: str = "UDP",
    call_id: str | None = None,
    cseq: int | None = None,
    authorization: str | None = None,
    expires: int = 3600,
) -> SipRequest:
    req = SipRequest(method="REGISTER", uri=f"sip:{SERVER_ID}@{DOMAIN}")
    req.add("Via", f"SIP/2.0/{transport} 127.0.0.1:{port};rport;branch={new_branch()}")
    req.add("From", f"<sip:{device_id}@{DOMAIN}>;tag={new_tag()}")
    req.add("To", f"<sip:{device_id}@{DOMAIN}>")
    req.add("Call-ID", call_id or new_call_id())
    req.add("CSeq", f"{cseq or next(_cseq)} REGISTER")
    req.add("Contact", f"<sip:{device_id}@127.0.0.1:{port}>")
    req.add("Max-Forwards", "70")
    req.add("Expires", str(expires))
    if authorization is not None:
        req.add("Authorization", authorization)
    return req


def message(device_id: str, port: int, body: bytes, *, transport: str = "UDP") -> SipRequest:
    """A MANSCDP MESSAGE claiming to come from ``device_id``."""
    req = SipRequest(method="MESSAGE", uri=f"sip:{SERVER_ID}@{DOMAIN}")
    req.add("Via", f"SIP/2.0/{transport} 127.0.0.1:{port};rport;branch={new_branch()}")
    req.add("From", f"<sip:{device_id}@{DOMAIN}>;tag={new_tag()}")
    req.add("To", f"<sip:{SERVER_ID}@{DOMAIN}>")
    req.add("Call-ID", new_call_id())
    req.add("CSeq", f"{next(_cseq)} MESSAGE")
    req.add("Max-Forwards", "70")
    req.add("Content-Type", manscdp.CONTENT_TYPE)
    req.body = body
    return req


def keepalive(device_id: str, port: int, *, transport: str = "UDP") -> SipRequest:
    body = manscdp.encode("Notify", "Keepalive", next(_cseq), device_id, manscdp.el("Status", "OK"))
    return message(device_id, port, body, transport=transport)


class _Udp(asyncio.DatagramProtocol):
    """Final responses go to whoever waits for their branch; everything else is kept."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[SipResponse]] = {}
        self.inbox: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            msg = parse_datagram(data)
        except ValueError:
            self.inbox.append(data)
            return
        if isinstance(msg, SipResponse):
            if msg.status < 200:
                return
            fut = self.waiting.pop(msg.via.branch or "", None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
                return
        self.inbox.append(data)


class UdpAttacker:
    """One UDP socket on 127.0.0.1; whatever reaches it unasked is kept (requests too)."""

    def __init__(self, server_port: int) -> None:
        self.server = ("127.0.0.1", server_port)
        self.transport: asyncio.DatagramTransport | None = None
        self.proto = _Udp()
        self.port = 0

    async def __aenter__(self) -> UdpAttacker:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self.proto, local_addr=("127.0.0.1", 0)
        )
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.transport is not None
        self.transport.close()

    def send(self, req: SipRequest | bytes) -> None:
        assert self.transport is not None
        data = req if isinstance(req, bytes) else req.serialise()
        self.transport.sendto(data, self.server)

    async def ask(self, req: SipRequest, timeout: float = 5.0) -> SipResponse:
        """Send and wait for the final response with this request's branch."""
        fut: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        branch = req.via.branch or ""
        self.proto.waiting[branch] = fut
        self.send(req)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.proto.waiting.pop(branch, None)

    def received(self) -> list[bytes]:
        """Everything that reached this socket unasked, since the last call."""
        out, self.proto.inbox = self.proto.inbox, []
        return out


class TcpAttacker:
    """One TCP connection to the platform."""

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.framer = StreamFramer()
        self.port = 0

    async def __aenter__(self) -> TcpAttacker:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.server_port)
        self.port = self.writer.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.writer is not None
        self.writer.close()

    async def ask(self, req: SipRequest, timeout: float = 5.0) -> SipResponse:
        assert self.reader is not None and self.writer is not None
        self.writer.write(req.serialise())
        branch = req.via.branch
        async with asyncio.timeout(timeout):
            while True:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionResetError("platform closed the connection")
                for msg in self.framer.feed(data):
                    if isinstance(msg, SipResponse) and msg.via.branch == branch:
                        if msg.status >= 200:
                            return msg


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the other side closes the connection within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(4096):
                pass
        return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True
