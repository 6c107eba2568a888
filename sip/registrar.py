"""REGISTER (GB/T 28181 §2): digest challenge, refresh, unregister, expiry and keepalive loss.

Every REGISTER — a refresh too — must carry the device's digest
(:class:`~sip.register_auth.RegisterAuth` decides).  Whether an accepted one is a
(re)connection or a plain refresh is decided by :func:`connection_reason` alone;
:meth:`Registrar._connected` is what follows one.  Whatever else a device sends is
accepted only from where its live registration is (:meth:`Registrar.accepts`): a
message naming a device from any other address or connection is refused and counted,
so nobody moves a device by claiming its id.  The registrar writes the
:class:`~sip.registry.Registry`; the parts that send to devices read it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Protocol

import structlog

from .auth import DigestCheck
from .ids import is_gb_id
from .media_api import DeviceConnectListener
from .message import SipParseError, SipRequest, SipResponse, response_for
from .register_auth import RegisterAuth, sampled, source_of
from .registry import Registration, Registry
from .settings import ServerSettings
from .store import DeviceStore
from .tasks import Spawn, tell
from .transaction import ServerTransaction
from .transport import Peer

log = structlog.get_logger("sip.server")

__all__ = ["Registrar", "connection_reason", "source_of"]


def connection_reason(
    reg: Registration | None, call_id: str, cseq: int, peer: Peer, now: float
) -> str | None:
    """Why a REGISTER (re)starts the device's registration — a (re)connection — or None.

    None only for a plain refresh of a live registration: same Call-ID, higher CSeq, from the
    transport and address of the last REGISTER.  Everything else — the first REGISTER, one
    after expiry or unregister (the registration is gone), after a keepalive timeout, with a
    new Call-ID or a restarted CSeq (a reboot), over another transport or from another
    address — is a (re)connection: the device may have forgotten its sessions and changed
    its channels, so it is queried and its wanted streams INVITEd again.
    """
    if reg is None:
        return "register"
    if not reg.online:
        return "register-after-offline"
    if now > reg.expires_at:
        return "register-after-expiry"
    if call_id != reg.call_id:
        return "register-new-call-id"
    if source_of(peer) != reg.source:
        return "register-new-address"
    if cseq <= reg.cseq:
        return "register-cseq-restart"
    return None


@dataclass(frozen=True)
class Screened:
    """A REGISTER that passed :meth:`Registrar.screen`: what the store part needs of it."""

    device_id: str
    cseq: int
    expires: int
    check: DigestCheck


class DeviceSessions(Protocol):
    """What becomes of a device's dialogs when its registration changes (InviteSessions)."""

    async def device_reconnected(self, device_id: str, peer: Peer) -> None: ...

    async def device_gone(self, device_id: str, reason: str) -> None: ...


class ConnectQueries(Protocol):
    """Asks a device that just (re)connected what it is and holds (Queries)."""

    async def query_connected(self, device_id: str) -> None: ...


class Registrar:
    """REGISTER and keepalive for the platform: who is online, and from where."""

    def __init__(
        self,
        settings: ServerSettings,
        store: DeviceStore,
        registry: Registry,
        *,
        sessions: DeviceSessions,
        queries: ConnectQueries,
        spawn: Spawn,
        tz: tzinfo,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.sessions = sessions
        self.queries = queries
        self.spawn = spawn
        self.tz = tz
        self.clock = clock
        self.auth = RegisterAuth(settings, store, registry, clock)
        self.counts = {"refused_source": 0}  # messages naming a device from elsewhere
        self.connect_listeners: list[DeviceConnectListener] = []
        self.connections = 0  # (re)connections seen, see connection_reason
        self._connect_queries: dict[str, asyncio.Task[None]] = {}  # per device, latest only
        # last keepalive per device, written to the store by the monitor (no task per message)
        self._keepalives: dict[str, tuple[str, int, datetime]] = {}
        self._monitor: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._monitor = asyncio.create_task(self._watch(), name="sip-keepalive-monitor")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)

    def add_connect_listener(self, listener: DeviceConnectListener) -> None:
        self.connect_listeners.append(listener)

    # --- MESSAGEs from devices -------------------------------------------------------

    def accepts(self, device_id: str, peer: Peer) -> Registration | None:
        """The device's live registration if ``peer`` is where it lives, else None (counted
        when the device is registered elsewhere: someone else is using its id)."""
        reg = self.registry.get(device_id)
        if reg is None or self.clock() > reg.expires_at:
            return None
        if not reg.sent_by(peer):
            self.counts["refused_source"] += 1
            if not sampled(self.counts["refused_source"]):
                return None
            log.info(
                "message from another address refused",
                device_id=device_id,
                peer=f"{peer.transport} {peer.host}:{peer.port}",
                registered=f"{reg.source[0]} {reg.source[1]}:{reg.source[2]}",
                refused_so_far=self.counts["refused_source"],
            )
            return None
        return reg

    def keepalive(self, device_id: str, peer: Peer, charset: str) -> int:
        """A Keepalive: 200; 404 when the device is not registered (it registers again);
        403 when it is registered from elsewhere."""
        reg = self.registry.get(device_id)
        if reg is None or self.clock() > reg.expires_at:
            return 404
        if self.accepts(device_id, peer) is None:
            return 403
        self._seen(reg, charset)
        if not reg.online:  # back after a keepalive timeout, without a new REGISTER
            reg.online = True
            self.spawn(
                self.store.set_online(device_id, True, at=datetime.now(UTC), reason="keepalive"),
                "sip-online",
            )
            self.spawn(self._tell_connected(device_id, "keepalive"), "sip-connect-listeners")
        self._keepalives[device_id] = (peer.host, peer.port, datetime.now(UTC))
        return 200

    def touch(self, device_id: str, peer: Peer, charset: str) -> bool:
        """Any other request from a device; False unless it comes from its registration."""
        reg = self.accepts(device_id, peer)
        if reg is None:
            return False
        self._seen(reg, charset)
        return True

    def _seen(self, reg: Registration, charset: str) -> None:
        reg.last_seen = self.clock()
        if charset:
            reg.charset = charset

    # --- REGISTER ----------------------------------------------------------------------

    def screen(self, stx: ServerTransaction) -> Screened | None:
        """What can be decided about a REGISTER without the store, synchronously: a junk
        one is answered here (400, 401, 403) and None returned; one carrying a digest with
        our nonce comes back for :meth:`register`."""
        req, c = stx.request, self.settings
        try:
            device_id = req.from_.user or req.to.user
            cseq = req.cseq[0]
        except SipParseError:
            stx.reply(400, "Bad From")
            return None
        expires = _expires(req)
        if expires is None:
            stx.reply(400, "Missing Expires")
            return None
        if not is_gb_id(device_id):
            stx.reply(403, "Invalid Device ID")
            return None
        if c.allowed_device_ids and device_id not in c.allowed_device_ids:
            stx.reply(403, "Device Not Allowed")
            return None
        check = self.auth.screen(stx, device_id)
        if check is None:
            return None  # answered: challenged or refused
        return Screened(device_id, cseq, expires, check)

    async def register(self, stx: ServerTransaction, screened: Screened) -> None:
        """A REGISTER that :meth:`screen` passed (the server screens each as it arrives)."""
        req, c = stx.request, self.settings
        device_id, cseq, expires = screened.device_id, screened.cseq, screened.expires
        record = await self.auth.admit(stx, device_id, screened.check)
        if record is None:
            return  # answered: challenged or refused
        reg = self.registry.get(device_id)
        # a per-device override (GB2312 or UTF-8), else what its bodies said so far
        charset = record.charset or (reg.charset if reg else "GB2312")
        now = self.clock()
        resp = _register_ok(stx, expires, self.tz if c.send_date_header else None)
        if expires == 0:
            stx.respond(resp)
            if reg is not None:
                await self.go_offline(device_id, "unregister")
            return
        # the decision again: an await above may have let another REGISTER of it through
        reg = self.registry.get(device_id)
        reason = connection_reason(reg, req.call_id, cseq, stx.peer, now)
        self.registry.put(
            Registration(
                device_id=device_id,
                peer=stx.peer,
                contact=req.get("Contact") or "",
                call_id=req.call_id,
                expires_at=now + expires,
                last_seen=now,
                charset=charset,
                gb_version=req.get("X-GB-Ver") or "",
                source=source_of(stx.peer),
                cseq=cseq,
                registered_at=datetime.now(UTC) if reason or reg is None else reg.registered_at,
            )
        )
        if reason is not None:
            self.connections += 1
        _rebind(reg, stx.peer)
        stx.respond(resp)
        await self.store.registered(
            device_id,
            transport=stx.peer.transport.lower(),
            host=stx.peer.host,
            port=stx.peer.port,
            expires_s=expires,
            gb_version=req.get("X-GB-Ver") or "",
            at=datetime.now(UTC),
        )
        if reason is not None:
            await self._connected(device_id, reason, was_online=reg is not None and reg.online)

    async def _connected(self, device_id: str, reason: str, was_online: bool) -> None:
        """A (re)connection: the device may have rebooted, changed its channels or its address.

        Sessions of its old registration are ended (the streams still wanted are INVITEd again
        by their owners, on the new contact), it is online, the connect listeners hear of it,
        and it is asked for DeviceInfo, Catalog and DeviceStatus afresh.
        """
        reg = self.registry[device_id]
        log.info("device online", device_id=device_id, peer=reg.peer.addr, reason=reason)
        if was_online:
            await self.sessions.device_reconnected(device_id, reg.peer)
        try:
            await self.store.set_online(device_id, True, at=datetime.now(UTC), reason=reason)
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not cost the queries
            log.error("online not stored", device_id=device_id, error=repr(exc))
        await self._tell_connected(device_id, reason)
        if self.settings.catalog_on_register:
            old = self._connect_queries.pop(device_id, None)
            if old is not None:
                old.cancel()  # answers of its previous life are of no use now
            task = self.spawn(self.queries.query_connected(device_id), "sip-connect-queries")
            self._connect_queries[device_id] = task
            task.add_done_callback(lambda t: self._forget_queries(device_id, t))

    def _forget_queries(self, device_id: str, task: asyncio.Task[None]) -> None:
        if self._connect_queries.get(device_id) is task:
            del self._connect_queries[device_id]

    async def _tell_connected(self, device_id: str, reason: str) -> None:
        await tell(self.connect_listeners, device_id, reason)

    async def go_offline(self, device_id: str, reason: str) -> None:
        reg = self.registry.get(device_id)
        if reg is None or not reg.online:
            self.registry.pop(device_id)
            return
        reg.online = False
        if reason in ("unregister", "expired"):
            self.registry.pop(device_id)
            _rebind(reg, None)
        log.info("device offline", device_id=device_id, reason=reason)
        await self.sessions.device_gone(device_id, reason)
        await self.store.set_online(device_id, False, at=datetime.now(UTC), reason=reason)

    # --- the monitor -------------------------------------------------------------------

    async def _flush_keepalives(self) -> None:
        pending, self._keepalives = self._keepalives, {}
        for device_id, (host, port, at) in pending.items():
            try:
                await self.store.keepalive(device_id, host=host, port=port, at=at)
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not stop the monitor
                log.warning("keepalive not stored", device_id=device_id, error=repr(exc))

    async def _watch(self) -> None:
        """Offline after ``keepalive_misses`` silent intervals or registration expiry."""
        c = self.settings
        limit = c.keepalive_interval_s * c.keepalive_misses
        period = max(0.02, min(1.0, limit / 8))
        while True:
            await asyncio.sleep(period)
            await self._flush_keepalives()
            now = self.clock()
            for reg in self.registry.values():
                if not reg.online:
                    continue
                reason = (
                    "expired"
                    if now > reg.expires_at
                    else "keepalive-timeout"
                    if now - reg.last_seen > limit
                    else None
                )
                if reason is None:
                    continue
                try:
                    await self.go_offline(reg.device_id, reason)
                except Exception as exc:  # noqa: BLE001 - keep watching the other devices
                    log.error("offline not stored", device_id=reg.device_id, error=repr(exc))


def _rebind(old: Registration | None, peer: Peer | None) -> None:
    """The TCP connection a registration runs on keeps the long idle limit; one it left
    (a new connection, or none: the registration ended) gets the short one again."""
    if (
        old is not None
        and old.peer.conn is not None
        and old.peer.conn is not getattr(peer, "conn", None)
    ):
        old.peer.conn.bound = False
    if peer is not None and peer.conn is not None:
        peer.conn.bound = True


def _expires(req: SipRequest) -> int | None:
    raw = req.get("Expires")
    if raw is None:
        contact = req.get("Contact") or ""
        m = re.search(r";\s*expires\s*=\s*(\d+)", contact, re.I)
        raw = m.group(1) if m else None
    if raw is None or not raw.strip().isdigit() or len(raw.strip()) > 9:
        return None
    return int(raw.strip())


def _register_ok(stx: ServerTransaction, expires: int, tz: tzinfo | None) -> SipResponse:
    resp = response_for(stx.request, 200, to_tag=stx.endpoint.local_tag)
    contact = stx.request.get("Contact")
    if contact:
        resp.set("Contact", contact)
    resp.set("Expires", str(expires))
    if tz is not None:
        now = datetime.now(tz)
        resp.set("Date", now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}")
    return resp
