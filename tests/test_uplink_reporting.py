"""What goes upward and when (issue 17): each site its own analysis device; Table 2 once
per local calendar day at ``uplink.table2_at`` however late the last one was, Table 3 on
the clock from local midnight, and the ALARM_IMAGE cap read as 4,000,000 bytes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import func, select

from storage.db import Database
from storage.models import Organisation, OrgKind, OutboxItem
from storage.objects import LocalObjectStore
from vms.alarms import images
from vms.config import ConfigError, load_settings
from vms.services import Services
from vms.uplink import tables
from vms.uplink.identity import site_identity
from vms.uplink.receiver import validate_table4
from vms.uplink.scheduler import UplinkScheduler
from vms.uplink.timing import last_table2_point, next_slot, next_table2_point, parse_clock

from .alarms_support import make_settings, seed_site

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI).astimezone(UTC)


def test_clock_times_are_checked() -> None:
    assert parse_clock("00:10") == time(0, 10)
    assert parse_clock("23:59:30") == time(23, 59, 30)
    for bad in ("24:00", "7:00", "00:60", "noon", "00:10:00:00", ""):
        with pytest.raises(ValueError):
            parse_clock(bad)


def test_a_bad_table2_time_stops_start_up_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="uplink.table2_at"):
        load_settings(server={"data_dir": tmp_path}, uplink={"table2_at": "25:00"})


def test_table3_slots_are_on_the_local_clock() -> None:
    assert next_slot(local(2026, 12, 3, 10, 3, 27), 600, SHANGHAI) == local(2026, 12, 3, 10, 10)
    assert next_slot(local(2026, 12, 3, 10, 10), 600, SHANGHAI) == local(2026, 12, 3, 10, 20)
    assert next_slot(local(2026, 12, 3, 23, 55), 600, SHANGHAI) == local(2026, 12, 4, 0, 0)
    # a period that does not divide the day starts again at midnight
    assert next_slot(local(2026, 12, 3, 21, 30), 7 * 3600, SHANGHAI) == local(2026, 12, 4, 0, 0)


def test_table2_points_are_the_daily_time() -> None:
    at = time(0, 10)
    early = local(2026, 12, 3, 0, 5)
    assert last_table2_point(early, at, SHANGHAI) == local(2026, 12, 2, 0, 10)
    assert next_table2_point(early, at, SHANGHAI) == local(2026, 12, 3, 0, 10)
    on_time = local(2026, 12, 3, 0, 10)
    assert last_table2_point(on_time, at, SHANGHAI) == on_time
    assert next_table2_point(on_time, at, SHANGHAI) == local(2026, 12, 4, 0, 10)


def _scheduler(tmp_path: Path) -> tuple[UplinkScheduler, Database]:
    rx = [
        {"name": "p", "table2_url": "http://127.0.0.1:9/t2", "table3_url": "http://127.0.0.1:9/t3"}
    ]
    settings = make_settings(tmp_path, rx, table2_at="00:10")
    settings.server.timezone = "Asia/Shanghai"
    db = Database(settings.database_url)
    db.open()
    seed_site(db)
    return UplinkScheduler(Services(settings, db, LocalObjectStore(tmp_path / "o"))), db


def _send_table2(scheduler: UplinkScheduler, db: Database, now: datetime) -> int:
    """Table 2 as the scheduler decides at ``now``; a row it writes is dated ``now``."""
    with db.session() as s:
        before = s.scalar(select(func.max(OutboxItem.id))) or 0
        count = scheduler.enqueue_table2(s, now=now)
        s.flush()
        for row in s.scalars(select(OutboxItem).where(OutboxItem.id > before)):
            row.created_at = now
    return count


def test_table2_goes_out_every_calendar_day_however_late_the_last_one(tmp_path: Path) -> None:
    scheduler, db = _scheduler(tmp_path)
    try:
        sites = 3  # seed_site: two enterprises and a gas station, one Table 2 each
        # late on day 1 (the node was busy, or started then): sent at once
        assert _send_table2(scheduler, db, local(2026, 12, 1, 0, 14, 30)) == sites
        assert _send_table2(scheduler, db, local(2026, 12, 1, 18, 0)) == 0  # unchanged
        # day 2 at 00:10 is under 24 h after it: a period would skip the day, the clock not
        assert _send_table2(scheduler, db, local(2026, 12, 2, 0, 10)) == sites
        assert _send_table2(scheduler, db, local(2026, 12, 2, 23, 59)) == 0
        # the node was down across day 3's 00:10: sent when it comes back that day
        assert _send_table2(scheduler, db, local(2026, 12, 3, 9, 0)) == sites
        # and the scheduler wakes for the next daily point, not only for Table 3 slots
        wake, for_table3 = scheduler.next_wake(local(2026, 12, 4, 0, 4, 59))
        assert wake == local(2026, 12, 4, 0, 10) and for_table3  # a slot and the point agree
        scheduler.settings.uplink.table2_at = "00:07"
        wake, for_table3 = scheduler.next_wake(local(2026, 12, 4, 0, 4, 59))
        assert wake == local(2026, 12, 4, 0, 7) and not for_table3
        with db.session() as s:
            rows = s.scalars(select(OutboxItem).where(OutboxItem.table == tables.TABLE2)).all()
            assert len(rows) == 3 * sites
    finally:
        db.close()


def test_alarm_images_fit_4_000_000_bytes() -> None:
    noise = np.random.default_rng(1).integers(0, 256, (2160, 3840, 3), dtype=np.uint8)
    big = images.encode_jpeg(noise, 64 * 1024 * 1024)  # an honest 4K noise JPEG: > 4 MB
    assert 4_000_000 < len(big)
    prepared = images.prepare(big)
    assert prepared.error == "" and len(prepared.data) <= 4_000_000
    assert images.decode(prepared.data).shape[2] == 3
    smaller = images.prepare(big, max_bytes=1_000_000).data  # uplink.image_max_bytes
    assert len(smaller) <= 1_000_000
    # the reference receiver refuses what a strict province would
    fields = {tables.ALARM_TYPE: "9"}
    errors = validate_table4(fields, b"\xff\xd8\xff" + b"x" * 4_000_000)
    assert "ALARM_IMAGE over 4,000,000 bytes" in errors


def test_each_site_is_its_own_analysis_device_unique_to_the_install() -> None:
    ent = Organisation(id=7, kind=OrgKind.enterprise, name="e", code="370102001")
    gas = Organisation(id=8, kind=OrgKind.gas_station, name="g", code="370102002")
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    a, b = site_identity(one, ent), site_identity(one, gas)
    assert (a.company_code, b.company_code) == ("370102001", "370102002")
    assert a.device_code == f"AI-370102001-{one[:8]}" and a.device_code != b.device_code
    assert a.device_id != b.device_id and site_identity(one, ent) == a  # stable
    other_install = site_identity(two, ent)
    assert other_install.device_code != a.device_code and other_install.device_id != a.device_id
    # a node serving one site may set the codes; a site's own DEVICE_CODE wins over both
    assert site_identity(one, ent, "AI-ONE", "999999999").device_code == "AI-ONE"
    assert site_identity(one, ent, "AI-ONE", "999999999").company_code == "999999999"
    ent.uplink_device_code = "CHEM-07"
    assert site_identity(one, ent, "AI-ONE").device_code == "CHEM-07"
    uncoded = Organisation(id=9, kind=OrgKind.enterprise, name="u", code="")
    assert site_identity(one, uncoded).company_code == ""  # left out of Tables 2/3, logged
    assert len(site_identity(one, uncoded).device_code) <= 36


def test_an_over_long_or_spaced_device_code_stops_start_up(tmp_path: Path) -> None:
    for bad in ("x" * 37, "two words"):
        with pytest.raises(ConfigError, match="analyzers.device_code"):
            load_settings(server={"data_dir": tmp_path}, analyzers={"device_code": bad})
