"""What the SIP server persists, as a narrow protocol (the application implements it on its
database); :class:`MemoryDeviceStore` serves tests, the benchmark and standalone runs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from .manscdp import CatalogItem, DeviceInfo, DeviceStatusInfo
from .notify import ADD, DEL, UPDATE, AlarmNotify, CatalogEvent, MobilePosition


@dataclass
class DeviceRecord:
    device_id: str
    password: str | None = None  # None → the global password
    enabled: bool = True
    charset: str = "GB2312"


class DeviceStore(Protocol):
    async def get_device(self, device_id: str) -> DeviceRecord | None: ...

    async def create_pending(self, device_id: str) -> DeviceRecord: ...

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
    ) -> None: ...

    async def keepalive(self, device_id: str, *, host: str, port: int, at: datetime) -> None: ...

    async def set_online(
        self, device_id: str, online: bool, *, at: datetime, reason: str
    ) -> None: ...

    async def save_catalog(
        self, device_id: str, items: list[CatalogItem], complete: bool
    ) -> None: ...

    async def save_device_info(self, device_id: str, info: DeviceInfo) -> None: ...

    async def save_device_status(self, device_id: str, status: DeviceStatusInfo) -> None: ...

    async def save_alarm(self, device_id: str, alarm: AlarmNotify) -> None: ...

    async def apply_catalog_events(self, device_id: str, events: list[CatalogEvent]) -> None: ...

    async def save_position(self, device_id: str, position: MobilePosition) -> None: ...

    async def list_channels(self) -> list[CatalogItem]: ...


@dataclass
class MemoryDevice:
    record: DeviceRecord
    pending: bool = False
    online: bool = False
    transport: str = ""
    host: str = ""
    port: int = 0
    expires_s: int = 0
    registered_at: datetime | None = None
    keepalive_at: datetime | None = None
    channels: dict[str, CatalogItem] = field(default_factory=dict)
    info: DeviceInfo | None = None
    status: DeviceStatusInfo | None = None  # the latest DeviceStatus answer
    alarms: list[AlarmNotify] = field(default_factory=list)
    positions: list[MobilePosition] = field(default_factory=list)
    history: list[tuple[str, datetime, str]] = field(default_factory=list)


class MemoryDeviceStore:
    """Devices in a dict; ``known`` pre-registers ids with their passwords."""

    def __init__(self, known: dict[str, str | None] | None = None) -> None:
        self.devices: dict[str, MemoryDevice] = {
            d: MemoryDevice(DeviceRecord(d, p)) for d, p in (known or {}).items()
        }

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        dev = self.devices.get(device_id)
        return dev.record if dev else None

    async def create_pending(self, device_id: str) -> DeviceRecord:
        dev = self.devices.setdefault(device_id, MemoryDevice(DeviceRecord(device_id), True))
        return dev.record

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
        dev = self.devices[device_id]
        dev.transport, dev.host, dev.port, dev.expires_s = transport, host, port, expires_s
        dev.registered_at = at

    async def keepalive(self, device_id: str, *, host: str, port: int, at: datetime) -> None:
        dev = self.devices.get(device_id)
        if dev is not None:
            dev.keepalive_at, dev.host, dev.port = at, host, port

    async def set_online(self, device_id: str, online: bool, *, at: datetime, reason: str) -> None:
        dev = self.devices.get(device_id)
        if dev is not None:
            dev.online = online
            dev.history.append(("online" if online else "offline", at, reason))

    async def save_catalog(self, device_id: str, items: list[CatalogItem], complete: bool) -> None:
        dev = self.devices.get(device_id)
        if dev is None:
            return
        dev.channels.update({i.device_id: i for i in items})
        if complete:  # as the database store: channels no longer listed are kept, marked off
            listed = {i.device_id for i in items}
            for cid, ch in dev.channels.items():
                if cid not in listed:
                    dev.channels[cid] = replace(ch, status="OFF")

    async def save_device_info(self, device_id: str, info: DeviceInfo) -> None:
        if device_id in self.devices:
            self.devices[device_id].info = info

    async def save_device_status(self, device_id: str, status: DeviceStatusInfo) -> None:
        if device_id in self.devices:
            self.devices[device_id].status = status

    async def save_alarm(self, device_id: str, alarm: AlarmNotify) -> None:
        if device_id in self.devices:
            self.devices[device_id].alarms.append(alarm)

    async def apply_catalog_events(self, device_id: str, events: list[CatalogEvent]) -> None:
        """As the database store: ADD/UPDATE upsert, DEL removes, the rest set the status."""
        dev = self.devices.get(device_id)
        if dev is None:
            return
        for ev in events:
            cid = ev.item.device_id
            if ev.event in (ADD, UPDATE):
                dev.channels[cid] = ev.item
            elif ev.event == DEL:
                dev.channels.pop(cid, None)
            elif cid in dev.channels:
                dev.channels[cid] = replace(dev.channels[cid], status=ev.item.status)

    async def save_position(self, device_id: str, position: MobilePosition) -> None:
        dev = self.devices.get(device_id)
        if dev is None:
            return
        dev.positions.append(position)
        ch = dev.channels.get(position.device_id)
        if ch is not None:
            dev.channels[position.device_id] = replace(
                ch, longitude=position.longitude, latitude=position.latitude
            )

    async def list_channels(self) -> list[CatalogItem]:
        return [
            replace(c) for d in self.devices.values() for c in d.channels.values() if c.is_channel
        ]
