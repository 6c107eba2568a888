"""``sip.store.DeviceStore`` on the database: devices, channels, their history, and events.

All database work goes through ``db.run`` so the SIP loop never waits on it.  State
changes are also published on the event bus (``device.online``, ``device.offline``,
``device.alarm``, ``device.position``, ``device.status``, ``catalog.updated``).  Keepalive
writes are coalesced: one row update per device per half interval is plenty for "last seen"
and spares the database 10 k writes a minute.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sip.manscdp import CatalogItem, DeviceInfo, DeviceStatusInfo
from sip.notify import AlarmNotify, CatalogEvent, MobilePosition
from sip.store import DeviceRecord
from storage.models import Channel, Device, DeviceEvent, DeviceStatus
from vms import catalog_events, device_alarms
from vms.channel_claims import RefusedChannels, claimed_elsewhere
from vms.logging import get_logger
from vms.services import Services

log = get_logger("vms.sip_store")


def _device(s: Session, device_id: str) -> Device | None:
    return s.scalar(select(Device).where(Device.device_id == device_id))


def _record(d: Device) -> DeviceRecord:
    return DeviceRecord(
        device_id=d.device_id,
        password=d.sip_password or None,
        enabled=d.status != DeviceStatus.disabled,
        charset=d.charset or "GB2312",
    )


class DbDeviceStore:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.db = services.db
        self.events = services.events
        self._keepalive_written: dict[str, float] = {}
        self._catalog_locks: dict[str, asyncio.Lock] = {}
        self.refused_channels = RefusedChannels()  # catalog items of another device's camera
        self._keepalive_every = services.settings.sip.keepalive_interval_s / 2
        self._tz = ZoneInfo(services.settings.server.timezone)  # device clocks' zone

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        def fn(s: Session) -> DeviceRecord | None:
            d = _device(s, device_id)
            return _record(d) if d is not None else None

        return await self.db.run(fn)

    async def create_pending(self, device_id: str) -> DeviceRecord:
        def insert(s: Session) -> None:
            s.add(Device(device_id=device_id, status=DeviceStatus.pending))

        def fetch(s: Session) -> DeviceRecord:
            d = _device(s, device_id)
            assert d is not None
            return _record(d)

        try:
            await self.db.run(insert)
        except IntegrityError:
            pass  # registered twice at once: the other one created it
        record = await self.db.run(fetch)
        self.events.publish("device.pending", device_id=device_id)
        return record

    async def registered(
        self,
        device_id: str,
        *,
        transport: str,
        host: str,
        port: int,
        expires_s: int,
        gb_version: str,
        at: datetime,
    ) -> None:
        def fn(s: Session) -> None:
            d = _device(s, device_id)
            if d is None:
                return
            d.transport, d.remote_host, d.remote_port = transport, host, port
            d.expires_s, d.registered_at, d.keepalive_at = expires_s, at, at
            if gb_version:
                d.gb_version = gb_version[:8]

        await self.db.run(fn)

    async def keepalive(self, device_id: str, *, host: str, port: int, at: datetime) -> None:
        now = time.monotonic()
        if now - self._keepalive_written.get(device_id, -1e9) < self._keepalive_every:
            return
        self._keepalive_written[device_id] = now

        def fn(s: Session) -> None:
            d = _device(s, device_id)
            if d is not None:
                d.keepalive_at, d.remote_host, d.remote_port = at, host, port

        await self.db.run(fn)

    async def set_online(self, device_id: str, online: bool, *, at: datetime, reason: str) -> None:
        kind = "online" if online else "offline"

        def fn(s: Session) -> int | None:
            d = _device(s, device_id)
            if d is None:
                return None
            d.online = online
            s.add(DeviceEvent(device_pk=d.id, kind=kind, at=at, detail={"reason": reason}))
            return d.org_id

        org_id = await self.db.run(fn)
        self._keepalive_written.pop(device_id, None)
        self.events.publish(
            f"device.{kind}", device_id=device_id, org_id=org_id, reason=reason, at=at.isoformat()
        )

    async def save_catalog(self, device_id: str, items: list[CatalogItem], complete: bool) -> None:
        """Merge a Catalog answer; codes another device already has are refused and counted
        (``vms.channel_claims``): a catalog never moves a camera to another device."""
        channels = [i for i in items if i.is_channel]

        def fn(s: Session) -> tuple[int, int | None, set[str]]:
            d = _device(s, device_id)
            if d is None:
                return 0, None, set()
            existing = {c.channel_id: c for c in d.channels}
            new_ids = {i.device_id for i in channels if i.device_id not in existing}
            refused = claimed_elsewhere(s, d, new_ids)
            for item in channels:
                if item.device_id in refused:
                    continue
                ch = existing.get(item.device_id)
                if ch is None:
                    ch = Channel(channel_id=item.device_id)
                    d.channels.append(ch)
                    existing[item.device_id] = ch
                catalog_events.fill_channel(ch, item)
            if complete:  # channels the device no longer lists: keep config, mark off
                listed = {i.device_id for i in channels}
                for cid, ch in existing.items():
                    if cid not in listed:
                        ch.status = "OFF"
            d.channel_count = len(existing)
            return len(existing), d.org_id, refused

        lock = self._catalog_locks.setdefault(device_id, asyncio.Lock())
        async with lock:  # an operator refresh may race the catalog query of the REGISTER
            try:
                count, org_id, refused = await self.db.run(fn)
            except IntegrityError:  # another node inserted the same channel: merge again
                count, org_id, refused = await self.db.run(fn)
        self._refused(device_id, org_id, refused)
        self.events.publish(
            "catalog.updated", device_id=device_id, org_id=org_id, channels=count, complete=complete
        )

    def _refused(self, device_id: str, org_id: int | None, refused: set[str]) -> None:
        if refused:
            self.refused_channels.add(device_id, refused)
            self.events.publish(
                "catalog.refused",
                device_id=device_id,
                org_id=org_id,
                channel_ids=sorted(refused)[:50],
                count=len(refused),
            )

    async def save_device_info(self, device_id: str, info: DeviceInfo) -> None:
        def fn(s: Session) -> None:
            d = _device(s, device_id)
            if d is None:
                return
            d.manufacturer = info.manufacturer[:100]
            d.model = info.model[:100]
            d.firmware = info.firmware[:100]
            if info.channels:
                d.channel_count = info.channels
            if not d.name and info.name:
                d.name = info.name[:200]

        await self.db.run(fn)

    async def save_device_status(self, device_id: str, status: DeviceStatusInfo) -> None:
        """A DeviceStatus answer joins the device's history (asked on every (re)connection)."""
        detail = {
            "online": status.online[:16],
            "status": status.status[:16],
            "encode": status.encode[:16],
            "record": status.record[:16],
            "device_time": status.device_time[:32],
            "result": status.result[:16],
        }

        def fn(s: Session) -> int | None:
            d = _device(s, device_id)
            if d is None:
                return None
            s.add(DeviceEvent(device_pk=d.id, kind="status", detail=detail))
            return d.org_id

        org_id = await self.db.run(fn)
        self.events.publish("device.status", device_id=device_id, org_id=org_id, **detail)

    async def save_alarm(self, device_id: str, alarm: AlarmNotify) -> None:
        """Committed before the device is acknowledged; then pushed as ``device.alarm``."""

        def fn(s: Session) -> dict[str, Any] | None:
            d = _device(s, device_id)
            if d is None:
                return None
            return device_alarms.push_data(s, device_alarms.store_alarm(s, d, alarm, self._tz))

        data = await self.db.run(fn)
        if data is not None:
            self.events.publish("device.alarm", **data)

    async def apply_catalog_events(self, device_id: str, events: list[CatalogEvent]) -> None:
        """A device's catalog changes (ADD/DEL/UPDATE/ON/OFF/...), as ``catalog.updated``;
        an ADD of a code another device has is refused and counted like in a Catalog."""

        def fn(s: Session) -> tuple[int, int | None, dict[str, int], set[str]]:
            d = _device(s, device_id)
            if d is None:
                return 0, None, {}, set()
            counts, refused = catalog_events.apply_events(s, d, events)
            return d.channel_count, d.org_id, counts, refused

        lock = self._catalog_locks.setdefault(device_id, asyncio.Lock())
        async with lock:
            count, org_id, counts, refused = await self.db.run(fn)
        self._refused(device_id, org_id, refused)
        if counts:
            self.events.publish(
                "catalog.updated",
                device_id=device_id,
                org_id=org_id,
                channels=count,
                complete=False,
                events=counts,
            )

    async def save_position(self, device_id: str, position: MobilePosition) -> None:
        def fn(s: Session) -> bool:
            d = _device(s, device_id)
            if d is None:
                return False
            device_alarms.store_position(s, d, position, self._tz)
            return True

        if await self.db.run(fn):
            self.events.publish(
                "device.position",
                device_id=device_id,
                target_id=position.device_id,
                longitude=position.longitude,
                latitude=position.latitude,
                time=position.time,
            )

    async def list_channels(self) -> list[CatalogItem]:
        def fn(s: Session) -> list[CatalogItem]:
            rows = s.execute(
                select(Channel, Device.device_id)
                .join(Device, Channel.device_pk == Device.id)
                .where(Device.status == DeviceStatus.active)
                .order_by(Channel.channel_id)
            )
            return [
                CatalogItem(
                    device_id=c.channel_id,
                    name=c.name,
                    manufacturer=c.manufacturer,
                    model=c.model,
                    civil_code=c.civil_code,
                    address=c.address,
                    parent_id=dev_id,
                    status=c.status,
                    longitude=c.longitude,
                    latitude=c.latitude,
                    ptz_type=c.ptz_type,
                    secrecy=c.secrecy,
                )
                for c, dev_id in rows
            ]

        return await self.db.run(fn)
