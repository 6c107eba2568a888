"""The ingest service on SQLite and PostgreSQL: row validation, duplicates, late and
out-of-range rows, upload periods, offline detection, exact aggregates after late data,
retention, a database outage (rows kept, written when it is back) and back-pressure."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, select, text

from storage.db import Database
from storage.models import OrgKind
from storage.org_tree import create_org
from storage.sensor_models import (
    GatewayProtocol,
    Quality,
    Reading,
    ReadingAggregate,
    Sensor,
    SensorEvent,
    SensorGateway,
)
from vms.config import load_settings
from vms.events import EventBus
from vms.ingest.points import Point
from vms.ingest.samples import IngestBusy, Sample
from vms.ingest.service import IngestService

from .alarms_support import wait_until
from .sensor_api_support import readings_table_gone

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.t = at.timestamp()

    def __call__(self) -> float:
        return self.t

    def at(self, when: datetime) -> None:
        self.t = when.timestamp()


@dataclass
class Observer:
    """Stands in for the warning engine: records what the ingest path hands it."""

    observed: list[tuple[str, datetime, float]] = field(default_factory=list)
    went_offline: list[str] = field(default_factory=list)

    def observe(self, point: Point, at: datetime, value: float) -> None:
        self.observed.append((point.tag, at, value))

    def offline(self, point: Point, at: datetime) -> None:
        self.went_offline.append(point.tag)


@dataclass
class Rig:
    db: Database
    service: IngestService
    clock: Clock
    org_id: int
    gateway_id: int
    pks: dict[str, int]
    observer: Observer
    events: EventBus

    def rows(self, tag: str) -> list[tuple[datetime, float, int]]:
        with self.db.session() as s:
            q = (
                select(Reading.at, Reading.value, Reading.quality)
                .where(Reading.sensor_pk == self.pks[tag])
                .order_by(Reading.at, Reading.id)
            )
            return [tuple(r) for r in s.execute(q)]  # type: ignore[misc]

    def sensor(self, tag: str) -> Sensor:
        with self.db.session() as s:
            return s.get_one(Sensor, self.pks[tag])

    def events_of(self, tag: str) -> list[str]:
        with self.db.session() as s:
            q = (
                select(SensorEvent.kind)
                .where(SensorEvent.sensor_pk == self.pks[tag])
                .order_by(SensorEvent.id)
            )
            return list(s.scalars(q))

    def submit(self, tag: str, at: datetime, value: Any, quality: int = 0) -> Any:
        return self.service.submit(self.org_id, [Sample(tag, at, value, quality)])


def _seed(db: Database) -> tuple[int, int, dict[str, int]]:
    with db.session() as s:
        province = create_org(s, "山东省", OrgKind.province, None, "370000")
        city = create_org(s, "济南市", OrgKind.city, province, "370100")
        county = create_org(s, "历下区", OrgKind.county, city, "370102")
        ent = create_org(s, "示例化工", OrgKind.enterprise, county, "370102001")
        gw = SensorGateway(org_id=ent.id, name="DCS", protocol=GatewayProtocol.modbus_tcp)
        s.add(gw)
        s.flush()
        pks = {}
        for tag, kind, lo, hi in (
            ("GT-1", "gas_combustible", 0.0, 100.0),
            ("PT-1", "pressure", 0.0, 4.0),
            ("TT-1", "temperature", -20.0, 200.0),
        ):
            row = Sensor(
                org_id=ent.id, tag=tag, kind=kind, range_min=lo, range_max=hi, gateway_id=gw.id
            )
            s.add(row)
            s.flush()
            pks[tag] = row.id
        return ent.id, gw.id, pks


@asynccontextmanager
async def rig_for(db_url: str, tmp_path: Path, **ingest: Any) -> AsyncIterator[Rig]:
    settings = load_settings(
        server={"data_dir": tmp_path / "data"}, database={"url": db_url}, ingest=ingest
    )
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    org_id, gw_id, pks = _seed(db)
    clock = Clock(T0)
    events = EventBus()
    service = IngestService(settings.ingest, db, events, clock=clock)
    observer = Observer()
    service.warnings = observer
    await service.reload()
    try:
        yield Rig(db, service, clock, org_id, gw_id, pks, observer, events)
    finally:
        await service.stop()
        db.close()


@pytest.fixture
async def rig(db_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    async with rig_for(db_url, tmp_path) as r:
        yield r


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


async def test_bad_rows_are_named_and_good_rows_stored(rig: Rig) -> None:
    naive = datetime(2026, 12, 1, 8, 0)
    batch = [
        Sample("GT-1", T0, 1.0),
        Sample("NOPE", T0, 1.0),
        Sample("GT-1", T0 + s(1), float("nan")),
        Sample("GT-1", T0 + s(2), float("inf")),
        Sample("GT-1", T0 + s(3), "7"),  # type: ignore[arg-type]
        Sample("GT-1", T0 + s(4), True),  # type: ignore[arg-type]
        Sample("GT-1", naive, 1.0),
        Sample("GT-1", T0 + s(61), 1.0),  # beyond future_tolerance_s (60) of our clock
        Sample("GT-1", T0 + s(59), 2.0),  # inside it
    ]
    result = rig.service.submit(rig.org_id, batch)
    got = {e.row: e.error for e in result.errors}
    assert sorted(got) == [1, 2, 3, 4, 5, 6, 7]
    assert got[1] == "unknown tag" and "finite" in got[2] and "finite" in got[3]
    assert "number" in got[4] and "number" in got[5]
    assert "timezone" in got[6] and "future" in got[7]
    assert result.accepted == 2
    assert await rig.service.flush() == 2
    assert [v for _, v, _ in rig.rows("GT-1")] == [1.0, 2.0]
    assert rig.service.counters["rejected"] == 7


async def test_duplicates_skipped_and_late_rows_kept_as_history(rig: Rig) -> None:
    batch = [Sample("PT-1", T0 - s(60 - i * 10), 1.0 + i / 10) for i in range(6)]
    assert rig.service.submit(rig.org_id, batch).accepted == 6
    again = rig.service.submit(rig.org_id, batch)
    assert (again.accepted, again.duplicates) == (0, 6)
    late = rig.submit("PT-1", T0 - s(55), 0.5)
    assert (late.accepted, late.late) == (1, 1)
    await rig.service.flush()
    rows = rig.rows("PT-1")
    assert len(rows) == 7
    assert [q for at, _, q in rows if at == T0 - s(55)] == [Quality.late]
    point = rig.service.registry.get(rig.org_id, "PT-1")
    assert point.last_at == T0 - s(10) and point.last_value == 1.5  # the late row changes nothing
    assert rig.sensor("PT-1").last_value == 1.5
    # the warning engine saw the in-order values only, once each
    assert [v for tag, _, v in rig.observer.observed if tag == "PT-1"] == [r.value for r in batch]


async def test_out_of_range_is_a_fault_not_a_reading_for_warnings(rig: Rig) -> None:
    rig.submit("PT-1", T0 - s(30), 2.0)
    out = rig.submit("PT-1", T0 - s(20), 9.5)  # range 0..4 MPa
    assert out.accepted == 1 and not out.errors
    point = rig.service.registry.get(rig.org_id, "PT-1")
    assert point.fault == "out_of_range" and point.last_value == 2.0
    rig.submit("PT-1", T0 - s(15), 9.9)  # still out: no second fault event
    uncertain = rig.submit("PT-1", T0 - s(12), 3.0, quality=Quality.uncertain)
    assert uncertain.accepted == 1
    rig.submit("PT-1", T0 - s(10), 3.5)
    await rig.service.flush()
    assert [q for _, _, q in rig.rows("PT-1")] == [0, 1, 1, 2, 0]
    assert rig.events_of("PT-1") == ["online", "fault", "recovered"]
    assert rig.sensor("PT-1").fault == ""
    assert [v for tag, _, v in rig.observer.observed if tag == "PT-1"] == [2.0, 3.5]


async def test_upload_period_flags_slow_points(rig: Rig) -> None:
    svc = rig.service
    t = T0 - s(3600)
    rig.clock.at(t)
    rig.submit("GT-1", t, 1.0)
    for gap in (300, 360):  # at the limit, and inside the 20 % tolerance
        t += s(gap)
        rig.clock.at(t)
        rig.submit("GT-1", t, 1.0)
    point = svc.registry.get(rig.org_id, "GT-1")
    assert not point.slow and point.slow_count == 0
    t += s(400)  # over 5 min × 1.2
    rig.clock.at(t)
    rig.submit("GT-1", t, 1.0)
    assert point.slow and point.slow_count == 1
    t += s(60)
    rig.clock.at(t)
    rig.submit("GT-1", t, 1.0)
    assert not point.slow  # back in step
    # in warning the limit is 10 s
    point.level = "yellow"
    t += s(11)
    rig.clock.at(t)
    rig.submit("GT-1", t, 30.0)
    assert not point.slow
    t += s(13)
    rig.clock.at(t)
    rig.submit("GT-1", t, 30.0)
    assert point.slow and point.slow_count == 2
    # silence is flagged by the supervisor once, not again when the reading finally comes
    t += s(5)
    rig.clock.at(t)
    rig.submit("GT-1", t, 30.0)
    rig.clock.at(t + s(20))
    svc.supervise()
    assert point.slow_count == 3
    rig.clock.at(t + s(25))
    svc.supervise()
    rig.submit("GT-1", t + s(25), 30.0)
    assert point.slow_count == 3
    await svc.flush()
    assert rig.sensor("GT-1").slow_count == 3
    assert rig.events_of("GT-1").count("slow") == 3
    assert svc.counters["slow"] == 3


async def test_offline_detection_and_gateway_state(rig: Rig) -> None:
    svc = rig.service
    rig.clock.at(T0)
    rig.submit("GT-1", T0 - s(1), 1.0)
    rig.submit("PT-1", T0 - s(1), 1.0)
    rig.clock.at(T0 + s(599))
    svc.supervise()
    assert rig.observer.went_offline == []
    rig.clock.at(T0 + s(601))
    svc.supervise()
    assert rig.observer.went_offline == ["GT-1", "PT-1"]
    await svc.flush()
    assert rig.sensor("GT-1").online is False
    assert rig.events_of("GT-1")[-1] == "offline"
    rig.submit("GT-1", T0 + s(601), 2.0)
    assert svc.registry.get(rig.org_id, "GT-1").online
    # the collector loses its gateway: its points go offline at once
    svc.gateway_state(rig.gateway_id, True)
    svc.gateway_state(rig.gateway_id, False, "connection refused")
    assert rig.observer.went_offline == ["GT-1", "PT-1", "GT-1"]
    await svc.flush()
    with rig.db.session() as ses:
        gw = ses.get_one(SensorGateway, rig.gateway_id)
        assert (gw.online, gw.last_error) == (False, "connection refused")
        assert gw.last_seen_at == T0 + s(601)
    # every report of a live gateway moves last_seen_at (a push gateway's every batch)
    for later in (700, 760):
        rig.clock.at(T0 + s(later))
        svc.gateway_state(rig.gateway_id, True)
        await svc.flush()
        with rig.db.session() as ses:
            gw = ses.get_one(SensorGateway, rig.gateway_id)
            assert gw.online and gw.last_seen_at == T0 + s(later) and gw.last_error == ""


def _aggregates(db: Database, pk: int, period: int) -> dict[datetime, tuple[Any, ...]]:
    with db.session() as ses:
        rows = ses.scalars(
            select(ReadingAggregate).where(
                ReadingAggregate.sensor_pk == pk, ReadingAggregate.period == period
            )
        )
        return {a.bucket: (a.count, a.min, a.max, round(a.sum, 9), a.last) for a in rows}


def _from_raw(rows: list[tuple[datetime, float, int]], period: int) -> dict[datetime, Any]:
    groups: dict[datetime, list[tuple[datetime, float]]] = defaultdict(list)
    for at, value, _ in rows:
        groups[datetime.fromtimestamp(int(at.timestamp()) // period * period, UTC)].append(
            (at, value)
        )
    return {
        b: (
            len(g),
            min(v for _, v in g),
            max(v for _, v in g),
            round(sum(v for _, v in g), 9),
            max(g)[1],
        )  # fmt: skip
        for b, g in groups.items()
    }


async def test_aggregates_exact_after_late_data(rig: Rig) -> None:
    svc = rig.service
    start = T0 - s(3 * 3600)
    rig.clock.at(start + s(140))
    batch = [Sample("TT-1", start + s(7 * i), 20 + (i * 13) % 17) for i in range(20)]  # ~2.3 min
    svc.submit(rig.org_id, batch)
    await svc.flush()
    pk = rig.pks["TT-1"]
    written = _aggregates(rig.db, pk, 60)
    assert sorted(written) == [start, start + s(60)], "the third minute is still open"
    assert _aggregates(rig.db, pk, 3600) == {}
    rig.clock.at(start + s(3600 + 10))  # every minute and the hour closed
    await svc.flush()
    assert _aggregates(rig.db, pk, 60) == _from_raw(rig.rows("TT-1"), 60)
    assert len(_aggregates(rig.db, pk, 60)) == 3
    # late rows into buckets that are already in the database: merged, not replaced
    late = [Sample("TT-1", start + s(3), 99.0), Sample("TT-1", start + s(65), -5.0)]
    assert svc.submit(rig.org_id, late).late == 2
    await svc.flush()
    raw = rig.rows("TT-1")
    assert len(raw) == 22
    assert _aggregates(rig.db, pk, 60) == _from_raw(raw, 60)
    assert _aggregates(rig.db, pk, 3600) == _from_raw(raw, 3600)
    first = _aggregates(rig.db, pk, 60)[start]
    assert first[2] == 99.0 and first[4] == batch[8].value  # max widened, last kept by time


async def test_retention(rig: Rig) -> None:
    svc = rig.service
    old, recent = T0 - timedelta(days=31), T0 - timedelta(days=29)
    rig.clock.at(old + s(3700))
    svc.submit(rig.org_id, [Sample("GT-1", old, 1.0), Sample("GT-1", old + s(30), 2.0)])
    await svc.flush()
    rig.clock.at(recent + s(3700))
    svc.submit(rig.org_id, [Sample("GT-1", recent, 3.0)])
    await svc.flush()
    with rig.db.session() as ses:
        ses.execute(
            ReadingAggregate.__table__.insert(),
            [{"sensor_pk": rig.pks["GT-1"], "period": 3600, "bucket": T0 - timedelta(days=401),
              "count": 1, "min": 1, "max": 1, "sum": 1, "last": 1,
              "last_at": T0 - timedelta(days=401)}],
        )  # fmt: skip
    rig.clock.at(T0)
    gone = await rig.db.run(svc.apply_retention)
    assert gone == 2
    assert [v for _, v, _ in rig.rows("GT-1")] == [3.0]
    kept = _aggregates(rig.db, rig.pks["GT-1"], 3600)
    assert min(kept) == datetime.fromtimestamp(int(old.timestamp()) // 3600 * 3600, UTC)
    assert T0 - timedelta(days=401) not in kept


async def test_ingest_busy_when_the_queue_is_full(db_url: str, tmp_path: Path) -> None:
    async with rig_for(db_url, tmp_path, queue_max=100) as rig:
        svc = rig.service
        svc.submit(rig.org_id, [Sample("GT-1", T0 - s(100 - i), i) for i in range(60)])
        with pytest.raises(IngestBusy):
            svc.submit(rig.org_id, [Sample("PT-1", T0 - s(100 - i), 1) for i in range(41)])
        assert svc.counters["refused_busy"] == 1
        assert rig.rows("PT-1") == []  # refused whole: nothing half-taken
        await svc.flush()
        again = svc.submit(rig.org_id, [Sample("PT-1", T0 - s(100 - i), 1) for i in range(41)])
        assert again.accepted == 41
        await svc.flush()
        assert len(rig.rows("GT-1")) == 60 and len(rig.rows("PT-1")) == 41


@contextmanager
def database_outage(db: Database) -> Iterator[None]:
    """PostgreSQL: the database refuses every connection (ours are cut); SQLite: the readings
    table is away.  Either way the writer's transaction fails for real."""
    if db.engine.dialect.name != "postgresql":
        raise AssertionError("use readings_table_gone for SQLite")
    name = db.engine.url.database
    admin = create_engine(db.engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
    try:
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


@asynccontextmanager
async def outage(db: Database) -> AsyncIterator[None]:
    if db.engine.dialect.name == "postgresql":
        with database_outage(db):
            yield
    else:
        async with readings_table_gone(db):
            yield


async def test_database_outage_keeps_rows_until_it_is_back(db_url: str, tmp_path: Path) -> None:
    async with rig_for(db_url, tmp_path, flush_interval_s=0.05) as rig:
        svc = rig.service
        rig.clock.at(datetime.now(UTC))
        await svc.start()
        now = datetime.now(UTC).replace(microsecond=0)
        first = svc.submit(
            rig.org_id, [Sample("GT-1", now - s(300 - i), i / 4) for i in range(100)]
        )
        assert await svc.committed(first.ticket, 10)
        async with outage(rig.db):
            batch = [Sample("GT-1", now - s(200 - i), 50 + i / 4) for i in range(100)]
            during = svc.submit(rig.org_id, batch)
            assert during.accepted == 100
            assert not await svc.committed(during.ticket, 1.5)
            await wait_until(lambda: svc.counters["write_errors"] >= 2, 20, "retried writes")
            assert svc.stats()["buffered"] == 100
        assert await svc.committed(during.ticket, 30)
        assert svc.stats()["buffered"] == 0
        values = [v for _, v, _ in rig.rows("GT-1")]
        assert values == [i / 4 for i in range(100)] + [50 + i / 4 for i in range(100)]
        rig.clock.at(datetime.now(UTC) + s(7200))
        await svc.stop()  # the final flush writes the open buckets too
        raw = rig.rows("GT-1")
        assert _aggregates(rig.db, rig.pks["GT-1"], 60) == _from_raw(raw, 60)


async def test_deleted_point_does_not_block_the_writer(rig: Rig) -> None:
    svc = rig.service
    svc.submit(rig.org_id, [Sample("GT-1", T0 - s(10), 1.0), Sample("PT-1", T0 - s(10), 2.0)])
    await svc.flush()  # GT-1's minute and hour buckets are still open in memory
    svc.submit(rig.org_id, [Sample("GT-1", T0 - s(5), 1.5), Sample("PT-1", T0 - s(5), 2.5)])
    with rig.db.session() as ses:
        ses.execute(delete(Sensor).where(Sensor.id == rig.pks["GT-1"]))
    await svc.reload()
    rig.clock.at(T0 + s(3600))
    await svc.flush()
    assert [v for _, v, _ in rig.rows("PT-1")] == [2.0, 2.5]
    assert rig.rows("GT-1") == []
    assert len(_aggregates(rig.db, rig.pks["PT-1"], 60)) == 1
    assert svc.stats()["buffered"] == 0


async def test_values_and_state_events_on_the_bus(rig: Rig) -> None:
    async with rig.events.subscribe() as queue:
        rig.submit("GT-1", T0 - s(2), 12.0)
        await rig.service.flush()
        got = [queue.get_nowait() for _ in range(queue.qsize())]
    kinds = [e.kind for e in got]
    assert kinds == ["sensor.state", "sensor.values"]
    state, values = got
    assert state.data["state"] == "online" and state.data["tag"] == "GT-1"
    assert state.data["org_path"] == values.data["org_path"]
    assert values.data["org_path"].count("/") == 5  # /province/city/county/enterprise/
    assert values.data["values"] == [
        {"sensor_id": rig.pks["GT-1"], "value": 12.0, "at": (T0 - s(2)).isoformat(), "level": ""}
    ]


@contextmanager
def readings_locked(db: Database) -> Iterator[None]:
    """Another client holds the readings table: our write waits for it (a real lock)."""
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        if db.engine.dialect.name == "postgresql":
            cur.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
        else:
            cur.execute("BEGIN IMMEDIATE")
        yield
    finally:
        raw.rollback()
        raw.close()


async def test_rows_being_written_still_count_against_the_queue(
    db_url: str, tmp_path: Path
) -> None:
    async with rig_for(db_url, tmp_path, queue_max=100) as rig:
        svc = rig.service
        svc.submit(rig.org_id, [Sample("GT-1", T0 - s(100 - i), i / 4) for i in range(80)])
        with readings_locked(rig.db):
            writing = asyncio.create_task(svc.flush())
            await wait_until(lambda: not svc._buffer, 10, "the write to start")
            assert not writing.done() and svc.stats()["buffered"] == 80
            with pytest.raises(IngestBusy):
                svc.submit(rig.org_id, [Sample("PT-1", T0 - s(50 - i), 1) for i in range(21)])
            assert svc.submit(rig.org_id, [Sample("PT-1", T0 - s(50), 1)]).accepted == 1
        assert await writing == 80
        await svc.flush()
        assert len(rig.rows("GT-1")) == 80 and len(rig.rows("PT-1")) == 1


async def test_batch_resent_after_a_restart_is_not_stored_twice(rig: Rig) -> None:
    """The in-memory duplicate check is empty after a restart: rows not newer than a point's
    stored latest are written only if absent, so a resent batch never doubles the history."""
    batch = [Sample("GT-1", T0 - s(30 - 10 * i), 1.0 + i) for i in range(3)]
    assert rig.service.submit(rig.org_id, batch).accepted == 3
    await rig.service.flush()
    fresh = IngestService(rig.service.settings, rig.db, EventBus(), clock=rig.clock)
    await fresh.reload()  # the restarted node: last_reading_at from the database
    try:
        resent = [*batch, Sample("GT-1", T0 - s(25), 9.0)]  # and one genuinely late row
        result = fresh.submit(rig.org_id, resent)
        assert result.accepted == 4 and result.late == 4 and result.errors == []
        await fresh.flush()
        assert [r[:2] for r in rig.rows("GT-1")] == [
            (T0 - s(30), 1.0),
            (T0 - s(25), 9.0),
            (T0 - s(20), 2.0),
            (T0 - s(10), 3.0),
        ]
        assert fresh.stats()["duplicates"] == 3
    finally:
        await fresh.stop()
