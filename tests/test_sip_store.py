"""The database DeviceStore on SQLite and PostgreSQL: rows, history and bus events."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from sip.manscdp import CatalogItem, DeviceInfo
from sip.notify import AlarmNotify
from storage.db import Database
from storage.models import Channel, Device, DeviceEvent, DeviceStatus
from storage.objects import LocalObjectStore
from vms.config import Settings
from vms.services import Services
from vms.sip_store import DbDeviceStore

DEV = "34020000001180000042"


async def test_store_round_trip(settings: Settings, db_url: str) -> None:
    db = Database(db_url)
    db.open()
    try:
        services = Services(settings, db, LocalObjectStore(settings.objects_path))
        store = DbDeviceStore(services)
        async with services.events.subscribe() as events:
            assert await store.get_device(DEV) is None
            rec = await store.create_pending(DEV)
            assert rec.enabled and rec.password is None
            assert (await store.create_pending(DEV)).device_id == DEV  # twice: no error
            now = datetime.now(UTC)
            await store.registered(
                DEV,
                transport="tcp",
                host="127.0.0.1",
                port=5070,
                expires_s=3600,
                gb_version="3.0",
                at=now,
            )
            await store.set_online(DEV, True, at=now, reason="register")
            items = [
                CatalogItem(f"3402000000131000000{n}", name=f"通道{n}", status="ON", ptz_type=1)
                for n in range(1, 4)
            ] + [CatalogItem("34020000", name="region")]  # civil code: not a channel
            await store.save_catalog(DEV, items, complete=True)
            await store.save_catalog(DEV, items[:2], complete=True)  # channel 3 disappeared
            await store.save_device_info(DEV, DeviceInfo(DEV, "NVR", "Hik", "DS", "V1", 16))
            await store.save_alarm(DEV, AlarmNotify(items[0].device_id, 1, 5, 2, "t", "Motion"))
            await store.set_online(DEV, False, at=now, reason="keepalive-timeout")
            listed = await store.list_channels()
            kinds = [events.get_nowait().kind for _ in range(events.qsize())]
        assert listed == []  # a pending device's channels are not exposed upward
        with db.session() as s:
            d = s.scalar(select(Device).where(Device.device_id == DEV))
            assert d.status == DeviceStatus.pending and not d.online
            assert (d.transport, d.remote_port, d.gb_version, d.manufacturer) == (
                "tcp",
                5070,
                "3.0",
                "Hik",
            )
            chans = {c.channel_id: c.status for c in s.scalars(select(Channel))}
            assert chans == {
                "34020000001310000001": "ON",
                "34020000001310000002": "ON",
                "34020000001310000003": "OFF",
            }
            history = list(s.scalars(select(DeviceEvent.kind).order_by(DeviceEvent.id)))
            assert history == ["online", "alarm", "offline"]
            d.status = DeviceStatus.active
        assert len(await store.list_channels()) == 3
        assert kinds == [
            "device.pending",
            "device.pending",
            "device.online",
            "catalog.updated",
            "catalog.updated",
            "device.alarm",
            "device.offline",
        ]
    finally:
        db.close()
