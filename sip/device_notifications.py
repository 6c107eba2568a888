"""What devices tell the platform unasked — alarms, positions, catalog changes — by MESSAGE
``<Notify>`` or by NOTIFY in one of our subscriptions: stored, acknowledged, passed upward.

An alarm is stored before anything else (nothing is lost), then acknowledged with the
``<Response>`` Alarm Result OK the standard asks of a platform (§9.4.2; a NOTIFY's 200 is
its acknowledgement), then relayed to the superiors.  Catalog ``<Event>``s are applied
to the stored channels and every superior told what changed in its view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

from . import manscdp
from .ids import is_gb_id
from .manscdp import CatalogItem, Manscdp
from .notify import (
    AlarmNotify,
    MobilePosition,
    alarm_ack_xml,
    catalog_events,
    has_events,
)
from .queries import valid_items
from .store import DeviceStore
from .subscriptions import DeviceSubscriptions
from .tasks import Spawn
from .transaction import ServerTransaction
from .transport import Peer
from .upward import UpwardRelay

log = structlog.get_logger("sip.device_notifications")

HANDLED = ("Alarm", "MobilePosition", "Catalog")

Touch = Callable[[str, Peer, str], bool]  # Registrar.touch: registered? (and seen now)


class ManscdpSender(Protocol):
    """``sip.outgoing.Outgoing``'s part used here."""

    def charset_of(self, device_id: str) -> str: ...

    async def send_manscdp(
        self, device_id: str, body: bytes, timeout: float | None = None
    ) -> None: ...


class DeviceNotifications:
    def __init__(
        self,
        store: DeviceStore,
        sender: ManscdpSender,
        relay: UpwardRelay,
        subscriptions: DeviceSubscriptions,
        *,
        touch: Touch,
        spawn: Spawn,
    ) -> None:
        self.store = store
        self.sender = sender
        self.relay = relay
        self.subscriptions = subscriptions
        self.touch = touch
        self.spawn = spawn
        self.counts = {"alarm": 0, "position": 0, "catalog_event": 0, "notify": 0}

    # --- NOTIFY ------------------------------------------------------------------------

    def on_notify(self, stx: ServerTransaction) -> None:
        """A NOTIFY from a device: 200 in a subscription of ours, else 481 (RFC 6665); what a
        registered device reports is applied either way (a dropped alarm helps nobody)."""
        req = stx.request
        self.counts["notify"] += 1
        try:
            sender = req.from_.user
            doc = manscdp.decode(req.body)
        except (ValueError, manscdp.ManscdpError) as exc:
            stx.reply(400, "Bad NOTIFY")
            log.debug("bad notify", error=str(exc))
            return
        if not is_gb_id(sender) or (doc.device_id and not is_gb_id(doc.device_id)):
            stx.reply(400, "Invalid Device ID")
            return
        if not self.touch(sender, stx.peer, doc.charset):
            stx.reply(403, "Not Registered")
            return
        sub = self.subscriptions.on_notify(req)
        stx.reply(200 if sub is not None else 481)
        if doc.root == "Notify" and doc.cmd_type in HANDLED:
            self.handle(sender, doc, via_notify=True)

    # --- the bodies --------------------------------------------------------------------

    def handle(self, sender: str, doc: Manscdp, *, via_notify: bool) -> None:
        """A ``<Notify>`` Alarm, MobilePosition or Catalog from ``sender`` (already answered)."""
        if doc.cmd_type == "Alarm":
            alarm = AlarmNotify.from_doc(doc)
            alarm.via = "notify" if via_notify else "message"
            self.spawn(self._alarm(sender, alarm, ack=not via_notify), "sip-alarm")
        elif doc.cmd_type == "MobilePosition":
            pos = MobilePosition.from_doc(doc)
            if pos is None:
                log.info("position without coordinates ignored", device_id=sender)
                return
            self.spawn(self._position(sender, pos), "sip-position")
        elif doc.cmd_type == "Catalog":
            self.spawn(self._catalog(sender, doc, via_notify), "sip-catalog-notify")

    async def _alarm(self, sender: str, alarm: AlarmNotify, ack: bool) -> None:
        self.counts["alarm"] += 1
        await self.store.save_alarm(sender, alarm)
        log.info(
            "device alarm",
            device_id=sender,
            source=alarm.device_id,
            priority=alarm.priority,
            method=alarm.method,
            type=alarm.alarm_type,
        )
        if ack:
            body = manscdp.encode(
                "Response",
                "Alarm",
                alarm.sn,
                alarm.device_id,
                alarm_ack_xml(),
                self.sender.charset_of(sender),
            )
            try:
                await self.sender.send_manscdp(sender, body)
            except Exception as exc:  # noqa: BLE001 - stored already; the device may retry
                log.info("alarm response not delivered", device_id=sender, error=repr(exc))
        await self.relay.alarm(alarm)

    async def _position(self, sender: str, pos: MobilePosition) -> None:
        self.counts["position"] += 1
        await self.store.save_position(sender, pos)
        await self.relay.position(pos)

    async def _catalog(self, sender: str, doc: Manscdp, via_notify: bool) -> None:
        if via_notify or has_events(doc):
            events = catalog_events(doc)
            self.counts["catalog_event"] += len(events)
            await self.store.apply_catalog_events(sender, events)
            log.info(
                "catalog events",
                device_id=sender,
                events=[f"{e.event}:{e.item.device_id}" for e in events][:20],
            )
        else:  # a plain listing sent unasked: merged like a partial Catalog answer
            items = [CatalogItem.from_element(e) for e in manscdp.list_items(doc, "DeviceList")]
            await self.store.save_catalog(sender, valid_items(sender, items), False)
        await self.relay.catalog_changed()
