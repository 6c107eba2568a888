"""Storage on SQLite and PostgreSQL: migrations, every table's round trip, constraints, UTC."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, Table, delete, func, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from storage.db import MIGRATIONS_DIR, Database, DatabaseUnavailable, table_names
from storage.models import (
    Alarm,
    AlarmAction,
    Base,
    Channel,
    Device,
    DeviceEvent,
    HandlingState,
    Organisation,
    OrgKind,
    OutboxItem,
    OutboxState,
    Profile,
    RecordingSegment,
    Role,
    User,
)
from storage.org_tree import OrgTreeError, create_org
from storage.sensor_models import Reading, Sensor, SensorWarning, WarningLevel

CST = timezone(timedelta(hours=8))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.open()
    yield database
    database.close()


def _tree(s: Session) -> dict[str, Organisation]:
    province = create_org(s, "山东省", OrgKind.province, None, "370000")
    city = create_org(s, "济南市", OrgKind.city, province, "370100")
    county = create_org(s, "历下区", OrgKind.county, city, "370102")
    ent = create_org(s, "化工一厂", OrgKind.enterprise, county, "370102001")
    station = create_org(s, "加油站", OrgKind.gas_station, county, "370102002")
    return {"province": province, "city": city, "county": county, "ent": ent, "station": station}


def _device(s: Session, device_id: str, org: Organisation | None, channels: int = 2) -> Device:
    device = Device(device_id=device_id, name="NVR", org_id=org.id if org else None)
    for i in range(channels):
        device.channels.append(Channel(channel_id=f"{device_id[:10]}131{i + 1:07d}", name=f"c{i}"))
    s.add(device)
    s.flush()
    return device


# --- schema ---------------------------------------------------------------------------------


def test_migrations_create_every_model_table(db: Database) -> None:
    names = set(table_names(db.engine))
    assert set(Base.metadata.tables) <= names
    assert "alembic_version" in names
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head


def test_migrating_twice_is_a_no_op(db: Database) -> None:
    with db.session() as s:
        s.add(Organisation(name="x", kind=OrgKind.province, path="/x/"))
    db.open()  # upgrade to head again: nothing to do, nothing lost
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Organisation)) == 1


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def test_models_match_the_migrated_schema(db: Database) -> None:
    """Autogenerate against the migrated DB finds nothing: migrations and models agree."""
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(ctx, Base.metadata) == []
        # The comparison can fail: a model table the schema lacks is reported.
        extra = MetaData()
        for table in Base.metadata.tables.values():
            table.to_metadata(extra)
        Table("not_migrated", extra, Column("id", Integer, primary_key=True))
        diffs = compare_metadata(ctx, extra)
    assert [d[0] for d in diffs] == ["add_table"]
    assert diffs[0][1].name == "not_migrated"


def test_unreachable_database_is_one_clear_line() -> None:
    database = Database("postgresql+psycopg://u:secret@127.0.0.1:1/x", connect_timeout_s=2)
    with pytest.raises(DatabaseUnavailable) as info:
        database.open()
    message = str(info.value)
    assert "\n" not in message and "database unreachable" in message
    assert "127.0.0.1:1" in message and "secret" not in message


# --- round trips ----------------------------------------------------------------------------


def test_organisation_tree_paths(db: Database) -> None:
    with db.session() as s:
        t = _tree(s)
        ids = {k: v.id for k, v in t.items()}
        with pytest.raises(OrgTreeError, match="enterprise cannot be placed under province"):
            create_org(s, "bad", OrgKind.enterprise, t["province"])
    with db.session() as s:
        county = s.get(Organisation, ids["county"])
        assert county is not None
        p, c = ids["province"], ids["city"]
        assert county.path == f"/{p}/{c}/{county.id}/"
        below = s.scalars(
            select(Organisation.name).where(Organisation.path.startswith(county.path))
        ).all()
        assert sorted(below) == sorted(["历下区", "化工一厂", "加油站"])
        station = s.get(Organisation, ids["station"])
        assert station is not None and station.profile == Profile.gas_station
        assert station.parent is not None and station.parent.name == "历下区"
        assert s.get(Organisation, ids["ent"]).profile == Profile.enterprise  # type: ignore[union-attr]


def test_users_round_trip_and_unique_username(db: Database) -> None:
    with db.session() as s:
        org = _tree(s)["ent"]
        s.add(User(username="alice", password_hash="h", role=Role.enterprise, org_id=org.id))
    with db.session() as s:
        user = s.scalar(select(User).where(User.username == "alice"))
        assert user is not None and user.role is Role.enterprise and user.is_active
        assert user.org is not None and user.org.name == "化工一厂"
        assert user.created_at.tzinfo is not None
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(User(username="alice", password_hash="h2", role=Role.admin))


def test_devices_channels_and_cascade_delete(db: Database) -> None:
    with db.session() as s:
        t = _tree(s)
        d1 = _device(s, "37010200001180000001", t["ent"], channels=3)
        d2 = _device(s, "37010200001180000002", t["ent"], channels=2)
        d1.channels[0].analysis = {"rules": ["fire"], "zones": [[[0.1, 0.2], [0.3, 0.4]]]}
        s.add(DeviceEvent(device_pk=d1.id, kind="online", detail={"from": "127.0.0.1"}))
        ids = (d1.id, d2.id)
    with db.session() as s:
        d1 = s.get(Device, ids[0])
        assert d1 is not None and len(d1.channels) == 3 and d1.sip_password is None
        first = sorted(d1.channels, key=lambda c: c.channel_id)[0]
        assert first.analysis == {"rules": ["fire"], "zones": [[[0.1, 0.2], [0.3, 0.4]]]}
        s.delete(d1)  # ORM cascade
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Channel)) == 2
        assert s.scalar(select(func.count()).select_from(DeviceEvent)) == 0
        s.execute(delete(Device).where(Device.id == ids[1]))  # database ON DELETE CASCADE
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Channel)) == 0


def test_unique_device_id_and_channel_per_device(db: Database) -> None:
    with db.session() as s:
        _device(s, "37010200001180000001", None, channels=1)
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Device(device_id="37010200001180000001"))
    with pytest.raises(IntegrityError), db.session() as s:
        d = s.scalar(select(Device))
        assert d is not None
        s.add(Channel(device_pk=d.id, channel_id=d.channels[0].channel_id))


def test_alarms_actions_and_unique_alarm_id(db: Database) -> None:
    raised = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
    with db.session() as s:
        t = _tree(s)
        ch = _device(s, "37010200001180000001", t["ent"], channels=1).channels[0]
        alarm = Alarm(
            channel_pk=ch.id,
            org_id=t["ent"].id,
            profile=Profile.enterprise,
            alarm_type="01",
            rule="fire",
            video_code="37010200101320000001",
            raised_at=raised,
            detail={"score": 0.91, "说明": "明火"},
        )
        s.add(alarm)
        s.flush()
        alarm.actions.append(AlarmAction(action="close", at=raised + timedelta(minutes=2)))
        alarm.actions.append(AlarmAction(action="acknowledge", at=raised + timedelta(minutes=1)))
        alarm_id = alarm.alarm_id
    assert len(alarm_id) == 36
    with db.session() as s:
        a = s.scalar(select(Alarm).where(Alarm.alarm_id == alarm_id))
        assert a is not None and a.raised_at == raised and a.handling is HandlingState.new
        assert a.active and a.detail == {"score": 0.91, "说明": "明火"}
        assert [x.action for x in a.actions] == ["acknowledge", "close"]
        assert a.channel is not None and a.channel.name == "c0"
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Alarm(alarm_id=alarm_id, profile=Profile.enterprise, alarm_type="01", video_code="x"))


def test_recording_segments(db: Database) -> None:
    t0 = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    with db.session() as s:
        for i in range(6):
            s.add(
                RecordingSegment(
                    channel_id="37010200001310000001",
                    start=t0 + timedelta(seconds=20 * i),
                    end=t0 + timedelta(seconds=20 * (i + 1)),
                    object_key=f"rec/37010200001310000001/{i}.ts",
                    size=5_000_000_000 + i,  # past 32 bits
                    keyframes=[[0.0, 0], [2.0, 188 * 1000]],
                    is_gap=(i == 3),
                )
            )
    with db.session() as s:
        stmt = (
            select(RecordingSegment)
            .where(RecordingSegment.channel_id == "37010200001310000001")
            .where(RecordingSegment.end > t0 + timedelta(seconds=30))
            .where(RecordingSegment.start < t0 + timedelta(seconds=70))
            .order_by(RecordingSegment.start)
        )
        segs = s.scalars(stmt).all()
    assert [seg.size - 5_000_000_000 for seg in segs] == [1, 2, 3]
    assert segs[0].keyframes == [[0.0, 0], [2.0, 188000]]
    assert [seg.is_gap for seg in segs] == [False, False, True]
    assert segs[0].start.tzinfo is UTC


def test_sensors_readings_and_warnings(db: Database) -> None:
    t0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    with db.session() as s:
        org = _tree(s)["ent"]
        sensor = Sensor(
            org_id=org.id,
            tag="GAS-001",
            kind="gas_combustible",
            unit="%LEL",
            thresholds={"h": 25, "hh": 50},
        )
        s.add(sensor)
        s.flush()
        s.add_all(
            Reading(sensor_pk=sensor.id, at=t0 + timedelta(seconds=i), value=i * 1.5)
            for i in range(5)
        )
        s.add(
            SensorWarning(
                sensor_pk=sensor.id,
                org_id=org.id,
                level=WarningLevel.orange,
                peak_level=WarningLevel.orange,
            )
        )
        sensor_pk, org_id = sensor.id, org.id
    with db.session() as s:
        values = s.scalars(
            select(Reading.value).where(Reading.sensor_pk == sensor_pk).order_by(Reading.at)
        ).all()
        assert values == [0.0, 1.5, 3.0, 4.5, 6.0]
        warning = s.scalar(select(SensorWarning))
        assert warning is not None and warning.level is WarningLevel.orange and warning.active
        assert len(warning.warning_id) == 36
        assert s.get(Sensor, sensor_pk).thresholds == {"h": 25, "hh": 50}  # type: ignore[union-attr]
    with pytest.raises(IntegrityError), db.session() as s:  # a tag is unique in its enterprise
        s.add(Sensor(org_id=org_id, tag="GAS-001", kind="gas_combustible"))
    with db.session() as s:
        s.execute(delete(SensorWarning))
        s.execute(delete(Sensor).where(Sensor.id == sensor_pk))
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Reading)) == 0


def test_outbox_items(db: Database) -> None:
    now = datetime.now(UTC)
    with db.session() as s:
        for i in range(3):
            s.add(
                OutboxItem(
                    receiver="province",
                    table="table4",
                    ordering_key="370102001013200000001",
                    payload={"ALARM_ID": f"a{i}", "n": i},
                    next_attempt_at=now + timedelta(seconds=i * 100 - 100),
                )
            )
    with db.session() as s:
        due = s.scalars(
            select(OutboxItem)
            .where(OutboxItem.state == OutboxState.pending, OutboxItem.receiver == "province")
            .where(OutboxItem.next_attempt_at <= now)
            .order_by(OutboxItem.id)
        ).all()
        assert [d.payload["n"] for d in due] == [0, 1]
        assert due[0].id < due[1].id and due[0].attempts == 0
        due[0].state = OutboxState.sent
        due[0].sent_at = now
    with db.session() as s:
        sent = s.scalar(select(OutboxItem).where(OutboxItem.state == OutboxState.sent))
        assert sent is not None and sent.payload == {"ALARM_ID": "a0", "n": 0}


# --- datetimes ------------------------------------------------------------------------------


def test_datetimes_round_trip_as_aware_utc(db: Database) -> None:
    local = datetime(2026, 11, 25, 18, 30, 15, 250000, tzinfo=CST)
    with db.session() as s:
        s.add(Organisation(name="t", kind=OrgKind.province, path="/t/", created_at=local))
    with db.session() as s:
        org = s.scalar(select(Organisation))
        assert org is not None
        assert org.created_at == local  # same instant
        assert org.created_at.tzinfo is UTC and org.created_at.hour == 10
        # Comparisons in SQL use UTC too.
        found = s.scalar(
            select(func.count())
            .select_from(Organisation)
            .where(Organisation.created_at > datetime(2026, 11, 25, 10, 30, 14, tzinfo=UTC))
        )
        assert found == 1


def test_naive_datetime_is_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"), db.session() as s:
        s.add(Organisation(name="t", kind=OrgKind.province, created_at=datetime(2026, 1, 1)))
        s.flush()


# --- asyncio ---------------------------------------------------------------------------------


async def test_database_run_from_asyncio(db: Database) -> None:
    def add(i: int):  # type: ignore[no-untyped-def]
        def fn(s: Session) -> int:
            org = Organisation(name=f"o{i}", kind=OrgKind.province, path=f"/o{i}/")
            s.add(org)
            s.flush()
            return org.id

        return fn

    ids = await asyncio.gather(*(db.run(add(i)) for i in range(8)))
    assert len(set(ids)) == 8

    def fail(s: Session) -> None:
        s.add(Organisation(name="lost", kind=OrgKind.province, path="/lost/"))
        s.flush()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await db.run(fail)
    names = await db.run(lambda s: s.scalars(select(Organisation.name)).all())
    assert sorted(names) == sorted(f"o{i}" for i in range(8))  # the failed one rolled back
