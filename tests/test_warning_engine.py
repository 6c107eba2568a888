"""Warning episodes: open, re-raise, clear, offline, restart, database outage, ingest path."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from storage.sensor_models import Sensor, SensorWarning, WarningLevel
from vms.config import IngestSettings
from vms.ingest.samples import Sample
from vms.ingest.service import IngestService

from .warning_support import engine_rig


async def test_one_episode_per_abnormal_stretch(tmp_path: Path, db_url: str) -> None:
    async with engine_rig(tmp_path, db_url, [{"tag": "PT-1"}]) as (rig, (pk,)):
        point = rig.point(pk)
        await rig.feed(pk, 7.0)  # yellow
        assert point.level == "yellow"
        await rig.feed(pk, 5.0, advance_s=10)  # normal, but not for the 30 s hold
        await rig.feed(pk, 5.0, advance_s=10)
        await rig.feed(pk, 7.1, advance_s=10)  # re-raise before the clear: same episode
        await rig.feed(pk, 9.0, advance_s=10)  # escalates the same episode
        (w,) = rig.warnings()
        assert [e.kind for e in w.events] == ["opened", "escalated"]
        assert point.level == "orange"
        await rig.feed(pk, 1.0, advance_s=10)
        await rig.feed(pk, 1.0, advance_s=30)  # normal held → cleared (stays open for handling)
        (w,) = rig.warnings()
        assert not w.active and w.cleared_at == rig.clock.at() and w.closed_at is None
        assert point.level == "" and w.peak_level is WarningLevel.orange
        await rig.feed(pk, 7.5, advance_s=60)  # after the clear: a new episode
        first, second = rig.warnings()
        assert first.warning_id != second.warning_id and second.active
        assert second.level is WarningLevel.yellow and second.value == 7.5
        assert rig.engine.open_warnings() == {pk: second.warning_id}
        assert rig.engine.counters["opened"] == 2 and rig.engine.counters["cleared"] == 1


async def test_downgrade_goes_to_the_lowest_level_that_held(tmp_path: Path, db_url: str) -> None:
    async with engine_rig(tmp_path, db_url, [{"tag": "PT-2"}]) as (rig, (pk,)):
        await rig.feed(pk, 9.0)  # orange
        await rig.feed(pk, 7.0, advance_s=1)  # yellow
        await rig.feed(pk, 5.0, advance_s=20)  # normal 20 s: at-or-below yellow for 20 s
        await rig.feed(pk, 5.0, advance_s=10)  # below orange 30 s: downgrade to yellow
        (w,) = rig.warnings()
        assert w.level is WarningLevel.yellow and w.active
        await rig.feed(pk, 5.0, advance_s=10)  # normal for 20 s only
        assert rig.warnings()[0].active
        await rig.feed(pk, 5.0, advance_s=10)  # normal since 30 s: cleared
        (w,) = rig.warnings()
        assert [e.kind for e in w.events] == ["opened", "downgraded", "cleared"]
        assert w.events[1].detail["from"] == "orange"


async def test_offline_keeps_the_episode_and_its_clock(tmp_path: Path, db_url: str) -> None:
    async with engine_rig(tmp_path, db_url, [{"tag": "PT-3"}]) as (rig, (pk,)):
        t0 = rig.clock.t
        await rig.feed(pk, 7.0)
        rig.engine.offline(rig.point(pk), rig.clock.at(600))
        rig.engine.offline(rig.point(pk), rig.clock.at(700))  # said once
        assert await rig.engine.drain()
        rig.clock.t = t0 + 3600
        assert [f["kind"] for f in await rig.tick()] == ["notice"]  # still not downgraded
        await rig.feed(pk, 7.0, advance_s=10)
        (w,) = rig.warnings()
        assert [e.kind for e in w.events] == ["opened", "offline", "notice", "online"]
        assert w.active


async def test_restart_supersedes_a_duplicate_episode(tmp_path: Path, db_url: str) -> None:
    async with engine_rig(tmp_path, db_url, [{"tag": "PT-4"}]) as (rig, (pk,)):
        t = rig.clock.at()
        with rig.db.session() as s:
            sensor = s.get(Sensor, pk)
            for i in range(2):  # as a crash between two writes could leave them
                s.add(
                    SensorWarning(
                        sensor_pk=pk,
                        org_id=sensor.org_id,
                        level=WarningLevel.yellow,
                        peak_level=WarningLevel.yellow,
                        cause="h",
                        raised_at=t + timedelta(seconds=i),
                        level_since=t + timedelta(seconds=i),
                    )
                )
        await rig.restart()
        old, new = rig.warnings()
        assert not old.active and "superseded" in old.events[-1].note
        assert rig.engine.open_warnings() == {pk: new.warning_id}
        assert rig.point(pk).level == "yellow"
        await rig.feed(pk, 9.0)
        assert [w.level for w in rig.warnings()] == [WarningLevel.yellow, WarningLevel.orange]


async def test_threshold_change_keeps_the_episode(tmp_path: Path, db_url: str) -> None:
    async with engine_rig(tmp_path, db_url, [{"tag": "PT-5"}]) as (rig, (pk,)):
        await rig.feed(pk, 7.0)
        with rig.db.session() as s:
            s.get(Sensor, pk).thresholds = {"h": 7.5, "hh": 9.5}
        rig.reload_points()
        await rig.feed(pk, 7.0, advance_s=10)  # below the new h: a hold starts, no new episode
        await rig.feed(pk, 9.6, advance_s=10)
        (w,) = rig.warnings()
        assert w.level is WarningLevel.orange and w.threshold == 9.5


@pytest.mark.postgres
async def test_database_outage_loses_no_transition(tmp_path: Path, postgres_url: str) -> None:
    """Connections are refused for a while (a real outage of the database): transitions wait
    in order and are all stored once it is back."""
    name = postgres_url.rsplit("/", 1)[1]
    admin = create_engine(
        postgres_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )

    def outage(on: bool) -> None:
        with admin.connect() as c:
            c.execute(
                text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"false" if on else "true"}')
            )
            if on:
                c.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )

    try:
        async with engine_rig(tmp_path, postgres_url, [{"tag": "PT-6"}, {"tag": "PT-7"}]) as (
            rig,
            (a, b),
        ):
            outage(True)
            for pk, value in ((a, 7.0), (b, 9.0), (a, 9.0), (b, 5.0)):
                rig.engine.observe(rig.point(pk), rig.clock.at(), value)
                rig.clock.t += 40
            rig.engine.observe(rig.point(b), rig.clock.at(), 5.0)  # b held normal: cleared
            assert not await rig.engine.drain(timeout=1.5)  # the database is down
            assert rig.engine.counters["write_errors"] >= 1
            outage(False)
            assert await rig.engine.drain(timeout=30)
            wa, wb = sorted(rig.warnings(), key=lambda w: w.sensor_pk or 0)
            assert [e.kind for e in wa.events] == ["opened", "escalated"]
            assert [e.kind for e in wb.events] == ["opened", "cleared"]
            assert wa.level is WarningLevel.orange and not wb.active
            assert rig.engine.counters["dropped_ops"] == 0
    finally:
        outage(False)
        admin.dispose()


async def test_through_the_ingest_service(tmp_path: Path, db_url: str) -> None:
    """The real reading path: submit → observe → point.level → 10-s period → sensors.level."""
    async with engine_rig(tmp_path, db_url, [{"tag": "PT-8"}]) as (rig, (pk,)):
        ingest = IngestService(IngestSettings(refresh_s=3600), rig.db, rig.events, rig.clock)
        await ingest.start()
        try:
            rig.engine.registry = ingest.registry
            ingest.warnings = rig.engine
            point = ingest.registry.by_pk[pk]
            org = point.org_id
            now = datetime.fromtimestamp(rig.clock.t, UTC)
            result = ingest.submit(org, [Sample("PT-8", now - timedelta(seconds=5), 2.0)])
            assert result.accepted == 1 and ingest.period_limit(point) == 300
            ingest.submit(org, [Sample("PT-8", now, 8.5)])
            assert point.level == "orange" and ingest.period_limit(point) == 10
            assert await rig.engine.drain()
            await ingest.flush()
            with rig.db.session() as s:
                assert s.get(Sensor, pk).level == "orange"
                (w,) = s.scalars(select(SensorWarning)).all()
                assert w.value == 8.5 and w.raised_at == now and w.cause == "hh"
        finally:
            await ingest.stop()
            await asyncio.sleep(0)
