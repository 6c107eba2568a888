"""What devices tell us, passed on to every superior (cascade): alarms, positions, catalog changes.

Each superior gets only what it may see (``Upstream.visible`` / ``Upstream.catalog``:
the per-superior selection, classified channels left out).  A superior holding a
subscription of that kind gets a NOTIFY in its dialog (:class:`~sip.subscribers.Subscribers`,
installed on the cascade's user agent here); one without gets alarms as a MESSAGE
``<Notify>`` (§9.4, as WVP sends them).  Catalog changes are the difference between the
view last announced to a superior and its view now, so a change from any source — a
device's NOTIFY, a Catalog answer, an administrator's selection — reaches it as
ADD/DEL/UPDATE/ON/OFF, ``catalog_group`` items per NOTIFY.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from .manscdp import CatalogItem, el
from .notify import ALARM, CATALOG, MOBILE_POSITION, AlarmNotify, MobilePosition, diff_catalog
from .subscribers import Subscriber, Subscribers
from .tasks import Spawn
from .transaction import TransactionTimeout
from .user_agent import DeviceUserAgent

log = structlog.get_logger("sip.upward")

CATALOG_SWEEP_S = 30.0  # changes no trigger announced (reconnection queries, admin edits)


class Superior(Protocol):
    """The part of :class:`~sip.cascade.Upstream` the relay uses."""

    @property
    def server_id(self) -> str: ...

    @property
    def registered(self) -> asyncio.Event: ...

    @property
    def agent(self) -> DeviceUserAgent: ...

    @property
    def local_id(self) -> str: ...

    async def catalog(self) -> list[CatalogItem]: ...

    async def visible(self, channel_id: str) -> bool: ...


class _Link:
    """One superior's subscriptions and what it was last told of our catalog."""

    def __init__(self, up: Superior, relay: UpwardRelay) -> None:
        self.up = up
        self.subscribers = Subscribers(up.agent, on_change=relay.subscription_changed)
        self.view: list[CatalogItem] | None = None  # the catalog it knows (None: no baseline)
        self.lock = asyncio.Lock()
        self.position_sent: dict[str, float] = {}  # target id → when last sent


class UpwardRelay:
    def __init__(
        self, spawn: Spawn, *, per_message: int = 4, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.spawn = spawn
        self.per_message = per_message
        self.clock = clock
        self.links: list[_Link] = []
        self._sweeper: asyncio.Task[None] | None = None
        self.forwarded = {"alarm": 0, "position": 0, "catalog": 0}

    def attach(self, up: Superior) -> Subscribers:
        """Accept SUBSCRIBE from this superior; returns its subscriptions."""
        link = _Link(up, self)
        self.links.append(link)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="sip-catalog-sweep")
        return link.subscribers

    def detach(self, up: Superior) -> None:
        for link in [x for x in self.links if x.up is up]:
            link.subscribers.close()
            self.links.remove(link)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for link in self.links:
            link.subscribers.close()
        self.links.clear()

    def subscribers_of(self, up: Superior) -> Subscribers | None:
        return next((x.subscribers for x in self.links if x.up is up), None)

    def subscription_changed(self, sub: Subscriber, change: str) -> None:
        """A new Catalog subscription: what the superior knows now is the baseline."""
        if sub.kind != CATALOG or change != "new":
            return
        for link in self.links:
            if sub in link.subscribers.by_call_id.values():
                self.spawn(self._baseline(link), "sip-catalog-baseline")

    async def _baseline(self, link: _Link) -> None:
        async with link.lock:
            if link.view is None:
                link.view = await link.up.catalog()

    # --- alarms ------------------------------------------------------------------------

    async def alarm(self, alarm: AlarmNotify) -> None:
        """A device alarm, to every registered superior that may see its source."""
        for link in list(self.links):
            up = link.up
            if not up.registered.is_set():
                continue
            try:
                if not await up.visible(alarm.device_id):
                    log.debug("alarm not shared upward", source=alarm.device_id, up=up.server_id)
                    continue
                if link.subscribers.has(ALARM):
                    await link.subscribers.notify(ALARM, alarm.device_id, alarm.to_xml())
                else:
                    await up.agent.notify("Alarm", alarm.device_id, alarm.to_xml())
                self.forwarded["alarm"] += 1
                log.info("alarm forwarded upward", source=alarm.device_id, up=up.server_id)
            except (TransactionTimeout, OSError) as exc:
                log.warning("alarm not forwarded", up=up.server_id, error=repr(exc))

    # --- positions ---------------------------------------------------------------------

    async def position(self, pos: MobilePosition) -> None:
        """A position, to superiors subscribed to MobilePosition, at most once per interval."""
        now = self.clock()
        for link in list(self.links):
            subs = link.subscribers.active(MOBILE_POSITION)
            if not subs:
                continue
            interval = min(s.interval_s or 1 for s in subs)
            if now - link.position_sent.get(pos.device_id, -1e9) < interval * 0.9:
                continue
            if not await link.up.visible(pos.device_id):
                continue
            link.position_sent[pos.device_id] = now
            await link.subscribers.notify(MOBILE_POSITION, pos.device_id, pos.to_xml())
            self.forwarded["position"] += 1

    # --- catalog changes ---------------------------------------------------------------

    async def catalog_changed(self) -> None:
        """Announce to each Catalog subscriber how its view changed since last told."""
        for link in list(self.links):
            if link.subscribers.has(CATALOG):
                try:
                    await self._announce(link)
                except Exception as exc:  # noqa: BLE001 - one superior must not stop the rest
                    log.warning(
                        "catalog change not announced", up=link.up.server_id, error=repr(exc)
                    )

    async def _announce(self, link: _Link) -> None:
        async with link.lock:
            view = await link.up.catalog()
            before, link.view = link.view, view
            if before is None:
                return
            events = diff_catalog(before, view)
            if not events:
                return
            per = max(1, link.up.agent.settings.catalog_per_message)
            total = len(events)
            for i in range(0, total, per):
                chunk = events[i : i + per]
                inner = (
                    el("SumNum", total)
                    + f'<DeviceList Num="{len(chunk)}">\r\n'
                    + "".join(e.to_xml() for e in chunk)
                    + "</DeviceList>\r\n"
                )
                await link.subscribers.notify(CATALOG, link.up.local_id, inner)
            self.forwarded["catalog"] += total
            log.info(
                "catalog change announced upward",
                up=link.up.server_id,
                events=[f"{e.event}:{e.item.device_id}" for e in events][:20],
            )

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(CATALOG_SWEEP_S)
            await self.catalog_changed()
