"""Shared helpers of the supervision tests: an organisation tree with contacts, points and
cameras, event histories written as the ingest service and the SIP store write them, and
local (Asia/Shanghai) times."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from storage.db import Database
from storage.models import Channel, Device, DeviceEvent, OrgKind
from storage.org_tree import create_org
from storage.sensor_models import Duty, OrgContact, Sensor, SensorEvent
from vms.config import Settings, load_settings

TZ = ZoneInfo("Asia/Shanghai")
CREATED = datetime(2024, 1, 1, tzinfo=UTC)  # every seeded point and device exists since then


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    """An aware time given in Asia/Shanghai (UTC+8, no DST)."""
    return datetime(y, m, d, hh, mm, ss, tzinfo=TZ)


def make_settings(tmp_path: Path, db_url: str = "", **supervision: object) -> Settings:
    return load_settings(
        server={"data_dir": tmp_path / "data", "timezone": "Asia/Shanghai"},
        database={"url": db_url},
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
        supervision=supervision,
    )


def open_db(settings: Settings) -> Database:
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    return db


@dataclass
class Tree:
    city_id: int
    county_a: int  # 历下区: enterprise e1 and gas station e2
    county_b: int  # 市中区: enterprise e3
    e1: int
    e2: int
    e3: int
    sensors: dict[str, int] = field(default_factory=dict)  # tag → pk
    devices: dict[str, int] = field(default_factory=dict)  # "e1" / "e3" → device pk
    cameras: dict[str, list[str]] = field(default_factory=dict)  # "e1" → channel codes
    channel_pks: dict[str, int] = field(default_factory=dict)  # code → channel pk


def seed_tree(db: Database) -> Tree:
    """Province → city → two counties; e1 (2 points, NVR with 2 cameras), e2 (1 point),
    e3 (1 point, NVR with 1 camera); contacts for every duty the notices may use."""
    with db.session() as s:
        province = create_org(s, "山东省", OrgKind.province, None, "370000")
        city = create_org(s, "济南市", OrgKind.city, province, "370100")
        a = create_org(s, "历下区", OrgKind.county, city, "370102")
        b = create_org(s, "市中区", OrgKind.county, city, "370103")
        e1 = create_org(s, "示例化工", OrgKind.enterprise, a, "370102001")
        e2 = create_org(s, "示例加油站", OrgKind.gas_station, a, "370102002")
        e3 = create_org(s, "另一化工", OrgKind.enterprise, b, "370103001")
        tree = Tree(city.id, a.id, b.id, e1.id, e2.id, e3.id)
        contacts = (
            (e1, Duty.safety_dept, "安全部", {"email": "safety@e1.cn"}),
            (e1, Duty.hq, "总部", {"phone": "13800000001"}),
            (a, Duty.industry_regulator, "历下监管", {"email": "reg@lixia.gov.cn"}),
            (a, Duty.emergency_bureau, "历下应急", {"email": "yj@lixia.gov.cn"}),
            (e3, Duty.safety_dept, "另一安全", {"email": "safety@e3.cn"}),
            (b, Duty.industry_regulator, "市中监管", {"email": "reg@shizhong.gov.cn"}),
            (city, Duty.monitoring_center, "市监控", {"email": "center@jinan.gov.cn"}),
        )
        for org, duty, name, address in contacts:
            s.add(OrgContact(org_id=org.id, duty=duty, name=name, **address))
        for org, tag in ((e1, "GT-101"), (e1, "GT-102"), (e2, "PT-201"), (e3, "LT-301")):
            sensor = Sensor(
                org_id=org.id,
                tag=tag,
                name=f"{tag} 测点",
                kind="gas_combustible",
                created_at=CREATED,
            )
            s.add(sensor)
            s.flush()
            tree.sensors[tag] = sensor.id
        for key, org, dev, count in (("e1", e1, 1, 2), ("e3", e3, 3, 1)):
            device = Device(
                device_id=f"3701020000118{dev:07d}",
                name=f"NVR {dev}",
                org_id=org.id,
                created_at=CREATED,
            )
            s.add(device)
            s.flush()
            tree.devices[key] = device.id
            tree.cameras[key] = []
            for i in range(1, count + 1):
                code = f"{org.code}0132{i:07d}"
                channel = Channel(device_pk=device.id, channel_id=code, name=f"{key} cam {i}")
                s.add(channel)
                s.flush()
                tree.cameras[key].append(code)
                tree.channel_pks[code] = channel.id
    return tree


def sensor_events(db: Database, pk: int, *changes: tuple[str, datetime]) -> None:
    with db.session() as s:
        for kind, at in changes:
            s.add(SensorEvent(sensor_pk=pk, kind=kind, at=at, detail={}))


def device_events(db: Database, pk: int, *changes: tuple[str, datetime]) -> None:
    with db.session() as s:
        for kind, at in changes:
            s.add(DeviceEvent(device_pk=pk, kind=kind, at=at, detail={"reason": "test"}))


def heard(db: Database, tree: Tree, at: datetime) -> None:
    """Every point and device was last heard at ``at`` and is online (fresh state)."""
    with db.session() as s:
        for pk in tree.sensors.values():
            sensor = s.get(Sensor, pk)
            assert sensor is not None
            sensor.online, sensor.last_reading_at = True, at
        for pk in tree.devices.values():
            device = s.get(Device, pk)
            assert device is not None
            device.online, device.keepalive_at, device.registered_at = True, at, at


def all_online_since(db: Database, tree: Tree, since: datetime) -> None:
    """Online events for every point and device at ``since``."""
    for pk in tree.sensors.values():
        sensor_events(db, pk, ("online", since))
    for pk in tree.devices.values():
        device_events(db, pk, ("online", since))
