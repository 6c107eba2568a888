"""Camera linkage end to end: a real SIP server, the stream hub and a simulated NVR streaming
PS over RTP; a warning on a linked point yields a bookmark and a decodable JPEG snapshot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import select

from api.app import create_app
from api.security import create_token
from sip.channel_ref import ChannelRef
from storage.db import Database
from storage.models import Channel, Device, Role, User
from storage.objects import LocalObjectStore
from storage.sensor_models import RecordingBookmark, SensorCamera, SensorWarning
from vms.config import load_settings
from vms.ingest.points import load_points
from vms.services import Services
from vms.warning.component import WarningComponent

from .alarms_support import wait_until
from .media_support import nvr_rig
from .warning_support import SimClock, add_sensor, seed_tree

DEVICE = "34020000001180000007"
OFFLINE_DEVICE = "34020000001180000008"
OFFLINE_CAMERA = "34020000001310000099"


async def _next(bus: Any, kind: str, what: str = "") -> Any:
    async with asyncio.timeout(15):
        while True:
            event = await bus.get()
            if event.kind == kind and (not what or event.data.get("event") == what):
                return event


def _link(services: Services, sensor_pk: int, channels: list[str]) -> None:
    with services.db.session() as s:
        for cid in channels:
            channel = s.scalar(select(Channel).where(Channel.channel_id == cid))
            assert channel is not None
            s.add(SensorCamera(sensor_pk=sensor_pk, channel_pk=channel.id))


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    settings = load_settings(
        server={"data_dir": tmp_path / "data"},
        database={"url": db_url},
        sip={"host": "127.0.0.1", "port": 0, "password": "test-device-pass"},  # none by default
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
        warning={"snapshot_timeout_s": 3.0},
    )
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    yield Services(settings=settings, db=db, objects=LocalObjectStore(settings.objects_path))
    db.close()


async def test_warning_snapshots_its_linked_cameras(services: Services) -> None:
    tree = seed_tree(services.db)
    gas = {"h": 25.0, "hh": 50.0}
    pk = add_sensor(services.db, tree.enterprise_id, "GAS-L", "gas_combustible", gas, range_max=100)
    async with nvr_rig(services, DEVICE, channels=2) as rig:
        camera = rig.channels[0]
        refs = sorted([ChannelRef(DEVICE, camera), ChannelRef(OFFLINE_DEVICE, OFFLINE_CAMERA)])
        with services.db.session() as s:  # and a camera of an NVR that never registered
            device = Device(device_id=OFFLINE_DEVICE, name="dark", org_id=tree.enterprise_id)
            device.channels.append(Channel(channel_id=OFFLINE_CAMERA, name="dark"))
            s.add(device)
        _link(services, pk, [camera, OFFLINE_CAMERA])
        component = WarningComponent(services)
        await component.start()
        try:
            with services.db.session() as s:
                point = next(p for p in load_points(s) if p.pk == pk)
            assert sorted(point.cameras) == refs  # (device, channel)
            async with services.events.subscribe() as bus:
                started = time.monotonic()
                component.engine.observe(point, SimClock(time.time()).at(), 30.0)  # orange
                opened = await _next(bus, "warning.opened")
                assert sorted(opened.data["cameras"]) == sorted([camera, OFFLINE_CAMERA])

                def snapshot_stored() -> bool:
                    with services.db.session() as s:
                        return bool(
                            s.scalar(
                                select(RecordingBookmark.snapshot_key).where(
                                    RecordingBookmark.channel_id == camera
                                )
                            )
                        )

                await wait_until(snapshot_stored, 15, "the snapshot of the linked camera")
                latency = time.monotonic() - started
                print(f"linkage: reading → stored snapshot in {latency:.2f} s")
                updated = await _next(bus, "warning.updated", "snapshot")
                assert updated.data["channel_id"] == camera
                assert updated.data["snapshot_url"].startswith(
                    f"/api/warnings/{opened.data['warning_id']}/"
                )
            with services.db.session() as s:
                w = s.scalar(select(SensorWarning))
                marks = s.scalars(select(RecordingBookmark).order_by(RecordingBookmark.id)).all()
                assert {m.channel_id for m in marks} == {camera, OFFLINE_CAMERA}
                assert all(m.source == "warning" and m.ref == w.warning_id for m in marks)
                assert all(m.at == w.raised_at for m in marks)
                mark = next(m for m in marks if m.channel_id == camera)
            day = w.raised_at.strftime("%Y/%m/%d")
            assert (
                mark.snapshot_key
                == f"warnings/{day}/{w.warning_id}-{ChannelRef(DEVICE, camera).slug}.jpg"
            )
            jpeg = services.objects.get(mark.snapshot_key)
            img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and img.shape[0] > 100 and img.std() > 5  # a real picture

            # the camera that cannot be reached is a note in the history, not an error
            def noted() -> bool:
                with services.db.session() as s:
                    w = s.scalar(select(SensorWarning))
                    return any(e.kind == "camera" for e in w.events)

            await wait_until(noted, 15, "the unreachable camera's note")
            app = create_app(services)
            with services.db.session() as s:
                admin = User(username="admin", password_hash="x", role=Role.admin)
                s.add(admin)
                s.flush()
                token = create_token(app.state.jwt_secret, admin.id, "admin", 600)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test"
            ) as client:
                h = {"Authorization": f"Bearer {token}"}
                detail = (await client.get(f"/api/warnings/{w.warning_id}", headers=h)).json()
                (note,) = [e for e in detail["events"] if e["kind"] == "camera"]
                assert OFFLINE_CAMERA in note["note"] and "no snapshot" in note["note"]
                shots = {b["channel_id"]: b["snapshot_url"] for b in detail["bookmarks"]}
                assert shots[OFFLINE_CAMERA] == ""
                r = await client.get(shots[camera], headers=h)
                assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
                assert r.content == jpeg
        finally:
            await component.stop()
