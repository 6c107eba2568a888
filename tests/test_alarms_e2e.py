"""Acceptance 1: AlarmEvent → DB → object store → a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import cv2
import numpy as np
from sqlalchemy import select

from storage.db import Database
from storage.models import Alarm, OutboxItem, OutboxState
from storage.objects import LocalObjectStore
from vms.alarm_component import AlarmComponent
from vms.alarms import codes
from vms.services import Services
from vms.uplink.receiver import Receiver
from vms.uplink.scheduler import device_id

from .alarms_support import ENTERPRISE_CODE, bus_jpeg, event, make_settings, seed_site, wait_until


def table4(receiver: Receiver) -> list:
    return [r for r in receiver.snapshot() if r.path == "/table4"]


async def test_alarm_and_clear_reach_the_receiver_with_valid_fields(tmp_path) -> None:
    multipart = Receiver().start()
    as_json = Receiver().start()
    settings = make_settings(
        tmp_path,
        [
            {"name": "province", "table4_url": multipart.url("table4"), "timeout_s": 5},
            {"name": "json", "table4_url": as_json.url("table4"), "format": "json"},
        ],
    )
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    component = AlarmComponent(services)
    await component.start()
    try:
        site = seed_site(db)
        camera = site.cameras[0]
        raised_at = datetime(2026, 11, 25, 3, 4, 5, tzinfo=UTC)
        alarm = event(camera, 1, alarm_type="9", at=raised_at)
        outcome = await services.alarms.handle(alarm)
        assert outcome.created and not outcome.image_spooled and not outcome.image_error
        assert outcome.image_key == f"alarms/2026/11/25/{alarm.alarm_id}-1.jpg"

        await wait_until(lambda: len(table4(multipart)) == 1, 10, "the alarm post")
        got = table4(multipart)[0]
        assert got.content_type.startswith("multipart/form-data")
        assert got.errors == []
        f = got.fields
        assert set(f) == {
            "ALARM_ID", "ALARM_TYPE", "ALARM_STATUS", "ALARM_TIME", "DEVICE_CODE", "VIDEO_CODE"
        }  # fmt: skip
        assert codes.is_uuid36(f["ALARM_ID"]) and f["ALARM_ID"] == alarm.alarm_id
        assert f["ALARM_STATUS"] == "1"
        assert codes.is_valid_code("enterprise", f["ALARM_TYPE"]) and f["ALARM_TYPE"] == "9"
        assert f["ALARM_TIME"] == "2026-11-25 11:04:05"  # Asia/Shanghai
        datetime.strptime(f["ALARM_TIME"], "%Y-%m-%d %H:%M:%S")
        assert f["VIDEO_CODE"] == camera and len(f["VIDEO_CODE"]) == 20 and camera.isdigit()
        assert f["VIDEO_CODE"][9:13] == "0132"
        # the camera's site is its own analysis device upward, unique to this install
        install = device_id(settings.server.data_dir)
        assert f["DEVICE_CODE"] == f"AI-{ENTERPRISE_CODE}-{install[:8]}"
        img = cv2.imdecode(np.frombuffer(got.image, np.uint8), cv2.IMREAD_COLOR)
        expected = cv2.imdecode(np.frombuffer(bus_jpeg(), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape == expected.shape
        assert services.objects.get(outcome.image_key) == got.image

        cleared_at = raised_at + timedelta(seconds=42)
        clear = event(camera, 0, alarm_id=alarm.alarm_id, alarm_type="9", at=cleared_at)
        out2 = await services.alarms.handle(clear)
        assert out2.created
        await wait_until(lambda: len(table4(multipart)) == 2, 10, "the clear post")
        got2 = table4(multipart)[1]
        assert got2.errors == []
        assert got2.fields["ALARM_ID"] == alarm.alarm_id
        assert got2.fields["ALARM_STATUS"] == "0"
        local = cleared_at.astimezone(ZoneInfo("Asia/Shanghai"))
        assert got2.fields["ALARM_TIME"] == local.strftime("%Y-%m-%d %H:%M:%S")
        assert cv2.imdecode(np.frombuffer(got2.image, np.uint8), cv2.IMREAD_COLOR) is not None

        # the JSON receiver got the same two records, image base64-decoded by the receiver
        await wait_until(lambda: len(table4(as_json)) == 2, 10, "json receiver")
        for r in table4(as_json):
            assert r.content_type.startswith("application/json") and r.errors == []
        assert [r.fields["ALARM_STATUS"] for r in table4(as_json)] == ["1", "0"]

        # a gas-station camera uses its own table (13 = extinguisher missing)
        station = await services.alarms.handle(
            event(site.station_cameras[0], 1, alarm_type="13", profile="gas_station")
        )
        await wait_until(lambda: len(table4(multipart)) == 3, 10, "gas-station post")
        assert table4(multipart)[2].fields["ALARM_TYPE"] == "13"

        def all_sent() -> bool:
            with db.session() as s:
                states = s.scalars(select(OutboxItem.state)).all()
            return len(states) == 6 and set(states) == {OutboxState.sent}

        await wait_until(all_sent, 10, "all six outbox rows marked sent")
        with db.session() as s:
            row = s.scalar(select(Alarm).where(Alarm.alarm_id == alarm.alarm_id))
            assert row is not None and not row.active
            assert row.cleared_at == cleared_at and row.raised_at == raised_at
            assert row.clear_image_key == out2.image_key
            # recording on: a clip reference to the camera, (device, channel)
            assert row.clip_key.startswith(f"{site.devices[camera]}/{camera}/")
        assert station.created
    finally:
        await component.stop()
        multipart.stop()
        as_json.stop()
        db.close()


async def test_replayed_events_are_not_duplicated(tmp_path, db_url) -> None:
    """Idempotent by ALARM_ID/status, on SQLite and PostgreSQL."""
    rx = [{"name": "p", "table4_url": "http://127.0.0.1:9/t4"}]
    settings = make_settings(tmp_path, rx, db_url=db_url)
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    component = AlarmComponent(services)  # not started: only the service is used
    try:
        site = seed_site(db)
        ev = event(site.cameras[1])
        assert (await services.alarms.handle(ev)).created
        assert not (await services.alarms.handle(ev)).created
        clear = event(site.cameras[1], 0, alarm_id=ev.alarm_id, at=ev.at + timedelta(seconds=1))
        assert (await services.alarms.handle(clear)).created
        assert not (await services.alarms.handle(clear)).created
        with db.session() as s:
            assert len(s.scalars(select(OutboxItem)).all()) == 2
    finally:
        assert component.alarms is services.alarms
        db.close()
