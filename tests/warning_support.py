"""Helpers of the warning tests: an org tree with a contact per duty, sensors, a simulated
clock, an engine rig and a real local HTTP receiver that can be told to fail."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from sqlalchemy import select

from storage.db import Database
from storage.models import OrgKind
from storage.org_tree import create_org
from storage.sensor_models import Duty, Notification, OrgContact, Sensor, SensorWarning
from vms.config import Settings, load_settings
from vms.events import EventBus
from vms.ingest.points import Point, PointRegistry, load_points
from vms.warning.engine import WarningEngine
from vms.warning.escalation import Escalator

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC).timestamp()  # 09:00 in Shanghai

# who holds which duty in the seeded tree, by e-mail address
EMAILS: dict[Duty, str] = {
    Duty.safety_dept: "safety@ent.example",
    Duty.hq: "hq@ent.example",
    Duty.industry_regulator: "regulator@county.example",
    Duty.emergency_bureau: "emergency@county.example",
    Duty.industry_dept: "industry@county.example",
    Duty.monitoring_center: "monitor@city.example",
}
PHONES: dict[Duty, str] = {Duty.safety_dept: "13800000001", Duty.industry_regulator: "13900000002"}


@dataclass
class Tree:
    province_id: int
    city_id: int
    county_id: int
    enterprise_id: int
    other_id: int  # another enterprise in the same county
    contacts: dict[Duty, int] = field(default_factory=dict)


def seed_tree(db: Database) -> Tree:
    with db.session() as s:
        province = create_org(s, "山东省", OrgKind.province, None, "370000")
        city = create_org(s, "济南市", OrgKind.city, province, "370100")
        county = create_org(s, "历下区", OrgKind.county, city, "370102")
        ent = create_org(s, "示例化工", OrgKind.enterprise, county, "370102001")
        other = create_org(s, "另一化工", OrgKind.enterprise, county, "370102003")
        tree = Tree(province.id, city.id, county.id, ent.id, other.id)
        holder = {
            Duty.safety_dept: ent,
            Duty.hq: ent,
            Duty.industry_regulator: county,
            Duty.emergency_bureau: county,
            Duty.industry_dept: county,
            Duty.monitoring_center: city,
        }
        for duty, org in holder.items():
            c = OrgContact(
                org_id=org.id,
                duty=duty,
                name=f"{duty.value} officer",
                email=EMAILS[duty],
                phone=PHONES.get(duty, ""),
            )
            s.add(c)
            s.flush()
            tree.contacts[duty] = c.id
        s.add(OrgContact(org_id=other.id, duty=Duty.safety_dept, email="safety@other.example"))
    return tree


def add_sensor(
    db: Database,
    org_id: int,
    tag: str,
    kind: str = "pressure",
    thresholds: dict[str, float] | None = None,
    **extra: Any,
) -> int:
    fields: dict[str, Any] = {
        "name": f"{tag} 罐区压力",
        "unit": "MPa",
        "range_min": 0.0,
        "range_max": 10.0,
        "thresholds": thresholds if thresholds is not None else {"h": 6.0, "hh": 8.0},
        **extra,
    }
    with db.session() as s:
        sensor = Sensor(org_id=org_id, tag=tag, kind=kind, **fields)
        s.add(sensor)
        s.flush()
        return sensor.id


class SimClock:
    """Simulated wall clock in epoch seconds: tests move it, nothing sleeps."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def at(self, offset_s: float = 0.0) -> datetime:
        return datetime.fromtimestamp(self.t + offset_s, UTC)


def warning_settings(tmp_path: Path, db_url: str = "", **warning: Any) -> Settings:
    return load_settings(
        server={"data_dir": tmp_path / "data"},
        database={"url": db_url},
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
        warning={"downgrade_hold_s": 30, **warning},
    )


@dataclass
class Rig:
    settings: Settings
    db: Database
    tree: Tree
    registry: PointRegistry
    clock: SimClock
    events: EventBus
    engine: WarningEngine
    escalator: Escalator

    def point(self, pk: int) -> Point:
        return self.registry.by_pk[pk]

    async def feed(self, pk: int, value: float, advance_s: float = 0.0) -> None:
        """One reading at the simulated now (after moving the clock), stored."""
        self.clock.t += advance_s
        self.engine.observe(self.point(pk), self.clock.at(), value)
        assert await self.engine.drain(30), "transitions not stored"

    async def tick(self, advance_s: float = 0.0) -> list[dict[str, Any]]:
        self.clock.t += advance_s
        return await self.escalator.tick(self.clock.t)

    def reload_points(self) -> None:
        with self.db.session() as s:
            self.registry.replace(load_points(s))

    async def restart(self) -> None:
        """A new engine on the same database, as after a process restart."""
        await self.engine.stop()
        registry = PointRegistry()
        with self.db.session() as s:
            registry.replace(load_points(s))
        self.registry = registry
        self.engine = WarningEngine(
            self.settings.warning, self.db, self.events, registry=registry, clock=self.clock
        )
        await self.engine.start()
        self.escalator = Escalator(self.engine)

    def warnings(self) -> list[SensorWarning]:
        with self.db.session() as s:
            rows = s.scalars(select(SensorWarning).order_by(SensorWarning.id)).all()
            for w in rows:
                _ = w.events
            return list(rows)

    def notifications(self) -> list[Notification]:
        with self.db.session() as s:
            return list(s.scalars(select(Notification).order_by(Notification.id)))


@contextlib.asynccontextmanager
async def engine_rig(
    tmp_path: Path, db_url: str, sensors: list[dict[str, Any]], **warning: Any
) -> AsyncIterator[tuple[Rig, list[int]]]:
    settings = warning_settings(tmp_path, db_url, **warning)
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    tree = seed_tree(db)
    pks = [add_sensor(db, spec.pop("org_id", tree.enterprise_id), **spec) for spec in sensors]
    registry = PointRegistry()
    with db.session() as s:
        registry.replace(load_points(s))
    clock = SimClock()
    events = EventBus()
    engine = WarningEngine(settings.warning, db, events, registry=registry, clock=clock)
    await engine.start()
    rig = Rig(settings, db, tree, registry, clock, events, engine, Escalator(engine))
    try:
        yield rig, pks
    finally:
        await rig.engine.stop()
        db.close()


def duties_of(recipients: list[dict[str, Any]]) -> list[str]:
    return sorted(r["duty"] for r in recipients)


def targets(rows: list[Notification], channel: str = "email") -> list[str]:
    return sorted(n.target for n in rows if n.channel == channel)


# --- a real HTTP receiver ------------------------------------------------------------------


@dataclass
class Receiver:
    """Records JSON POSTs; ``fail_next`` answers that many with 503 first."""

    posts: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    fail_next: int = 0
    refused: int = 0
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body, _ in self.posts if p == path]


@contextlib.asynccontextmanager
async def http_receiver(port: int = 0) -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = FastAPI()

    @app.post("/{path:path}")
    async def take(path: str, request: Request) -> Response:
        if rec.fail_next > 0:
            rec.fail_next -= 1
            rec.refused += 1
            return Response("busy", status_code=503)
        rec.posts.append((f"/{path}", await request.json(), dict(request.headers)))
        return Response('{"ok": true}', media_type="application/json")

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:
                await asyncio.sleep(0.02)
        rec.port = server.servers[0].sockets[0].getsockname()[1]
        yield rec
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[int, list[Any]]]:
    """A real aiosmtpd server on 127.0.0.1 (own thread); yields (port, received envelopes)."""
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()
