"""The platform side of GB/T 28181: registry, keepalive, MANSCDP queries and INVITE sessions.

Handlers run on the event loop; anything that awaits (the store, a query) runs in a
tracked task so a slow database never stalls the socket.  Requests to a device go to
the address of its latest REGISTER or Keepalive, on the same transport (and TCP
connection) it used.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from . import manscdp
from .auth import DigestAuthenticator
from .manscdp import CONTENT_TYPE, AlarmNotify, DeviceInfo, DeviceStatusInfo, Manscdp, ManscdpError
from .media_api import DeviceConnectListener
from .message import NameAddr, SipParseError, SipRequest, SipUri, new_call_id, new_tag
from .queries import QueryMixin
from .registrar import RegistrarMixin, Registration
from .sessions import InviteSessions
from .store import DeviceStore
from .transaction import Endpoint, ServerTransaction, TransactionTimeout
from .transport import Peer

log = structlog.get_logger("sip.server")


@dataclass
class ServerConfig:
    server_id: str = "34020000002000000001"
    domain: str = "3402000000"
    host: str = "127.0.0.1"
    port: int = 5060
    transports: tuple[str, ...] = ("udp", "tcp")
    password: str = "12345678"
    auto_create_devices: bool = True
    allowed_device_ids: tuple[str, ...] = ()
    keepalive_interval_s: float = 60.0
    keepalive_misses: int = 3
    nonce_ttl_s: float = 300.0
    query_timeout_s: float = 10.0
    catalog_timeout_s: float = 15.0
    invite_timeout_s: float = 10.0
    sdp_ip: str = ""  # empty → host
    timezone: str = "Asia/Shanghai"
    t1: float = 0.5
    send_date_header: bool = True
    catalog_on_register: bool = True  # DeviceInfo, Catalog, DeviceStatus on every (re)connection
    max_pending: int = 5000  # REGISTERs being handled at once; more get 503 + Retry-After


class SipError(Exception):
    """A request to a device failed (offline, refused, no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SipServer(RegistrarMixin, QueryMixin):
    """One platform SIP service; implements ``sip.media_api.PlayController``."""

    name = "sip"

    def __init__(self, config: ServerConfig, store: DeviceStore) -> None:
        self.config = config
        self.store = store
        self.tz = ZoneInfo(config.timezone)
        self.endpoint = Endpoint(self._on_request, self._on_ack, t1=config.t1)
        self.endpoint.local_tag = new_tag()
        self.auth = DigestAuthenticator(config.domain, config.nonce_ttl_s)
        self.registrations: dict[str, Registration] = {}
        self.sessions = InviteSessions(self)
        self.upstreams: list[Any] = []  # sip.cascade.Upstream
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cseq = itertools.count(1)
        self._monitor: asyncio.Task[None] | None = None
        self.stats = {"register": 0, "connections": 0, "keepalive": 0, "message": 0, "bad": 0}
        self.connect_listeners: list[DeviceConnectListener] = []
        self._connect_queries: dict[str, asyncio.Task[None]] = {}  # per device, latest only
        # last keepalive per device, written to the store by the monitor (no task per message)
        self._keepalives: dict[str, tuple[str, int, datetime]] = {}
        self._init_queries()

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        c = self.config
        await self.endpoint.listen(c.host, c.port, tuple(c.transports))
        self._monitor = asyncio.create_task(self._watch(), name="sip-keepalive-monitor")
        log.info("sip listening", host=c.host, port=self.port, transports=list(c.transports))

    async def close(self) -> None:
        """Stop listening; end sessions and cascades (``stop`` is PlayController's)."""
        for up in list(self.upstreams):
            await up.stop()
        await self.sessions.close_all()
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_pending()
        await self.endpoint.close()

    @property
    def port(self) -> int:
        return self.endpoint.port

    @property
    def host(self) -> str:
        return self.endpoint.host

    @property
    def sdp_ip(self) -> str:
        return self.config.sdp_ip or self.config.host

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "sip") -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sip task failed", task=task.get_name(), error=repr(task.exception()))

    # --- PlayController ----------------------------------------------------------

    async def play(self, request: Any, offer: Any) -> Any:
        return await self.sessions.play(request, offer)

    async def stop(self, session: Any) -> None:
        await self.sessions.stop(session)

    async def control_playback(self, session: Any, **kwargs: Any) -> None:
        await self.sessions.control_playback(session, **kwargs)

    def add_session_listener(self, listener: Any) -> None:
        self.sessions.listeners.append(listener)

    def add_connect_listener(self, listener: DeviceConnectListener) -> None:
        """Hear of every device (re)connection (see ``registrar.connection_reason``)."""
        self.connect_listeners.append(listener)

    # --- dispatch ----------------------------------------------------------------

    def _on_ack(self, req: SipRequest, peer: Peer) -> None:
        for up in self.upstreams:
            if up.handles(req):
                up.on_ack(req, peer)

    def _on_request(self, stx: ServerTransaction) -> None:
        req = stx.request
        for up in self.upstreams:
            if up.handles(req):
                up.on_request(stx)
                return
        method = req.method
        if method == "REGISTER":
            self.stats["register"] += 1
            if len(self._tasks) >= self.config.max_pending:  # a storm: shed load, devices retry
                stx.reply(503, Retry_After="5")
                return
            self.spawn(self._guarded(stx, self._register(stx)), "sip-register")
        elif method == "MESSAGE":
            self._message(stx)
        elif method in ("BYE", "INFO"):
            self.sessions.on_request(stx)
        elif method == "OPTIONS":
            stx.reply(200, Allow="REGISTER, MESSAGE, INVITE, ACK, BYE, CANCEL, INFO, OPTIONS")
        elif method == "CANCEL":
            stx.reply(481)
        elif method in ("NOTIFY", "SUBSCRIBE"):
            stx.reply(200)
        else:
            stx.reply(405, Allow="REGISTER, MESSAGE, BYE, INFO, OPTIONS")

    async def _guarded(self, stx: ServerTransaction, coro: Coroutine[Any, Any, None]) -> None:
        """Run a request handler; if it fails before answering, the peer still gets a 500."""
        try:
            await coro
        except Exception as exc:  # noqa: BLE001 - logged and answered
            log.error("request handler failed", method=stx.request.method, error=repr(exc))
            if stx.last_response is None or stx.last_response.status < 200:
                stx.reply(500)

    # --- MESSAGE -----------------------------------------------------------------

    def _message(self, stx: ServerTransaction) -> None:
        req = stx.request
        self.stats["message"] += 1
        try:
            doc = manscdp.decode(req.body)
        except ManscdpError as exc:
            self.stats["bad"] += 1
            stx.reply(400, "Bad MANSCDP")
            log.debug("bad manscdp", error=str(exc))
            return
        try:
            sender = req.from_.user
        except SipParseError:
            stx.reply(400)
            return
        reg = self.registrations.get(sender)
        if doc.cmd_type == "Keepalive":
            self.stats["keepalive"] += 1
            if reg is None or (time.monotonic() > reg.expires_at):
                stx.reply(404, "Not Registered")  # makes the device register again
                return
            stx.reply(200)
            self._seen(reg, stx.peer, doc)
            if not reg.online:  # back after a keepalive timeout, without a new REGISTER
                reg.online = True
                self.spawn(
                    self.store.set_online(sender, True, at=datetime.now(UTC), reason="keepalive")
                )
                self.spawn(self._tell_connected(sender, "keepalive"), "sip-connect-listeners")
            self._keepalives[sender] = (stx.peer.host, stx.peer.port, datetime.now(UTC))
            return
        if reg is None:
            stx.reply(403, "Not Registered")
            return
        stx.reply(200)
        self._seen(reg, stx.peer, doc)
        if doc.root == "Response":
            self.deliver_response(doc)
        elif doc.root == "Notify":
            self._notify(sender, doc, req)
        else:
            log.debug("unhandled manscdp", root=doc.root, cmd=doc.cmd_type)

    def _seen(self, reg: Registration, peer: Peer, doc: Manscdp) -> None:
        reg.last_seen = time.monotonic()
        reg.peer = peer
        if doc.charset:
            reg.charset = doc.charset

    def _notify(self, sender: str, doc: Manscdp, req: SipRequest) -> None:
        if doc.cmd_type == "Alarm":
            alarm = AlarmNotify.from_doc(doc)
            self.spawn(self.store.save_alarm(sender, alarm), "sip-alarm")
        elif doc.cmd_type == "MediaStatus" and doc.text("NotifyType") == "121":
            self.spawn(self.sessions.media_ended(req.call_id), "sip-media-status")
        elif doc.cmd_type == "Catalog":
            items = [
                manscdp.CatalogItem.from_element(e) for e in manscdp.list_items(doc, "DeviceList")
            ]
            self.spawn(self.store.save_catalog(sender, items, False), "sip-catalog-notify")

    # --- outgoing requests ---------------------------------------------------------

    def registration(self, device_id: str) -> Registration:
        reg = self.registrations.get(device_id)
        if reg is None or not reg.online:
            raise SipError(f"device {device_id} is offline", 404)
        return reg

    async def peer_for(self, reg: Registration) -> Peer:
        peer = reg.peer
        if peer.transport == "TCP" and (peer.conn is None or not peer.conn.is_open):
            try:
                uri = SipUri.parse(NameAddr.parse(reg.contact).uri)
                peer = await self.endpoint.transport.connect(uri.host, uri.port or 5060)
            except (OSError, TimeoutError, SipParseError) as exc:
                raise SipError(f"device {reg.device_id}: TCP connection lost ({exc})") from None
            reg.peer = peer
        return peer

    def new_request(self, method: str, target_id: str, reg: Registration, peer: Peer) -> SipRequest:
        c = self.config
        uri = f"sip:{target_id}@{peer.host}:{peer.port}"
        req = SipRequest(method=method, uri=uri)
        req.add("From", f"<sip:{c.server_id}@{c.domain}>;tag={new_tag()}")
        req.add("To", f"<{uri}>")
        req.add("Call-ID", new_call_id(self.host))
        req.add("CSeq", f"{next(self._cseq)} {method}")
        return req

    async def send_manscdp(self, device_id: str, body: bytes, timeout: float | None = None) -> None:
        """MESSAGE to a device; returns once it answered 200 (raises SipError otherwise)."""
        reg = self.registration(device_id)
        peer = await self.peer_for(reg)
        req = self.new_request("MESSAGE", device_id, reg, peer)
        req.set("Content-Type", CONTENT_TYPE)
        req.body = body
        try:
            resp = await self.endpoint.request(req, peer, timeout or self.config.query_timeout_s)
        except TransactionTimeout:
            raise SipError(f"device {device_id} did not answer", 408) from None
        if resp.status != 200:
            raise SipError(f"device {device_id} answered {resp.status} {resp.reason}", resp.status)

    async def save_info(self, device_id: str, info: DeviceInfo) -> None:
        await self.store.save_device_info(device_id, info)

    async def save_status(self, device_id: str, status: DeviceStatusInfo) -> None:
        await self.store.save_device_status(device_id, status)
