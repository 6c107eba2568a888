"""REGISTER (GB/T 28181 §2): digest challenge, refresh, unregister, expiry and keepalive loss.

Part of :class:`sip.server.SipServer`; kept apart so the registry rules read in one place.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import structlog

from .message import SipParseError, SipRequest, SipResponse, response_for
from .transaction import ServerTransaction
from .transport import Peer

if TYPE_CHECKING:
    from .server import SipServer

log = structlog.get_logger("sip.server")

GB_ID = re.compile(r"^\d{20}$")


@dataclass
class Registration:
    device_id: str
    peer: Peer
    contact: str
    call_id: str
    expires_at: float
    last_seen: float
    online: bool = True
    charset: str = "GB2312"
    gb_version: str = ""
    registered_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class RegistrarMixin:
    async def _register(self: SipServer, stx: ServerTransaction) -> None:
        req, c = stx.request, self.config
        try:
            device_id = req.from_.user or req.to.user
        except SipParseError:
            stx.reply(400, "Bad From")
            return
        expires = _expires(req)
        if expires is None:
            stx.reply(400, "Missing Expires")
            return
        if not GB_ID.match(device_id):
            stx.reply(403, "Invalid Device ID")
            return
        if c.allowed_device_ids and device_id not in c.allowed_device_ids:
            stx.reply(403, "Device Not Allowed")
            return
        reg = self.registrations.get(device_id)
        refresh = (
            reg is not None
            and reg.online
            and reg.call_id == req.call_id
            and reg.peer.host == stx.peer.host
            and req.get("Authorization") is None
        )
        charset = reg.charset if reg else "GB2312"
        if not refresh:
            header = req.get("Authorization")
            if header is None:
                stx.reply(401, WWW_Authenticate=self.auth.challenge())
                return
            record = await self.store.get_device(device_id)
            if record is None:
                if not c.auto_create_devices:
                    stx.reply(403, "Unknown Device")
                    return
                record = await self.store.create_pending(device_id)
                log.info("device auto-created as pending", device_id=device_id)
            if not record.enabled:
                stx.reply(403, "Device Disabled")
                return
            charset = record.charset or charset  # per-device override (GB2312 or UTF-8)
            password = record.password or c.password
            if not password:
                stx.reply(403, "No Password")
                return
            result = self.auth.verify(header, "REGISTER", password)
            if not result.ok:
                if result.stale:
                    stx.reply(401, WWW_Authenticate=self.auth.challenge(stale=True))
                else:
                    log.warning("register refused", device_id=device_id, reason=result.reason)
                    stx.reply(403, "Wrong Password")
                return
        now = time.monotonic()
        resp = _register_ok(stx, expires, self.tz if c.send_date_header else None)
        if expires == 0:
            stx.respond(resp)
            if reg is not None:
                await self._go_offline(device_id, "unregister")
            return
        contact = req.get("Contact") or ""
        new = reg is None or not reg.online
        self.registrations[device_id] = Registration(
            device_id=device_id,
            peer=stx.peer,
            contact=contact,
            call_id=req.call_id,
            expires_at=now + expires,
            last_seen=now,
            charset=charset,
            gb_version=req.get("X-GB-Ver") or "",
        )
        stx.respond(resp)
        at = datetime.now(UTC)
        await self.store.registered(
            device_id,
            transport=stx.peer.transport.lower(),
            host=stx.peer.host,
            port=stx.peer.port,
            expires_s=expires,
            gb_version=req.get("X-GB-Ver") or "",
            at=at,
        )
        if new:
            log.info("device online", device_id=device_id, peer=stx.peer.addr)
            await self.store.set_online(device_id, True, at=at, reason="register")
            if c.catalog_on_register:
                self.spawn(self._initial_catalog(device_id), "sip-initial-catalog")

    async def _initial_catalog(self: SipServer, device_id: str) -> None:
        """DeviceInfo then Catalog of a device that just came online (as WVP does)."""
        try:
            await self.device_info(device_id)
        except Exception as exc:  # noqa: BLE001 - logged; some devices never answer it
            log.info("initial device info failed", device_id=device_id, error=repr(exc))
        try:
            await self.catalog(device_id)
        except Exception as exc:  # noqa: BLE001 - logged; the operator can refresh later
            log.info("initial catalog failed", device_id=device_id, error=repr(exc))

    async def _go_offline(self: SipServer, device_id: str, reason: str) -> None:
        reg = self.registrations.get(device_id)
        if reg is None or not reg.online:
            self.registrations.pop(device_id, None)
            return
        reg.online = False
        if reason in ("unregister", "expired"):
            self.registrations.pop(device_id, None)
        log.info("device offline", device_id=device_id, reason=reason)
        await self.sessions.device_gone(device_id, reason)
        await self.store.set_online(device_id, False, at=datetime.now(UTC), reason=reason)

    async def _flush_keepalives(self: SipServer) -> None:
        pending, self._keepalives = self._keepalives, {}
        for device_id, (host, port, at) in pending.items():
            try:
                await self.store.keepalive(device_id, host=host, port=port, at=at)
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not stop the monitor
                log.warning("keepalive not stored", device_id=device_id, error=repr(exc))

    async def _watch(self: SipServer) -> None:
        """Offline after ``keepalive_misses`` silent intervals or registration expiry."""
        c = self.config
        limit = c.keepalive_interval_s * c.keepalive_misses
        period = max(0.02, min(1.0, limit / 8))
        while True:
            await asyncio.sleep(period)
            await self._flush_keepalives()
            now = time.monotonic()
            for reg in list(self.registrations.values()):
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
                    await self._go_offline(reg.device_id, reason)
                except Exception as exc:  # noqa: BLE001 - keep watching the other devices
                    log.error("offline not stored", device_id=reg.device_id, error=repr(exc))


def _expires(req: SipRequest) -> int | None:
    raw = req.get("Expires")
    if raw is None:
        contact = req.get("Contact") or ""
        m = re.search(r";\s*expires\s*=\s*(\d+)", contact, re.I)
        raw = m.group(1) if m else None
    if raw is None or not raw.strip().isdigit() or len(raw.strip()) > 9:
        return None
    return int(raw.strip())


def _register_ok(stx: ServerTransaction, expires: int, tz: ZoneInfo | None) -> SipResponse:
    resp = response_for(stx.request, 200, to_tag=stx.endpoint.local_tag)
    contact = stx.request.get("Contact")
    if contact:
        resp.set("Contact", contact)
    resp.set("Expires", str(expires))
    if tz is not None:
        now = datetime.now(tz)
        resp.set("Date", now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}")
    return resp
