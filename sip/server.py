"""The platform side of GB/T 28181: one SIP endpoint and a dispatcher over composed parts.

:class:`Registrar` (REGISTER, keepalive, online/offline), :class:`Queries` (MANSCDP
queries and controls), :class:`InviteSessions` (INVITE dialogs) and the cascades towards
superiors (:class:`Upstream`) each get only what they need; this class builds them,
routes each request by method and body, and offers their operations as one
``PlayController`` for the media layer and one device API for the application.
Handlers run on the event loop; whatever awaits runs in a tracked task.

Trust at the edge: a request is taken from a device only when it comes from that
device's live registration (``Registrar.accepts``), from a superior only from that
superior's address, and ids from the wire are checked as GB ids before any use.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from . import manscdp
from .cascade import Upstream
from .cascade_source import CascadeMedia, CascadeSource, StoreSource
from .device_notifications import DeviceNotifications
from .extended_queries import ExtendedQueries
from .ids import is_gb_id
from .manscdp import Manscdp, ManscdpError
from .media_api import (
    DeviceConnectListener,
    MediaOffer,
    PlayRequest,
    PlaySession,
    SessionEndListener,
)
from .message import SipParseError, SipRequest, new_tag
from .outgoing import Outgoing, SipError
from .queries import Queries
from .register_auth import sampled
from .registrar import Registrar
from .registry import Registry
from .sessions import InviteSessions
from .settings import ServerSettings, UpstreamSettings
from .store import DeviceStore
from .subscriptions import DeviceSubscriptions
from .tasks import TaskSet
from .transaction import Endpoint, ServerTransaction
from .transport import Peer, TcpLimits
from .upward import UpwardRelay

__all__ = ["SipError", "SipServer"]  # SipError: what the device API raises

log = structlog.get_logger("sip.server")

ALLOW = "REGISTER, MESSAGE, INVITE, ACK, BYE, CANCEL, INFO, OPTIONS, NOTIFY"


class SipServer:
    """One platform SIP service; implements ``sip.media_api.PlayController``."""

    name = "sip"

    def __init__(
        self,
        settings: ServerSettings,
        store: DeviceStore,
        *,
        sdp_ip: str = "",
        timezone: str = "Asia/Shanghai",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = settings
        self.store = store
        self.tz = ZoneInfo(timezone)
        self._sdp_ip = sdp_ip
        self.endpoint = Endpoint(
            self._on_request,
            self._on_ack,
            t1=settings.t1,
            tcp_limits=tcp_limits(settings),
            max_transactions=settings.max_transactions,
        )
        self.endpoint.local_tag = new_tag()
        self.tasks = TaskSet()
        self.registry = Registry()
        self.outgoing = Outgoing(self.endpoint, settings, self.registry)
        self.queries = Queries(self.outgoing, store, settings, self.tz)
        self.sessions = InviteSessions(
            self.endpoint, self.outgoing, settings, contact=self.contact, spawn=self.tasks.spawn
        )
        self.registrar = Registrar(
            settings,
            store,
            self.registry,
            sessions=self.sessions,
            queries=self.queries,
            spawn=self.tasks.spawn,
            tz=self.tz,
            clock=clock,
        )
        # the device API the application calls (api/routers/sip.py, recording) is Queries'
        self.catalog = self.queries.catalog
        self.device_info = self.queries.device_info
        self.device_status = self.queries.device_status
        self.record_info = self.queries.record_info
        self.device_control = self.queries.device_control
        self.ptz = self.queries.ptz
        self.record_control = self.queries.record_control
        self.guard_control = self.queries.guard_control
        self.reset_alarm = self.queries.reset_alarm
        self.reboot = self.queries.reboot
        self.extended = ExtendedQueries(self.queries)  # config, presets, PTZ state, SD cards
        self.upstreams: list[Upstream] = []
        self.cascade_media: CascadeMedia | None = None  # set by the application before start
        # what superiors see (catalog tree, selection, records); the bare store without one
        self.cascade_source: CascadeSource | None = None
        self._counts = {"register": 0, "keepalive": 0, "message": 0, "bad": 0, "bad_id": 0}
        # subscriptions to devices, what they notify, and what goes on to the superiors
        self.subscriptions = DeviceSubscriptions(
            self.endpoint,
            self.outgoing,
            self.registry,
            settings,
            contact=self.contact,
            spawn=self.tasks.spawn,
            clock=clock,
        )
        self.relay = UpwardRelay(self.tasks.spawn)
        self.notifications = DeviceNotifications(
            store,
            self.outgoing,
            self.relay,
            self.subscriptions,
            touch=self.registrar.touch,
            spawn=self.tasks.spawn,
        )
        self.registrar.add_connect_listener(self._subscribe_connected)

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        c = self.config
        tls = server_tls(c) if "tls" in c.transports else None
        await self.endpoint.listen(c.host, c.port, tuple(c.transports), tls, c.tls_port)
        self.registrar.start()
        log.info(
            "sip listening",
            host=c.host,
            port=self.port,
            tls_port=self.endpoint.transport.tls_port or None,
            transports=list(c.transports),
            max_tcp_connections=self.endpoint.transport.max_connections,
            global_password=bool(c.password),
        )
        for up in c.upstreams:
            await self.add_upstream(up, self.cascade_media).start()

    async def close(self) -> None:
        """Stop listening; end sessions and cascades (``stop`` is PlayController's)."""
        for up in list(self.upstreams):
            await up.stop()
        self.upstreams.clear()
        await self.relay.close()
        await self.subscriptions.close()
        await self.sessions.close_all()
        await self.registrar.close()
        await self.tasks.cancel_all()
        self.queries.close()
        await self.endpoint.close()

    @property
    def port(self) -> int:
        return self.endpoint.port

    @property
    def host(self) -> str:
        return self.endpoint.host

    @property
    def sdp_ip(self) -> str:
        """Our address as devices reach it (SDP ``c=``, Contact)."""
        return self._sdp_ip or self.config.host

    def contact(self) -> str:
        return f"sip:{self.config.server_id}@{self.sdp_ip}:{self.port}"

    @property
    def registrations(self) -> Registry:
        return self.registry

    @property
    def stats(self) -> dict[str, int]:
        """Counters: requests, refusals (``refused_source``, ``auth_*``, ``bad_id``, TCP)."""
        transport = self.endpoint.transport
        return {
            **self._counts,
            "connections": self.registrar.connections,
            **self.registrar.counts,
            **self.registrar.auth.counts,
            **transport.counts,
            "tcp_open": len(transport.incoming),
            "unstored": self.endpoint.unstored,
        }

    def add_upstream(
        self,
        settings: UpstreamSettings,
        media: CascadeMedia | None = None,
        source: CascadeSource | None = None,
    ) -> Upstream:
        """A cascade towards a superior on this server's socket; requests from it go there."""
        up = Upstream(
            settings,
            self.endpoint,
            local_id=settings.local_id or self.config.server_id,
            contact_host=self.sdp_ip,
            source=source or self.cascade_source or StoreSource(self.store, self.queries, self.tz),
            controls=self.queries,
            media=media,
            tz=self.tz,
        )
        self.upstreams.append(up)
        self.relay.attach(up)  # its SUBSCRIBEs, and what we notify it
        return up

    # --- PlayController ----------------------------------------------------------

    async def play(self, request: PlayRequest, offer: MediaOffer) -> PlaySession:
        return await self.sessions.play(request, offer)

    async def stop(self, session: PlaySession) -> None:
        await self.sessions.stop(session)

    async def control_playback(self, session: PlaySession, **kwargs: Any) -> None:
        await self.sessions.control_playback(session, **kwargs)

    def add_session_listener(self, listener: SessionEndListener) -> None:
        self.sessions.add_listener(listener)

    def add_connect_listener(self, listener: DeviceConnectListener) -> None:
        """Hear of every device (re)connection (see ``registrar.connection_reason``)."""
        self.registrar.add_connect_listener(listener)

    # --- dispatch ----------------------------------------------------------------

    def _upstream_for(self, req: SipRequest) -> Upstream | None:
        for up in self.upstreams:
            if up.handles(req):
                return up
        return None

    def _on_ack(self, req: SipRequest, peer: Peer) -> None:
        up = self._upstream_for(req)
        if up is not None and up.sent_by(peer):
            up.agent.on_ack(req, peer)

    def _on_request(self, stx: ServerTransaction) -> None:
        req = stx.request
        up = self._upstream_for(req)
        if up is not None:
            if up.sent_by(stx.peer):
                up.agent.on_request(stx)
            else:  # the superior's id from elsewhere: someone else speaking for it
                self.registrar.counts["refused_source"] += 1
                if sampled(self.registrar.counts["refused_source"]):
                    log.info("request in a superior's name refused", peer=stx.peer.addr)
                stx.reply(403, "Not From Superior")
            return
        method = req.method
        if method == "REGISTER":
            self._counts["register"] += 1
            screened = self.registrar.screen(stx)  # junk is answered here, with no task
            if screened is None:
                return
            if len(self.tasks) >= self.config.max_pending:  # a storm: shed load, devices retry
                stx.reply(503, Retry_After="5")
                return
            coro = self.registrar.register(stx, screened)
            self.tasks.spawn(self._guarded(stx, coro), "sip-register")
        elif method == "MESSAGE":
            self._message(stx)
        elif method in ("BYE", "INFO"):
            dialog = self.sessions.dialogs.get(req.call_id)
            if dialog is not None and not self.registrar.touch(dialog.device_id, stx.peer, ""):
                stx.reply(403, "Not From The Device")
                return
            self.sessions.on_request(stx)
        elif method == "OPTIONS":
            stx.reply(200, Allow=ALLOW)
        elif method == "CANCEL":
            stx.reply(481)
        elif method == "NOTIFY":
            self.notifications.on_notify(stx)
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

    def _message(self, stx: ServerTransaction) -> None:
        """A MANSCDP MESSAGE from a device, routed by its body's root and CmdType."""
        req = stx.request
        self._counts["message"] += 1
        try:
            doc = manscdp.decode(req.body)
        except ManscdpError as exc:
            self._counts["bad"] += 1
            stx.reply(400, "Bad MANSCDP")
            log.debug("bad manscdp", error=str(exc))
            return
        try:
            sender = req.from_.user
        except SipParseError:
            stx.reply(400)
            return
        if not is_gb_id(sender) or (doc.device_id and not is_gb_id(doc.device_id)):
            self._counts["bad_id"] += 1
            stx.reply(400, "Invalid Device ID")
            return
        if doc.cmd_type == "Keepalive":
            self._counts["keepalive"] += 1
            status = self.registrar.keepalive(sender, stx.peer, doc.charset)
            # 404 makes the device register again; 403: registered, but not from there
            stx.reply(status, {200: None, 403: "Not Registered Here"}.get(status, "Not Registered"))
            return
        if not self.registrar.touch(sender, stx.peer, doc.charset):
            stx.reply(403, "Not Registered")
            return
        stx.reply(200)
        if doc.root == "Response":
            self.queries.deliver_response(sender, doc)
        elif doc.root == "Notify":
            self._notify(sender, doc, req)
        else:
            log.debug("unhandled manscdp", root=doc.root, cmd=doc.cmd_type)

    def _notify(self, sender: str, doc: Manscdp, req: SipRequest) -> None:
        spawn = self.tasks.spawn
        if doc.cmd_type == "MediaStatus" and doc.text("NotifyType") == "121":
            dialog = self.sessions.dialogs.get(req.call_id)
            if dialog is not None and dialog.device_id == sender:  # only its own sessions
                spawn(self.sessions.media_ended(req.call_id), "sip-media-status")
        else:  # Alarm (acknowledged, relayed), MobilePosition, Catalog changes
            self.notifications.handle(sender, doc, via_notify=False)

    def _subscribe_connected(self, device_id: str, reason: str) -> None:
        """A connect listener that must not hold up the others: subscribing runs apart."""
        if self.subscriptions.kinds:
            self.tasks.spawn(
                self.subscriptions.device_connected(device_id, reason), "sip-subscribe"
            )


def server_tls(settings: ServerSettings) -> ssl.SSLContext:
    """The TLS listener's context: our certificate, TLS 1.2 at least, no client certificate
    asked (devices prove who they are with their digest, as over UDP and TCP)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


def tcp_limits(settings: ServerSettings) -> TcpLimits:
    """Idle limits for incoming TCP: short without a registration; with one, twice the
    silence after which the device is offline anyway."""
    registered = 2 * settings.keepalive_interval_s * settings.keepalive_misses
    return TcpLimits(
        max_connections=settings.max_tcp_connections,
        idle_s=settings.tcp_idle_s,
        bound_idle_s=max(settings.tcp_idle_s, registered),
    )
