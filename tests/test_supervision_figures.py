"""Daily offline figures from real event histories, on SQLite and PostgreSQL: across
midnight, a point that never reported, a camera whose device was offline for 3 days, a
channel switched OFF in the catalog, suspended and stale subjects, enterprise rates."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import Channel, Device, DeviceEvent, DeviceStatus
from storage.sensor_models import OfflineDaily, Sensor
from vms.supervision.channels import CHANNEL_OFF, CHANNEL_ON
from vms.supervision.figures import refresh_days
from vms.supervision.rates import period_figures
from vms.supervision.service import Supervision

from .supervision_support import (
    CREATED,
    Tree,
    all_online_since,
    device_events,
    heard,
    local,
    make_settings,
    open_db,
    seed_tree,
    sensor_events,
)

H = 3600.0
DAY = 86400.0


@pytest.fixture
def rig(tmp_path: Path, db_url: str) -> Iterator[tuple[Database, Tree, Supervision]]:
    settings = make_settings(tmp_path, db_url)
    db = open_db(settings)
    tree = seed_tree(db)
    try:
        yield db, tree, Supervision(settings, db)
    finally:
        db.close()


def figures(db: Database, day: date) -> dict[tuple[str, str], tuple[float, float, float]]:
    with db.session() as s:
        rows = s.scalars(select(OfflineDaily).where(OfflineDaily.day == day))
        return {
            (r.subject, r.subject_id): (r.offline_s, r.longest_offline_s, r.monitored_s)
            for r in rows
        }


async def test_offline_seconds_across_midnight(rig: tuple[Database, Tree, Supervision]) -> None:
    db, tree, sup = rig
    gt101 = str(tree.sensors["GT-101"])
    sensor_events(
        db,
        tree.sensors["GT-101"],
        ("online", local(2024, 3, 4, 8)),  # first report ever: offline before
        ("offline", local(2024, 3, 4, 22)),
        ("online", local(2024, 3, 5, 2)),
    )
    now = local(2024, 3, 6, 1)
    heard(db, tree, now - timedelta(seconds=30))
    await sup.refresh(now)
    day1, day2, day3 = (figures(db, date(2024, 3, d)) for d in (4, 5, 6))
    assert day1[("sensor", gt101)] == (10 * H, 8 * H, DAY)
    assert day2[("sensor", gt101)] == (2 * H, 2 * H, DAY)
    assert day3[("sensor", gt101)] == (0.0, 0.0, H)  # today so far: one hour watched


async def test_a_point_that_never_reported_is_offline(
    rig: tuple[Database, Tree, Supervision],
) -> None:
    db, tree, sup = rig
    now = local(2024, 3, 5, 12)
    await sup.refresh(now)
    gt102 = ("sensor", str(tree.sensors["GT-102"]))
    assert figures(db, date(2024, 3, 4))[gt102] == (DAY, DAY, DAY)
    assert figures(db, date(2024, 3, 5))[gt102] == (12 * H, 12 * H, 12 * H)
    # a point added at noon counts from noon
    with db.session() as s:
        s.add(
            Sensor(org_id=tree.e1, tag="GT-103", kind="gas_toxic", created_at=local(2024, 3, 5, 6))
        )
    await sup.refresh(now)
    with db.session() as s:
        pk = s.scalar(select(Sensor.id).where(Sensor.tag == "GT-103"))
    assert figures(db, date(2024, 3, 5))[("sensor", str(pk))] == (6 * H, 6 * H, 6 * H)
    assert ("sensor", str(pk)) not in figures(db, date(2024, 3, 4))


async def test_camera_whose_device_went_offline_for_three_days(
    rig: tuple[Database, Tree, Supervision],
) -> None:
    db, tree, sup = rig
    device_events(
        db,
        tree.devices["e1"],
        ("online", local(2024, 3, 1)),
        ("offline", local(2024, 3, 4, 12)),
        ("online", local(2024, 3, 7, 12)),
    )
    device_events(db, tree.devices["e3"], ("online", local(2024, 3, 1)))
    now = local(2024, 3, 8, 1)
    heard(db, tree, now - timedelta(seconds=10))
    with db.session() as s:
        refresh_days(s, date(2024, 3, 3), date(2024, 3, 8), now, sup.tz, sup.limits)
    expected = {3: 0.0, 4: 12 * H, 5: DAY, 6: DAY, 7: 12 * H, 8: 0.0}
    for cam in tree.cameras["e1"]:
        got = {d: figures(db, date(2024, 3, d))[("camera", cam)][0] for d in expected}
        assert got == expected, cam
        assert figures(db, date(2024, 3, 5))[("camera", cam)][1] == DAY
    total = sum(expected.values())
    assert total == 3 * DAY
    e3_cam = ("camera", tree.cameras["e3"][0])
    assert all(figures(db, date(2024, 3, d))[e3_cam][0] == 0 for d in expected)


async def test_a_channel_switched_off_in_the_catalog_is_offline(
    rig: tuple[Database, Tree, Supervision],
) -> None:
    db, tree, sup = rig
    cam1, cam2 = tree.cameras["e1"]
    device_events(db, tree.devices["e1"], ("online", local(2024, 3, 1)))
    heard(db, tree, local(2024, 3, 4, 0))
    assert await sup.sync_channels(local(2024, 3, 4, 1)) == 0  # all ON: nothing to record

    def set_status(code: str, status: str) -> None:
        with db.session() as s:
            ch = s.get(Channel, tree.channel_pks[code])
            assert ch is not None
            ch.status = status

    set_status(cam1, "OFF")
    assert await sup.sync_channels(local(2024, 3, 4, 10)) == 1
    assert await sup.sync_channels(local(2024, 3, 4, 11)) == 0  # recorded once
    set_status(cam1, "ON")
    assert await sup.sync_channels(local(2024, 3, 4, 16)) == 1
    with db.session() as s:
        kinds = [
            (e.kind, e.at, e.detail["channel_id"])
            for e in s.scalars(
                select(DeviceEvent)
                .where(DeviceEvent.kind.in_((CHANNEL_OFF, CHANNEL_ON)))
                .order_by(DeviceEvent.id)
            )
        ]
    assert kinds == [
        (CHANNEL_OFF, local(2024, 3, 4, 10), cam1),
        (CHANNEL_ON, local(2024, 3, 4, 16), cam1),
    ]
    now = local(2024, 3, 5, 0, 30)
    heard(db, tree, now)
    await sup.refresh(now)
    day = figures(db, date(2024, 3, 4))
    assert day[("camera", cam1)] == (6 * H, 6 * H, DAY)
    assert day[("camera", cam2)] == (0.0, 0.0, DAY)
    # a fresh tracker (a restart) knows the recorded states and writes nothing new
    fresh = Supervision(sup.settings, db)
    assert await fresh.sync_channels(local(2024, 3, 5, 1)) == 0


async def test_a_channel_first_seen_off_is_dated_by_its_row(
    rig: tuple[Database, Tree, Supervision],
) -> None:
    db, tree, sup = rig
    cam = tree.cameras["e3"][0]
    with db.session() as s:
        ch = s.get(Channel, tree.channel_pks[cam])
        assert ch is not None
        ch.status = "OFFLINE"
        ch.updated_at = local(2024, 3, 4, 18)
    device_events(db, tree.devices["e3"], ("online", local(2024, 3, 1)))
    now = local(2024, 3, 5, 0, 0)
    heard(db, tree, now)
    await sup.run_due(now)
    assert figures(db, date(2024, 3, 4))[("camera", cam)] == (6 * H, 6 * H, DAY)


async def test_suspended_and_stale_subjects(rig: tuple[Database, Tree, Supervision]) -> None:
    db, tree, sup = rig
    all_online_since(db, tree, local(2024, 3, 1))
    now = local(2024, 3, 5, 0, 0)
    heard(db, tree, now)
    with db.session() as s:
        sensor = s.get(Sensor, tree.sensors["GT-102"])
        device = s.get(Device, tree.devices["e3"])
        stale = s.get(Device, tree.devices["e1"])
        assert sensor is not None and device is not None and stale is not None
        sensor.enabled = False  # declared suspended: not watched
        device.status = DeviceStatus.disabled
        # online per its events, but no keepalive since 10:00: the offline was never written
        stale.keepalive_at = stale.registered_at = local(2024, 3, 4, 10)
    await sup.refresh(now)
    day = figures(db, date(2024, 3, 4))
    assert day[("sensor", str(tree.sensors["GT-102"]))] == (0.0, 0.0, 0.0)
    assert day[("camera", tree.cameras["e3"][0])] == (0.0, 0.0, 0.0)
    limit = sup.limits.keepalive_limit_s
    assert limit == 60 * 4  # keepalive_interval_s × (keepalive_misses + 1)
    for cam in tree.cameras["e1"]:
        assert day[("camera", cam)][0] == pytest.approx(14 * H - limit)
    assert day[("sensor", str(tree.sensors["GT-101"]))] == (0.0, 0.0, DAY)


async def test_rates_per_enterprise(rig: tuple[Database, Tree, Supervision]) -> None:
    db, tree, sup = rig
    all_online_since(db, tree, local(2024, 3, 1))
    # e1 on 03-04: GT-101 offline 6 h, one camera 12 h (device online, channel OFF is per
    # camera; take the device down for both cameras for 3 h instead)
    sensor_events(
        db,
        tree.sensors["GT-101"],
        ("offline", local(2024, 3, 4, 6)),
        ("online", local(2024, 3, 4, 12)),
    )
    device_events(
        db, tree.devices["e1"], ("offline", local(2024, 3, 4, 9)), ("online", local(2024, 3, 4, 12))
    )
    now = local(2024, 3, 5, 12)
    heard(db, tree, now)
    await sup.refresh(now)
    with db.session() as s:
        got = period_figures(s, date(2024, 3, 4), date(2024, 3, 6))
    e1 = got[tree.e1]
    # 03-04: (6 h + 3 h + 3 h) / (4 × 24 h) = 12.5 %; 03-05 (half a day so far): 0 %
    assert e1.offline_rate == pytest.approx((12 / 96 + 0) / 2)
    assert e1.data_rate == pytest.approx((6 / 48 + 0) / 2)
    assert e1.video_rate == pytest.approx((6 / 48 + 0) / 2)
    assert (e1.count("sensor"), e1.count("camera"), e1.days) == (2, 2, 2)
    assert got[tree.e3].offline_rate == 0.0
    assert tree.e2 in got and got[tree.e2].count("camera") == 0


async def test_refresh_is_idempotent_and_catches_up(
    rig: tuple[Database, Tree, Supervision],
) -> None:
    db, tree, sup = rig
    now = local(2024, 3, 20, 12)
    await sup.refresh(now)
    with db.session() as s:
        days = sorted(set(s.scalars(select(OfflineDaily.day))))
        count = len(s.scalars(select(OfflineDaily.id)).all())
    # first refresh after start: every day since the points and devices exist (≤ 62 days)
    assert days[0] == max(CREATED.date(), date(2024, 3, 20) - timedelta(days=62))
    assert days[-1] == date(2024, 3, 20)
    await sup.refresh(now)
    again = Supervision(sup.settings, db)  # a restart: catches up from the newest stored day
    await again.refresh(now + timedelta(hours=1))
    with db.session() as s:
        assert len(s.scalars(select(OfflineDaily.id)).all()) == count
        row = s.scalar(
            select(OfflineDaily).where(
                OfflineDaily.day == date(2024, 3, 20),
                OfflineDaily.subject_id == str(tree.sensors["GT-101"]),
            )
        )
        assert row is not None and row.monitored_s == 13 * H


def test_figures_of_a_day_do_not_depend_on_when_they_are_computed(
    rig: tuple[Database, Tree, Supervision],
) -> None:
    """Late events and midnight: the final figure of a day is the same from any later run."""
    db, tree, sup = rig
    sensor_events(db, tree.sensors["LT-301"], ("online", local(2024, 3, 3, 23)))
    sensor_events(db, tree.sensors["LT-301"], ("offline", local(2024, 3, 4, 23, 30)))
    with db.session() as s:
        sensor = s.get(Sensor, tree.sensors["LT-301"])
        assert sensor is not None
        sensor.last_reading_at = local(2024, 3, 4, 23, 20)  # the offline event came 10 min later
    results = []
    for now in (local(2024, 3, 5, 0, 1), local(2024, 3, 6, 9), local(2024, 3, 9, 9)):
        with db.session() as s:
            refresh_days(s, date(2024, 3, 4), date(2024, 3, 4), now, sup.tz, sup.limits)
        results.append(figures(db, date(2024, 3, 4))[("sensor", str(tree.sensors["LT-301"]))])
    assert results == [(0.5 * H, 0.5 * H, DAY)] * 3
