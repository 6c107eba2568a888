"""The SIP service inside the application: database store, events, the operator API with
organisation scoping, the demo NVRs and the ``vms sim-device`` command."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.security import create_token
from simdevice.nvr import SimulatedNvr
from storage.db import Database
from storage.models import Channel, Device, DeviceEvent, OrgKind, Role, User
from storage.objects import LocalObjectStore
from storage.org_tree import create_org
from storage.passwords import hash_password
from vms.config import load_settings
from vms.services import Services
from vms.sip_component import SipComponent, sip_component

from .sip_support import nvr_config, wait_until

NVR = "37010200001180000901"
OTHER_NVR = "37010200001180000902"


@dataclass
class Node:
    services: Services
    component: SipComponent
    client: httpx.AsyncClient
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def _seed(db: Database, secret: str) -> dict[str, str]:
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
        ):
            user = User(username=name, password_hash=hash_password("x" * 12), role=role, org_id=org)
            s.add(user)
            s.flush()
            tokens[name] = create_token(secret, user.id, role.value, 3600)
    return tokens


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    settings = load_settings(
        server={"data_dir": tmp_path / "data"},
        sip={"port": 0, "password": "global-secret", "query_timeout_s": 5, "catalog_timeout_s": 5},
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
        demo={"devices": 2, "channels": 3},
    )
    settings.server.data_dir.mkdir(parents=True)
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    component = sip_component(services)
    assert component is not None and services.sip is component.server
    await component.start()
    app = create_app(services)
    tokens = _seed(db, app.state.jwt_secret)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    try:
        yield Node(services, component, client, tokens)
    finally:
        await client.aclose()
        await component.stop()
        db.close()


def _channels(db: Database, device_id: str) -> list[str]:
    with db.session() as s:
        return sorted(
            s.scalars(select(Channel.channel_id).join(Device).where(Device.device_id == device_id))
        )


async def test_device_goes_online_with_channels_events_and_api(node: Node) -> None:
    server = node.component.server
    cfg = nvr_config(server, device_id=NVR, password="nvr-secret-1", channels=5)
    async with node.services.events.subscribe() as events:
        async with _nvr(cfg) as nvr:
            await wait_until(lambda: len(_channels(node.services.db, NVR)) == 5, 5, "catalog")
            with node.services.db.session() as s:
                dev = s.scalar(select(Device).where(Device.device_id == NVR))
                assert dev.online and dev.transport == "udp" and dev.registered_at is not None
                assert dev.channel_count == 5
            h = node.auth("ent")
            r = await node.client.post(f"/api/sip/devices/{NVR}/catalog", headers=h)
            assert r.status_code == 200 and r.json() == {
                "device_id": NVR,
                "channels": 5,
                "sum_num": 5,
                "complete": True,
            }
            r = await node.client.get(f"/api/sip/devices/{NVR}/info", headers=h)
            assert r.status_code == 200 and r.json()["manufacturer"] == "VMS-Sim"
            r = await node.client.get(f"/api/sip/devices/{NVR}/status", headers=h)
            assert r.json()["online"] == "ONLINE"
            ch = nvr.channels[0]
            r = await node.client.get(
                f"/api/sip/devices/{NVR}/channels/{ch}/records",
                params={"start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00Z"},
                headers=h,
            )
            assert r.status_code == 200 and r.json()["ranges"] == []
            from datetime import UTC, datetime, timedelta

            now = datetime.now(UTC)
            r = await node.client.get(
                f"/api/sip/devices/{NVR}/channels/{ch}/records",
                params={"start": (now - timedelta(hours=2)).isoformat(), "end": now.isoformat()},
                headers=h,
            )
            body = r.json()
            assert len(body["ranges"]) == 1 and len(body["files"]) >= 2
            for payload, cmd in (
                ({"action": "move", "direction": "up", "speed": 64}, "A50F01084040003D"),
                ({"action": "zoom", "zoom": "in", "zoom_speed": 1}, "A50F0110000010D5"),
                ({"action": "preset", "preset": 3}, "A50F01820003003A"),
                ({"action": "stop"}, "A50F0100000000B5"),
            ):
                r = await node.client.post(
                    f"/api/sip/devices/{NVR}/channels/{ch}/ptz", json=payload, headers=h
                )
                assert r.status_code == 200 and r.json() == {"command": cmd}
            assert [c for _, c in nvr.state.ptz_commands] == [
                "A50F01084040003D",
                "A50F0110000010D5",
                "A50F01820003003A",
                "A50F0100000000B5",
            ]
            r = await node.client.post(
                f"/api/sip/devices/{NVR}/channels/{ch}/ptz", json={"action": "move"}, headers=h
            )
            assert r.status_code == 422
            # scoping: another enterprise neither sees nor drives this NVR
            o = node.auth("other")
            assert (
                await node.client.get(f"/api/sip/devices/{NVR}/info", headers=o)
            ).status_code == 404
            r = await node.client.post(
                f"/api/sip/devices/{NVR}/channels/{ch}/ptz", json={"action": "stop"}, headers=o
            )
            assert r.status_code == 404
            r = await node.client.get(f"/api/sip/devices/{OTHER_NVR}/info", headers=o)
            assert r.status_code == 409  # its own device, but offline
            r = await node.client.post(
                f"/api/sip/devices/{NVR}/control",
                json={"action": "record_start", "channel_id": ch},
                headers=node.auth("admin"),
            )
            assert r.status_code == 200
            assert (ch, "RecordCmd", "Record") in nvr.state.controls
            r = await node.client.post(
                f"/api/sip/devices/{NVR}/control", json={"action": "reboot"}, headers=h
            )
            assert r.status_code == 403  # an enterprise user may not reboot the NVR
            assert await nvr.send_alarm(ch) == 200
            await wait_until(lambda: _events(node.services.db, "alarm"), 3, "alarm stored")
        await wait_until(lambda: _events(node.services.db, "offline"), 3, "offline stored")
        # the event is published just after its row is stored: read until it arrives
        kinds: list[str] = []
        async with asyncio.timeout(3):
            while "device.offline" not in kinds:
                kinds.append((await events.get()).kind)
    assert {"device.online", "catalog.updated", "device.alarm", "device.offline"} <= set(kinds)
    assert _events(node.services.db, "online")


def _events(db: Database, kind: str) -> list[dict]:
    with db.session() as s:
        return list(s.scalars(select(DeviceEvent.detail).where(DeviceEvent.kind == kind)))


class _nvr:
    def __init__(self, cfg) -> None:
        self.nvr = SimulatedNvr(cfg)

    async def __aenter__(self) -> SimulatedNvr:
        await self.nvr.start(wait=True)
        return self.nvr

    async def __aexit__(self, *exc: object) -> None:
        await self.nvr.stop()


async def test_demo_nvrs_register_with_demo_ids(node: Node) -> None:
    from vms.demo import ENTERPRISE_CODE, demo_channel_id, demo_components, demo_device_id

    factory = demo_components()[0]  # the NVRs (the sensors come second)
    demo = factory(node.services)
    await demo.start()
    try:
        ids = [demo_device_id(1), demo_device_id(2)]
        await wait_until(lambda: all(i in node.component.server.registrations for i in ids), 5)
        await wait_until(lambda: len(_channels(node.services.db, ids[1])) == 3, 5, "catalog")
        assert _channels(node.services.db, ids[1]) == [
            demo_channel_id(ENTERPRISE_CODE, n) for n in (4, 5, 6)
        ]
    finally:
        await demo.stop()


async def test_sim_device_command_registers_nvrs(node: Node, tmp_path: Path) -> None:
    server = node.component.server
    env = dict(os.environ, VMS_CONFIG=str(tmp_path / "absent.toml"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vms",
        "sim-device",
        "--count",
        "3",
        "--channels",
        "2",
        "--server-port",
        str(server.port),
        "--password",
        "global-secret",
        "--first-id",
        "37010200001180000101",
        "--transport",
        "tcp",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ids = ["37010200001180000101", "37010200001180000102", "37010200001180000103"]
        await wait_until(lambda: all(i in server.registrations for i in ids), 30, "sim NVRs")
        assert all(server.registrations[i].peer.transport == "TCP" for i in ids)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()[-1500:]
    await wait_until(lambda: not any(r.online for r in server.registrations.values()), 5)


async def test_configured_upstream_registers_and_serves_our_catalog(tmp_path: Path) -> None:
    from sip.store import MemoryDeviceStore

    from .sip_support import running_server

    superior_store = MemoryDeviceStore({"34020000002000000001": "up-secret"})
    async with running_server(
        superior_store,
        server_id="44010000002000000001",
        domain="4401000000",
        auto_create_devices=False,
    ) as superior:
        settings = load_settings(
            server={"data_dir": tmp_path / "d"},
            sip={
                "port": 0,
                "upstreams": [
                    {
                        "server_id": "44010000002000000001",
                        "domain": "4401000000",
                        "host": "127.0.0.1",
                        "port": superior.port,
                        "password": "up-secret",
                        "keepalive_interval_s": 0.2,
                    }
                ],
            },
        )
        settings.server.data_dir.mkdir(parents=True)
        db = Database(settings.database_url)
        db.open()
        services = Services(settings, db, LocalObjectStore(settings.objects_path))
        _seed(db, "test-secret-not-for-production-0123456789")
        component = SipComponent(services)
        await component.start()
        try:
            cfg = nvr_config(component.server, device_id=NVR, password="nvr-secret-1", channels=2)
            async with _nvr(cfg) as nvr:
                await component.server.catalog(NVR)
                await wait_until(lambda: superior_store.devices["34020000002000000001"].online, 5)
                result = await superior.catalog("34020000002000000001")
                channels = [i.device_id for i in result.items if i.is_channel]  # and the tree
                assert sorted(channels) == sorted(nvr.channels)
        finally:
            await component.stop()
            db.close()
        assert not superior_store.devices["34020000002000000001"].online  # unregistered
