"""Requests from the platform to a registered device, outside any dialog.

They go to the address of the device's latest REGISTER or MESSAGE, on the same transport
(and TCP connection) it used; a TCP device whose connection dropped is reached again at
its Contact.  Queries and INVITE sessions both send through here.
"""

from __future__ import annotations

import itertools

from .manscdp import CONTENT_TYPE
from .message import NameAddr, SipParseError, SipRequest, SipUri, new_call_id, new_tag
from .registry import Registration, Registry
from .settings import ServerSettings
from .transaction import Endpoint, TransactionTimeout
from .transport import Peer


class SipError(Exception):
    """A request to a device failed (offline, refused, no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Outgoing:
    def __init__(self, endpoint: Endpoint, settings: ServerSettings, registry: Registry) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.registry = registry
        self._cseq = itertools.count(1)

    def charset_of(self, device_id: str) -> str:
        return self.registry.charset_of(device_id)

    async def route(self, device_id: str) -> tuple[Registration, Peer]:
        """The device's registration and the peer to send to (raises SipError 404 offline)."""
        reg = self.registry.online(device_id)
        if reg is None:
            raise SipError(f"device {device_id} is offline", 404)
        peer = reg.peer
        if peer.stream and (peer.conn is None or not peer.conn.is_open):
            try:
                uri = SipUri.parse(NameAddr.parse(reg.contact).uri)
                tls = peer.transport == "TLS"
                peer = await self.endpoint.transport.connect(
                    uri.host, uri.port or (5061 if tls else 5060), tls=tls
                )
            except (OSError, TimeoutError, SipParseError) as exc:
                raise SipError(
                    f"device {device_id}: {peer.transport} connection lost ({exc})"
                ) from None
            self.registry.moved(device_id, peer)
        return reg, peer

    def new_request(self, method: str, target_id: str, peer: Peer) -> SipRequest:
        """A request from this platform to ``target_id`` (the device or one of its channels)."""
        c = self.settings
        uri = f"sip:{target_id}@{peer.host}:{peer.port}"
        req = SipRequest(method=method, uri=uri)
        req.add("From", f"<sip:{c.server_id}@{c.domain}>;tag={new_tag()}")
        req.add("To", f"<{uri}>")
        req.add("Call-ID", new_call_id(self.endpoint.host))
        req.add("CSeq", f"{next(self._cseq)} {method}")
        return req

    async def send_manscdp(self, device_id: str, body: bytes, timeout: float | None = None) -> None:
        """MESSAGE to a device; returns once it answered 200 (raises SipError otherwise)."""
        _, peer = await self.route(device_id)
        req = self.new_request("MESSAGE", device_id, peer)
        req.set("Content-Type", CONTENT_TYPE)
        req.body = body
        try:
            resp = await self.endpoint.request(req, peer, timeout or self.settings.query_timeout_s)
        except TransactionTimeout:
            raise SipError(f"device {device_id} did not answer", 408) from None
        if resp.status != 200:
            raise SipError(f"device {device_id} answered {resp.status} {resp.reason}", resp.status)
