"""The simulated NVR's unasked side: subscriptions held on it, and what it notifies.

A platform's SUBSCRIBE (Catalog, Alarm, MobilePosition) is accepted by
:class:`sip.subscribers.Subscribers`; a test changes the catalog (a channel added, removed,
renamed, going off line) and the subscribers get the Catalog NOTIFY with that ``<Event>``,
as a recorder's firmware sends it.  Alarms go as NOTIFY to alarm subscribers, else as a
MESSAGE; a moving channel reports its position at each subscriber's interval.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from sip import ids, manscdp
from sip.manscdp import Manscdp, el
from sip.notify import (
    ADD,
    ALARM,
    CATALOG,
    DEL,
    MOBILE_POSITION,
    ON,
    STATUS_OF_EVENT,
    UPDATE,
    CatalogEvent,
    MobilePosition,
)
from sip.subscribers import Subscriber, Subscribers
from sip.transaction import TransactionTimeout

if TYPE_CHECKING:
    from .nvr import SimulatedNvr

log = structlog.get_logger("simdevice.events")

NO_SUBSCRIBER = 481  # what send_* return when "notify" was asked and nobody subscribed


class DeviceEvents:
    def __init__(self, nvr: SimulatedNvr) -> None:
        self.nvr = nvr
        self.subscribers = Subscribers(nvr.agent, on_change=self._subscription_changed)
        nvr.agent.on_response = self._response
        self.moving: dict[str, tuple[float, float]] = {}  # channel → where it is now
        self._reporter: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            await asyncio.gather(self._reporter, return_exceptions=True)
            self._reporter = None
        self.subscribers.close()

    def _response(self, doc: Manscdp) -> None:
        if doc.cmd_type == "Alarm":  # the platform acknowledged an alarm (§9.4.2)
            self.nvr.state.alarm_responses.append(doc.sn)

    # --- alarms ------------------------------------------------------------------------

    async def alarm(self, source_id: str, inner: str, via: str = "auto") -> int:
        if via == "notify" or (via == "auto" and self.subscribers.has(ALARM)):
            return 200 if await self.subscribers.notify(ALARM, source_id, inner) else NO_SUBSCRIBER
        return await self.nvr.agent.notify("Alarm", source_id, inner)

    # --- catalog changes ---------------------------------------------------------------

    async def add_channel(self, channel_id: str | None = None, **changes: object) -> str:
        """A new channel (ADD); its id, a fresh camera id of this NVR when none is given."""
        nvr = self.nvr
        if channel_id is None:
            prefix = nvr.config.device_id[: ids.DOMAIN_LENGTH]
            serial = len(nvr.channels) + 1
            while str(ids.GbId.build(prefix, ids.CAMERA, serial)) in nvr.channels:
                serial += 1
            channel_id = str(ids.GbId.build(prefix, ids.CAMERA, serial))
        nvr.channels.append(channel_id)
        if changes:
            nvr.channel_overrides[channel_id] = dict(changes)
        await self.catalog_notify([CatalogEvent(ADD, self._item(channel_id))])
        return channel_id

    async def remove_channel(self, channel_id: str) -> int:
        """The channel is gone (DEL)."""
        item = self._item(channel_id)
        self.nvr.channels.remove(channel_id)
        self.nvr.channel_overrides.pop(channel_id, None)
        return await self.catalog_notify([CatalogEvent(DEL, item)])

    async def update_channel(self, channel_id: str, **changes: object) -> int:
        """Fields of a channel changed (UPDATE): name, address, position ..."""
        self.nvr.channel_overrides.setdefault(channel_id, {}).update(changes)
        return await self.catalog_notify([CatalogEvent(UPDATE, self._item(channel_id))])

    async def set_status(self, channel_id: str, event: str = ON) -> int:
        """ON / OFF / VLOST / DEFECT for a channel."""
        self.nvr.channel_overrides.setdefault(channel_id, {})["status"] = STATUS_OF_EVENT[event]
        return await self.catalog_notify([CatalogEvent(event, self._item(channel_id))])

    async def catalog_notify(self, events: list[CatalogEvent]) -> int:
        """One Catalog NOTIFY with these events to every Catalog subscriber."""
        inner = (
            el("SumNum", len(events))
            + f'<DeviceList Num="{len(events)}">\r\n'
            + "".join(e.to_xml() for e in events)
            + "</DeviceList>\r\n"
        )
        return await self.subscribers.notify(CATALOG, self.nvr.config.device_id, inner)

    def _item(self, channel_id: str) -> manscdp.CatalogItem:
        return next(i for i in self.nvr.catalog_items() if i.device_id == channel_id)

    # --- positions ---------------------------------------------------------------------

    async def send_position(
        self, channel_id: str, longitude: float, latitude: float, via: str = "auto"
    ) -> int:
        pos = MobilePosition(
            channel_id,
            manscdp.fmt_time(datetime.now(self.nvr.tz)),
            longitude,
            latitude,
            speed=12.5,
            direction=90.0,
            altitude=30.0,
        )
        if via == "notify" or (via == "auto" and self.subscribers.has(MOBILE_POSITION)):
            sent = await self.subscribers.notify(MOBILE_POSITION, channel_id, pos.to_xml())
            return 200 if sent else NO_SUBSCRIBER
        return await self.nvr.agent.notify("MobilePosition", channel_id, pos.to_xml())

    def move(self, channel_id: str, longitude: float, latitude: float) -> None:
        """The channel is (now) here; reported at each MobilePosition subscriber's interval."""
        self.moving[channel_id] = (longitude, latitude)
        self._report_if_subscribed()

    def _subscription_changed(self, sub: Subscriber, change: str) -> None:
        if sub.kind == MOBILE_POSITION and change != "ended":
            self._report_if_subscribed()

    def _report_if_subscribed(self) -> None:
        if self._reporter is None and self.moving and self.subscribers.has(MOBILE_POSITION):
            self._reporter = asyncio.create_task(self._report(), name="sim-position-report")

    async def _report(self) -> None:
        try:
            while True:
                subs = self.subscribers.active(MOBILE_POSITION)
                if not subs or not self.moving:
                    return
                for channel_id, (lon, lat) in list(self.moving.items()):
                    try:
                        await self.send_position(channel_id, lon, lat, via="notify")
                    except (TransactionTimeout, OSError) as exc:
                        log.info("position not delivered", error=repr(exc))
                await asyncio.sleep(max(1, min(s.interval_s or 5 for s in subs)))
        finally:
            self._reporter = None
