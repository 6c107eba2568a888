"""Device alarms, catalog events and positions on the database (SQLite and PostgreSQL), and
the operator API end to end: a simulated NVR alarms by NOTIFY and by MESSAGE, the rows are
listed and filtered in the caller's scope, pushed with their organisation, and ResetAlarm
goes to the NVR with the alarm's ``<Info>``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.routers.events_ws import visible
from api.security import create_token
from simdevice.nvr import SimulatedNvr
from sip.manscdp import CatalogItem
from sip.notify import ADD, DEL, OFF, ON, UPDATE, VLOST, AlarmNotify, CatalogEvent, MobilePosition
from storage.db import Database
from storage.device_alarm_models import DeviceAlarm, DevicePosition
from storage.models import (
    Alarm,
    Channel,
    Device,
    DeviceEvent,
    OrgKind,
    Profile,
    Role,
    User,
)
from storage.objects import LocalObjectStore
from storage.org_tree import create_org
from storage.passwords import hash_password
from vms.config import Settings, load_settings
from vms.services import Services
from vms.sip_component import sip_component
from vms.sip_store import DbDeviceStore

from .sip_support import nvr_config, wait_until

NVR = "37010200001180000901"
OTHER_NVR = "37010200001180000902"
CH = [f"3701020000131000000{n}" for n in range(1, 4)]


def _seed_device(db: Database) -> str:
    with db.session() as s:
        county = create_org(s, "历下区", OrgKind.county, None, "370102")
        ent = create_org(s, "甲企业", OrgKind.enterprise, county, "370102001")
        s.add(Device(device_id=NVR, name="甲NVR", org_id=ent.id))
        return ent.path


async def test_alarms_events_and_positions_stored(settings: Settings, db_url: str) -> None:
    db = Database(db_url)
    db.open()
    try:
        services = Services(settings, db, LocalObjectStore(settings.objects_path))
        store = DbDeviceStore(services)
        ent_path = _seed_device(db)
        await store.save_catalog(NVR, [CatalogItem(c, name=f"通道{c[-1]}") for c in CH], True)
        async with services.events.subscribe() as events:
            alarm = AlarmNotify(
                CH[0], 1, 5, 2, "2026-11-23T10:12:30", "移动侦测", extra={"EventType": "1"}
            )
            alarm.via, alarm.raw = "notify", "<Notify>…</Notify>"
            await store.save_alarm(NVR, alarm)
            await store.save_alarm(NVR, AlarmNotify(NVR, 2, 6, 1, "bad time", "磁盘故障"))
            pushed = [events.get_nowait() for _ in range(events.qsize())]
        assert [e.kind for e in pushed] == ["device.alarm", "device.alarm"]
        first = pushed[0].data
        assert first["org_path"] == ent_path and first["channel_name"] == "通道1"
        assert first["type_name"] == "运动目标检测 motion" and first["method_name"].startswith(
            "视频"
        )
        assert visible(ent_path, first) and not visible("/999/", first)
        with db.session() as s:
            rows = list(s.scalars(select(DeviceAlarm).order_by(DeviceAlarm.id)))
            assert [(r.source_id, r.priority, r.method, r.alarm_type) for r in rows] == [
                (CH[0], 1, 5, 2),
                (NVR, 2, 6, 1),
            ]
            # device local time (Asia/Shanghai) kept as sent and as UTC
            assert rows[0].alarm_time == datetime(2026, 11, 23, 2, 12, 30, tzinfo=UTC)
            assert rows[0].alarm_time_text == "2026-11-23T10:12:30" and rows[1].alarm_time is None
            assert rows[0].channel_pk is not None and rows[1].channel_pk is None
            assert (rows[0].via, rows[0].raw, rows[0].event_type) == (
                "notify",
                "<Notify>…</Notify>",
                "1",
            )
            assert rows[0].org_id is not None
            history = list(s.scalars(select(DeviceEvent.detail).where(DeviceEvent.kind == "alarm")))
            assert [h["device_alarm_id"] for h in history] == [r.id for r in rows]
            ch3 = s.scalar(select(Channel).where(Channel.channel_id == CH[2]))
            s.add(
                Alarm(
                    channel_pk=ch3.id, profile=Profile.enterprise, alarm_type="1", video_code=CH[2]
                )
            )
            s.execute(
                DeviceAlarm.__table__.update()
                .where(DeviceAlarm.id == rows[1].id)
                .values(channel_pk=ch3.id)
            )

        new = "37010200001310000009"
        async with services.events.subscribe() as events:
            await store.apply_catalog_events(
                NVR,
                [
                    CatalogEvent(ADD, CatalogItem(new, name="新增")),
                    CatalogEvent(UPDATE, CatalogItem(CH[0], name="改名", status="ON")),
                    CatalogEvent(OFF, CatalogItem(CH[1], status="OFF")),
                    CatalogEvent(VLOST, CatalogItem(CH[0], status="OFF")),
                    CatalogEvent(DEL, CatalogItem(CH[2])),
                    CatalogEvent(ON, CatalogItem("37010200001310000099", status="ON")),  # unknown
                    CatalogEvent(ADD, CatalogItem("37010200", name="civil code")),  # no channel
                ],
            )
            kinds = [events.get_nowait() for _ in range(events.qsize())]
        assert [(e.kind, e.data["events"]) for e in kinds] == [
            ("catalog.updated", {ADD: 1, UPDATE: 1, OFF: 1, VLOST: 1, DEL: 1})
        ]
        with db.session() as s:
            chans = {c.channel_id: (c.name, c.status) for c in s.scalars(select(Channel))}
            assert chans == {CH[0]: ("改名", "OFF"), CH[1]: ("通道2", "OFF"), new: ("新增", "ON")}
            assert s.scalar(select(Device.channel_count).where(Device.device_id == NVR)) == 3
            # the deleted camera's alarms are kept, detached; the deletion is in the history
            assert s.scalar(select(Alarm.channel_pk)) is None
            assert (
                s.scalar(select(DeviceAlarm.channel_pk).where(DeviceAlarm.id == rows[1].id)) is None
            )
            deleted = s.scalar(
                select(DeviceEvent.detail).where(DeviceEvent.kind == "channel.deleted")
            )
            assert deleted["channel_id"] == CH[2]

        await store.save_position(
            NVR, MobilePosition(CH[1], "2026-11-23T10:00:00", 117.5, 36.7, 40.0, 90.0, None)
        )
        with db.session() as s:
            pos = s.scalar(select(DevicePosition))
            assert (pos.target_id, pos.longitude, pos.speed, pos.altitude) == (
                CH[1],
                117.5,
                40.0,
                None,
            )
            assert pos.at == datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC)
            ch = s.scalar(select(Channel).where(Channel.channel_id == CH[1]))
            assert (ch.longitude, ch.latitude) == (117.5, 36.7)
    finally:
        db.close()


# --- the API, end to end ----------------------------------------------------------------


@dataclass
class Node:
    services: Services
    client: httpx.AsyncClient
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    settings = load_settings(
        server={"data_dir": tmp_path / "data"},
        sip={"port": 0, "password": "global-secret", "query_timeout_s": 5},
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
    )  # sip.subscribe keeps its default: catalog and alarm
    settings.server.data_dir.mkdir(parents=True)
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    component = sip_component(services)
    assert component is not None
    await component.start()
    app = create_app(services)
    tokens = {}
    with db.session() as s:
        county = create_org(s, "历下区", OrgKind.county, None, "370102")
        ent = create_org(s, "甲企业", OrgKind.enterprise, county, "370102001")
        other = create_org(s, "乙企业", OrgKind.enterprise, county, "370102003")
        s.add(Device(device_id=NVR, name="甲NVR", org_id=ent.id, sip_password="nvr-secret-1"))
        s.add(Device(device_id=OTHER_NVR, name="乙NVR", org_id=other.id))
        for name, role, org in (
            ("admin", Role.admin, None),
            ("ent", Role.enterprise, ent.id),
            ("other", Role.enterprise, other.id),
            ("county", Role.operator, county.id),
        ):
            user = User(username=name, password_hash=hash_password("x" * 12), role=role, org_id=org)
            s.add(user)
            s.flush()
            tokens[name] = create_token(app.state.jwt_secret, user.id, role.value, 3600)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    try:
        yield Node(services, client, tokens)
    finally:
        await client.aclose()
        await component.stop()
        db.close()


def _alarm_count(db: Database) -> int:
    with db.session() as s:
        return len(list(s.scalars(select(DeviceAlarm.id))))


async def test_device_alarms_api_scope_push_and_reset(node: Node) -> None:
    server = node.services.sip
    nvr = SimulatedNvr(nvr_config(server, device_id=NVR, password="nvr-secret-1", channels=3))
    await nvr.start(wait=True)
    try:
        db = node.services.db
        ch = nvr.channels[0]
        await wait_until(lambda: nvr.subscribers.has("Alarm"), 5, "alarm subscription")
        r = await node.client.get(f"/api/devices/{NVR}/subscriptions", headers=node.auth("ent"))
        assert {s["kind"]: s["state"] for s in r.json()} == {"Alarm": "active", "Catalog": "active"}
        assert (
            await node.client.get(f"/api/devices/{NVR}/subscriptions", headers=node.auth("other"))
        ).status_code == 404
        async with node.services.events.subscribe() as events:
            assert await nvr.send_alarm(ch, priority=1, method=5, alarm_type=2) == 200  # NOTIFY
            await wait_until(lambda: _alarm_count(db) == 1, 5, "alarm by NOTIFY stored")
            status = await nvr.send_alarm(None, priority=2, method=6, alarm_type=1, via="message")
            assert status == 200
            await wait_until(lambda: _alarm_count(db) == 2, 5, "alarm by MESSAGE stored")
            pushed = []
            while len(pushed) < 2:
                e = await events.get()
                if e.kind == "device.alarm":
                    pushed.append(e.data)
        assert {p["via"] for p in pushed} == {"notify", "message"}
        assert all(p["org_path"] and visible(p["org_path"], p) for p in pushed)
        await wait_until(lambda: nvr.state.alarm_responses, 5, "MESSAGE alarm acknowledged")

        h = node.auth("ent")
        r = await node.client.get("/api/device-alarms", headers=h)
        assert r.status_code == 200 and r.headers["X-Total-Count"] == "2"
        rows = r.json()
        assert [a["source_id"] for a in rows] == [NVR, ch]  # newest first
        assert rows[1]["channel_name"] and rows[1]["type_name"] == "运动目标检测 motion"
        assert rows[0]["method_name"] == "设备故障报警 device fault"
        for query, expect in (
            ({"method": 6}, [NVR]),
            ({"priority": 1}, [ch]),
            ({"source_id": ch}, [ch]),
            ({"device_id": NVR, "reset": "false"}, [NVR, ch]),
            ({"start": "2000-01-01T00:00:00Z", "end": "2000-01-02T00:00:00Z"}, []),
        ):
            r = await node.client.get("/api/device-alarms", params=query, headers=h)
            assert [a["source_id"] for a in r.json()] == expect, query
        r = await node.client.get("/api/device-alarms", params={"priority": 9}, headers=h)
        assert r.status_code == 422
        county = await node.client.get("/api/device-alarms", headers=node.auth("county"))
        assert county.headers["X-Total-Count"] == "2"  # the county sees its enterprises
        o = node.auth("other")
        assert (await node.client.get("/api/device-alarms", headers=o)).json() == []
        video = rows[1]["id"]
        assert (await node.client.get(f"/api/device-alarms/{video}", headers=o)).status_code == 404
        r = await node.client.post(f"/api/device-alarms/{video}/reset", headers=o)
        assert r.status_code == 404
        one = (await node.client.get(f"/api/device-alarms/{video}", headers=h)).json()
        assert "<AlarmType>2</AlarmType>" in one["raw"]

        r = await node.client.post(f"/api/device-alarms/{video}/reset", headers=h)
        assert r.status_code == 200 and r.json()["reset_at"]
        await wait_until(lambda: nvr.state.alarm_resets, 5, "ResetAlarm at the NVR")
        assert nvr.state.alarm_resets == [(ch, "5", "2")]
        r = await node.client.get("/api/device-alarms", params={"reset": "true"}, headers=h)
        assert [a["id"] for a in r.json()] == [video]

        assert await nvr.events.send_position(ch, 117.3, 36.6, via="message") == 200
        with_db = lambda: list(_positions(db))  # noqa: E731
        await wait_until(with_db, 5, "position stored")
        r = await node.client.get("/api/device-positions", params={"target_id": ch}, headers=h)
        assert [(p["target_id"], p["longitude"]) for p in r.json()] == [(ch, 117.3)]
        assert (await node.client.get("/api/device-positions", headers=o)).json() == []
    finally:
        await nvr.stop()
    await wait_until(lambda: server.registry.online(NVR) is None, 5, "offline")
    fault = rows[0]["id"]
    r = await node.client.post(f"/api/device-alarms/{fault}/reset", headers=node.auth("ent"))
    assert r.status_code == 409  # the device is offline: said so, nothing recorded
    r = await node.client.get(f"/api/device-alarms/{fault}", headers=node.auth("ent"))
    assert r.json()["reset_at"] is None


def _positions(db: Database) -> list[int]:
    with db.session() as s:
        return list(s.scalars(select(DevicePosition.id)))
