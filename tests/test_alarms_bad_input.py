"""Acceptance 3: bad input loses nothing and says clearly what was wrong."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import Alarm, OutboxItem
from storage.objects import LocalObjectStore, S3ObjectStore
from vms.alarm_component import AlarmComponent
from vms.alarms import images
from vms.alarms.service import AlarmRejected
from vms.cli import main as vms_main
from vms.config import ConfigError, load_settings
from vms.services import Services
from vms.uplink.receiver import Receiver

from . import s3server
from .alarms_support import bus_jpeg, event, make_settings, seed_site, small_jpeg, wait_until


def decodes(data: bytes) -> bool:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


# --- pictures (pure) --------------------------------------------------------------------


def test_corrupt_snapshot_gets_placeholder_with_reason() -> None:
    corrupt = bus_jpeg()[:200] + b"\x00" * 500  # JPEG header, garbage after
    prepared = images.prepare(corrupt)
    assert prepared.error.startswith("corrupt jpeg image")
    assert decodes(prepared.data) and prepared.data != corrupt


def test_corrupt_snapshot_falls_back_to_raw_frame() -> None:
    prepared = images.prepare(b"\xff\xd8\xff" + b"junk" * 10, raw=small_jpeg())
    assert "raw frame used" in prepared.error and prepared.data == small_jpeg()


def test_unsupported_format_is_named() -> None:
    prepared = images.prepare(b"GIF89a" + b"\x00" * 100)
    assert "only JPG, PNG, BMP" in prepared.error and decodes(prepared.data)


def test_png_and_bmp_become_jpeg_and_big_images_shrink_under_4mb() -> None:
    img = cv2.imdecode(np.frombuffer(bus_jpeg(), np.uint8), cv2.IMREAD_COLOR)
    for ext in (".png", ".bmp"):
        ok, buf = cv2.imencode(ext, img)
        out = images.normalise(buf.tobytes())
        assert images.sniff_format(out) == "jpeg" and decodes(out)
    noise = np.random.default_rng(1).integers(0, 255, (1800, 1800, 3), dtype=np.uint8)
    ok, big = cv2.imencode(".png", noise)
    assert len(big) > images.MAX_IMAGE_BYTES
    out = images.normalise(big.tobytes())
    assert len(out) <= images.MAX_IMAGE_BYTES and decodes(out)
    assert images.normalise(bus_jpeg()) == bus_jpeg()  # small JPEG kept byte for byte


# --- the service ---------------------------------------------------------------------------


@pytest.fixture
def node(tmp_path: Path):
    settings = make_settings(tmp_path)
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    AlarmComponent(services)
    yield services, seed_site(db)
    db.close()


async def test_corrupt_snapshot_still_commits_alarm(node) -> None:
    services, site = node
    ev = event(site.cameras[0], snapshot=b"\xff\xd8\xff\xe0" + b"\x13" * 3000)
    outcome = await services.alarms.handle(ev)
    assert outcome.created and outcome.image_error.startswith("corrupt jpeg")
    assert decodes(services.objects.get(outcome.image_key))
    with services.db.session() as s:
        alarm = s.scalar(select(Alarm).where(Alarm.alarm_id == ev.alarm_id))
        assert alarm.detail["image_error"].startswith("corrupt jpeg")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"alarm_id": "not-a-uuid"}, "ALARM_ID must be a 36-character uuid"),
        ({"alarm_type": "13"}, "not in the enterprise code table"),
        ({"alarm_type": "1", "profile": "gas_station"}, "not in the gas_station code table"),
        ({"channel": "3701020010132001"}, "VIDEO_CODE must be 20 digits"),
        ({"at": datetime(2026, 1, 1)}, "timezone-aware"),
    ],
)
async def test_invalid_events_are_refused_with_a_clear_reason(node, change, message) -> None:
    services, site = node
    kwargs = {k: v for k, v in change.items() if k != "channel"}
    ev = event(change.get("channel", site.cameras[0]), **kwargs)
    with pytest.raises(AlarmRejected, match=message):
        await services.alarms.handle(ev)
    with services.db.session() as s:
        assert s.scalars(select(Alarm)).all() == []


async def test_profile_of_the_camera_decides_the_table(node) -> None:
    services, site = node
    # code 10 exists in both tables but means different things: the camera's site decides
    with pytest.raises(AlarmRejected, match="belongs to a gas_station site"):
        await services.alarms.handle(event(site.station_cameras[0], alarm_type="10"))
    with pytest.raises(AlarmRejected, match="clear for unknown ALARM_ID"):
        await services.alarms.handle(event(site.cameras[0], status=0))


# --- object store down -------------------------------------------------------------------


async def test_store_down_commits_alarm_and_posts_image_later(tmp_path, monkeypatch) -> None:
    receiver = Receiver().start()
    settings = make_settings(tmp_path, [{"name": "p", "table4_url": receiver.url("table4")}])
    db = Database(settings.database_url)
    db.open()
    port = s3server.free_port()  # nothing listens there yet: the store is down
    store = S3ObjectStore(f"127.0.0.1:{port}", "k", "s", "alarms")
    services = Services(settings, db, store)
    component = AlarmComponent(services, spool_retry_s=0.3)
    await component.start()
    s3 = s3server.S3Server()
    try:
        site = seed_site(db)
        ev = event(site.cameras[0], at=datetime.now(UTC) - timedelta(seconds=1))
        outcome = await services.alarms.handle(ev)
        assert outcome.created and outcome.image_spooled
        with db.session() as s:  # committed although the store is down
            assert s.scalar(select(Alarm).where(Alarm.alarm_id == ev.alarm_id)) is not None
            assert len(s.scalars(select(OutboxItem)).all()) == 1
        assert component.alarms.spool.pending() == [outcome.image_key]
        await asyncio.sleep(0.5)
        assert receiver.snapshot() == []  # the sender waits for the picture

        monkeypatch.setattr(s3server, "free_port", lambda: port)
        await asyncio.to_thread(s3.start)  # the store comes back
        await wait_until(lambda: len(receiver.snapshot()) == 1, 20, "post after store recovery")
        got = receiver.snapshot()[0]
        assert got.errors == [] and got.fields["ALARM_ID"] == ev.alarm_id
        assert got.image == bus_jpeg() == store.get(outcome.image_key)
        assert component.alarms.spool.pending() == []
    finally:
        await component.stop()
        s3.stop()
        receiver.stop()
        db.close()


# --- configuration -------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://province/t4", "province/t4", "http://", "not a url"])
def test_invalid_receiver_url_stops_start_up_with_one_line(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(uplink={"receivers": [{"name": "p", "table4_url": url}]})
    message = str(info.value)
    assert "\n" not in message and "uplink.receivers.0.table4_url" in message


def test_vms_serve_refuses_an_invalid_receiver_url(tmp_path, monkeypatch, capsys) -> None:
    cfg = tmp_path / "vms.toml"
    cfg.write_text('[[uplink.receivers]]\nname = "province"\ntable4_url = "htp:/bad"\n')
    monkeypatch.setenv("VMS_CONFIG", str(cfg))
    assert vms_main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "uplink.receivers.0.table4_url" in err


def test_invalid_webhook_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="uplink.webhooks"):
        load_settings(uplink={"webhooks": ["mailto:x@y"]})


# --- database down ---------------------------------------------------------------------


class OutageDatabase(Database):
    """The real database, with an outage switch in front of it (as if the server were down)."""

    down = False

    async def run(self, fn):
        if self.down:
            from sqlalchemy.exc import OperationalError

            raise OperationalError("COMMIT", {}, ConnectionRefusedError("database is down"))
        return await super().run(fn)


async def test_database_down_journals_events_and_commits_them_later(tmp_path, monkeypatch) -> None:
    from vms.alarms import service as service_module

    monkeypatch.setattr(service_module, "COMMIT_RETRIES_S", (0.01,))
    receiver = Receiver().start()
    settings = make_settings(tmp_path, [{"name": "p", "table4_url": receiver.url("table4")}])
    db = OutageDatabase(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    component = AlarmComponent(services, spool_retry_s=0.2)
    await component.start()
    try:
        site = seed_site(db)
        db.down = True
        raised = event(site.cameras[0])
        cleared = event(
            site.cameras[0], 0, alarm_id=raised.alarm_id, at=raised.at + timedelta(seconds=30)
        )
        first = await services.alarms.handle(raised)
        second = await services.alarms.handle(cleared)
        assert first.journaled and second.journaled and not first.created
        assert len(services.alarms.journal.pending()) == 2
        assert services.objects.exists(first.image_key)  # the picture is stored already
        await asyncio.sleep(0.5)
        assert receiver.snapshot() == []

        db.down = False  # the database is back: the journal replays in order
        await wait_until(lambda: len(receiver.snapshot()) == 2, 10, "journaled records posted")
        got = [(r.fields["ALARM_ID"], r.fields["ALARM_STATUS"]) for r in receiver.snapshot()]
        assert got == [(raised.alarm_id, "1"), (raised.alarm_id, "0")]
        assert services.alarms.journal.pending() == []
        with db.session() as s:
            alarm = s.scalar(select(Alarm).where(Alarm.alarm_id == raised.alarm_id))
            assert not alarm.active and alarm.clear_image_key == second.image_key
    finally:
        await component.stop()
        receiver.stop()
        db.close()
