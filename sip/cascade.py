"""Cascade: our platform as a lower platform of a superior one (GB/T 28181 §6 notes).

We register upward with digest, keep alive, answer the superior's Catalog with our
channels (a few items per MESSAGE, each sent after the previous one's 200), answer
DeviceInfo/DeviceStatus, forward PTZ to the owning device, and accept its INVITE for a
known channel (404 otherwise).  The media half is a :class:`CascadeMedia` given by the
application; without one the INVITE is answered for signalling only.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import structlog

from . import manscdp
from . import sdp as sdplib
from .auth import authorization_header, parse_digest
from .manscdp import CONTENT_TYPE, el
from .message import SipParseError, SipRequest, SipResponse, new_call_id, new_tag, response_for
from .transaction import ServerTransaction, TransactionTimeout
from .transport import Peer

if TYPE_CHECKING:
    from .server import SipServer

log = structlog.get_logger("sip.cascade")

DISCARD_PORT = 9  # answered when no media sender is wired (RFC 863 discard)


@dataclass
class UpstreamConfig:
    server_id: str
    domain: str
    host: str
    port: int
    password: str
    transport: str = "udp"
    local_id: str = ""  # our id towards the superior; empty → our server id
    expires_s: int = 3600
    keepalive_interval_s: float = 60.0
    keepalive_misses: int = 3
    retry_s: float = 60.0
    catalog_group: int = 4


class CascadeMedia(Protocol):
    """Sends one of our channels to the superior (PS over RTP); wired by the application."""

    async def start_send(
        self, call_id: str, channel_id: str, offer: sdplib.Sdp
    ) -> tuple[str, int]: ...

    def begin(self, call_id: str) -> None: ...

    async def stop_send(self, call_id: str) -> None: ...


class Upstream:
    def __init__(
        self, server: SipServer, config: UpstreamConfig, media: CascadeMedia | None = None
    ) -> None:
        self.server = server
        self.config = config
        self.media = media
        self.registered = asyncio.Event()
        self.local_id = config.local_id or server.config.server_id
        self.dialogs: dict[str, str] = {}  # call-id → channel id
        self._call_id = new_call_id(server.host)
        self._tag = new_tag()
        self._cseq = itertools.count(1)
        self._sn = itertools.count(1)
        self._peer: Peer | None = None
        self._task: asyncio.Task[None] | None = None
        self.keepalive_failures = 0

    async def start(self) -> None:
        self.server.upstreams.append(self)
        self._task = asyncio.create_task(self._run(), name=f"cascade-{self.config.server_id}")

    async def stop(self) -> None:
        if self in self.server.upstreams:
            self.server.upstreams.remove(self)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.registered.is_set():
            try:
                await asyncio.wait_for(self.register(0), 2)
            except (TimeoutError, TransactionTimeout, OSError):
                pass
        for call_id in list(self.dialogs):
            await self._end(call_id)

    async def peer(self) -> Peer:
        c = self.config
        p = self._peer
        if p is None or (p.transport == "TCP" and (p.conn is None or not p.conn.is_open)):
            if c.transport == "tcp":
                p = await self.server.endpoint.transport.connect(c.host, c.port)
            else:
                p = Peer("UDP", c.host, c.port)
            self._peer = p
        return p

    def _request(self, method: str, uri: str) -> SipRequest:
        srv = self.server
        req = SipRequest(method=method, uri=uri)
        tag = self._tag if method == "REGISTER" else new_tag()
        req.add("From", f"<sip:{self.local_id}@{srv.config.domain}>;tag={tag}")
        to = self.local_id if method == "REGISTER" else self.config.server_id
        req.add(
            "To", f"<sip:{to}@{srv.config.domain if method == 'REGISTER' else self.config.domain}>"
        )
        req.add("Call-ID", self._call_id if method == "REGISTER" else new_call_id(srv.host))
        req.add("CSeq", f"{next(self._cseq)} {method}")
        return req

    async def register(self, expires: int | None = None) -> int:
        c, srv = self.config, self.server
        exp = c.expires_s if expires is None else expires
        peer = await self.peer()
        uri = f"sip:{c.server_id}@{c.host}:{c.port}"

        def build() -> SipRequest:
            req = self._request("REGISTER", uri)
            req.add("Contact", f"<sip:{self.local_id}@{srv.sdp_ip}:{srv.port}>")
            req.add("Expires", str(exp))
            return req

        resp = await srv.endpoint.request(build(), peer)
        if resp.status == 401:
            challenge = parse_digest(resp.get("WWW-Authenticate") or "")
            req = build()
            req.add(
                "Authorization",
                authorization_header(self.local_id, c.password, "REGISTER", uri, challenge),
            )
            resp = await srv.endpoint.request(req, peer)
        if resp.status == 200 and exp > 0:
            self.registered.set()
        else:
            self.registered.clear()
        return resp.status

    async def _run(self) -> None:
        c = self.config
        loop = asyncio.get_running_loop()
        while True:
            try:
                status = await self.register()
            except (TransactionTimeout, OSError, TimeoutError) as exc:
                log.info("upward register failed", superior=c.server_id, error=repr(exc))
                status = None
            if status != 200:
                log.info("upward register refused", superior=c.server_id, status=status)
                await asyncio.sleep(c.retry_s)
                continue
            log.info("registered upward", superior=c.server_id)
            refresh_at = loop.time() + c.expires_s * 0.8
            misses = 0
            while loop.time() < refresh_at and misses < c.keepalive_misses:
                await asyncio.sleep(c.keepalive_interval_s)
                ok = await self.keepalive()
                misses = 0 if ok else misses + 1
            self.registered.clear()

    async def keepalive(self) -> bool:
        body = manscdp.encode(
            "Notify", "Keepalive", next(self._sn), self.local_id, el("Status", "OK")
        )
        try:
            resp = await self.message(body)
        except (TransactionTimeout, OSError):
            self.keepalive_failures += 1
            return False
        return resp.status == 200

    async def message(self, body: bytes) -> SipResponse:
        c = self.config
        req = self._request("MESSAGE", f"sip:{c.server_id}@{c.domain}")
        req.add("Content-Type", CONTENT_TYPE)
        req.body = body
        return await self.server.endpoint.request(req, await self.peer(), timeout=10)

    # --- requests from the superior ------------------------------------------------

    def handles(self, req: SipRequest) -> bool:
        try:
            return req.from_.user == self.config.server_id
        except (SipParseError, ValueError):
            return False

    def on_ack(self, req: SipRequest, peer: Peer) -> None:
        if req.call_id in self.dialogs and self.media is not None:
            self.media.begin(req.call_id)

    def on_request(self, stx: ServerTransaction) -> None:
        req = stx.request
        if req.method == "MESSAGE":
            try:
                doc = manscdp.decode(req.body)
            except manscdp.ManscdpError:
                stx.reply(400)
                return
            stx.reply(200)
            self.server.spawn(self._answer(doc), "cascade-answer")
        elif req.method == "INVITE":
            self.server.spawn(self._invite(stx), "cascade-invite")
        elif req.method == "BYE":
            known = req.call_id in self.dialogs
            stx.reply(200 if known else 481)
            if known:
                self.server.spawn(self._end(req.call_id), "cascade-bye")
        elif req.method in ("INFO", "CANCEL"):
            stx.reply(200)
        else:
            stx.reply(405)

    async def _answer(self, doc: manscdp.Manscdp) -> None:
        try:
            if doc.root == "Query" and doc.cmd_type == "Catalog":
                await self._catalog(doc.sn)
            elif doc.root == "Query" and doc.cmd_type == "DeviceInfo":
                n = len(await self.server.store.list_channels())
                inner = (
                    el("DeviceName", "VMS platform")
                    + el("Manufacturer", "vms-gb28181")
                    + el("Model", "platform")
                    + el("Firmware", "0.1")
                    + el("Channel", n)
                    + el("Result", "OK")
                )
                await self.message(
                    manscdp.encode("Response", "DeviceInfo", doc.sn, self.local_id, inner)
                )
            elif doc.root == "Query" and doc.cmd_type == "DeviceStatus":
                inner = el("Result", "OK") + el("Online", "ONLINE") + el("Status", "OK")
                await self.message(
                    manscdp.encode("Response", "DeviceStatus", doc.sn, self.local_id, inner)
                )
            elif doc.root == "Control" and doc.text("PTZCmd"):
                owner = {c.device_id: c.parent_id for c in await self.server.store.list_channels()}
                if doc.device_id in owner:
                    await self.server.ptz(owner[doc.device_id], doc.device_id, doc.text("PTZCmd"))
        except Exception as exc:  # noqa: BLE001 - logged; the superior retries
            log.info("answer to superior failed", cmd=doc.cmd_type, error=repr(exc))

    async def _catalog(self, sn: int) -> None:
        items = [
            replace(i, parent_id=self.local_id) for i in await self.server.store.list_channels()
        ]
        group = max(1, self.config.catalog_group)
        chunks = [items[i : i + group] for i in range(0, len(items), group)] or [[]]
        for chunk in chunks:
            inner = (
                el("SumNum", len(items))
                + f'<DeviceList Num="{len(chunk)}">\r\n'
                + "".join(i.to_xml() for i in chunk)
                + "</DeviceList>\r\n"
            )
            await self.message(manscdp.encode("Response", "Catalog", sn, self.local_id, inner))

    async def _invite(self, stx: ServerTransaction) -> None:
        req = stx.request
        subject = req.get("Subject") or ""
        channel = subject.split(":", 1)[0].strip() if subject else ""
        if not channel:
            try:
                channel = req.to.user
            except SipParseError:
                channel = ""
        try:
            offer = sdplib.parse(req.body)
        except sdplib.SdpError:
            stx.reply(400, "Bad SDP")
            return
        if offer.uri and offer.session_name != "Play":
            channel = offer.uri.split(":", 1)[0] or channel
        known = {c.device_id for c in await self.server.store.list_channels()}
        if channel not in known:
            stx.reply(404)
            return
        if not offer.ssrc:
            stx.reply(400, "Missing SSRC")
            return
        stx.reply(100)
        srv = self.server
        ip, port = srv.sdp_ip, DISCARD_PORT
        if self.media is not None:
            try:
                ip, port = await self.media.start_send(req.call_id, channel, offer)
            except Exception as exc:  # noqa: BLE001 - any media failure is a 500 to the superior
                log.warning("cascade media failed", channel=channel, error=repr(exc))
                stx.reply(500)
                return
        answer = sdplib.Sdp(
            session_name=offer.session_name,
            origin_user=channel,
            ip=ip,
            port=port,
            proto=offer.proto,
            payloads=["96"],
            rtpmap={"96": "PS/90000"},
            direction="sendonly",
            ssrc=offer.ssrc,
            fmt="",
        )
        if offer.tcp:
            answer.setup = "active" if (offer.setup or "passive") == "passive" else "passive"
            answer.connection = "new"
        resp = response_for(req, 200, to_tag=srv.endpoint.local_tag)
        resp.set("Contact", f"<sip:{self.local_id}@{srv.sdp_ip}:{srv.port}>")
        resp.set("Content-Type", "application/sdp")
        resp.body = answer.serialise()
        self.dialogs[req.call_id] = channel
        stx.respond(resp)
        log.info("superior invite accepted", channel=channel, media=self.media is not None)

    async def _end(self, call_id: str) -> None:
        self.dialogs.pop(call_id, None)
        if self.media is not None:
            await self.media.stop_send(call_id)
