"""Shared helpers of the sensor collector tests: a seeded enterprise, a running ingest
service with its collector manager, a real mosquitto broker, a null-modem serial pair."""

from __future__ import annotations

import asyncio
import os
import pty
import shutil
import signal
import socket
import subprocess
import time
import tty
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from storage.db import Database
from storage.models import OrgKind
from storage.objects import LocalObjectStore
from storage.org_tree import create_org
from storage.sensor_models import Reading, Sensor, SensorEvent, SensorGateway
from vms.config import Settings, load_settings
from vms.ingest.collectors.manager import CollectorManager
from vms.ingest.service import IngestService
from vms.services import Services

ENTERPRISE_CODE = "370102001"

# Fast timings for tests: flush often, reconnect quickly, give up on a request soon.
FAST_INGEST: dict[str, Any] = {
    "flush_interval_s": 0.05,
    "refresh_s": 3600,  # tests call rig.sync() when they change the configuration
    "reconnect_max_s": 1.0,
    "poll_timeout_s": 1.0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until(
    predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition"
) -> Any:
    """Poll ``predicate()`` (sync, may query the database) until truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Site:
    county_id: int
    enterprise_id: int
    other_enterprise_id: int


def seed_enterprises(db: Database) -> Site:
    with db.session() as s:
        province = create_org(s, "山东省", OrgKind.province, None, "370000")
        city = create_org(s, "济南市", OrgKind.city, province, "370100")
        county = create_org(s, "历下区", OrgKind.county, city, "370102")
        ent = create_org(s, "示例化工", OrgKind.enterprise, county, ENTERPRISE_CODE)
        other = create_org(s, "另一化工", OrgKind.enterprise, county, "370102003")
        return Site(county.id, ent.id, other.id)


def add_gateway(
    db: Database,
    org_id: int,
    protocol: str,
    config: dict[str, Any],
    name: str = "gateway",
    enabled: bool = True,
) -> int:
    with db.session() as s:
        gw = SensorGateway(
            org_id=org_id, name=name, protocol=protocol, config=config, enabled=enabled
        )
        s.add(gw)
        s.flush()
        return gw.id


def add_sensor(
    db: Database,
    org_id: int,
    gateway_id: int | None,
    tag: str,
    source: dict[str, Any] | None = None,
    kind: str = "pressure",
    **fields: Any,
) -> int:
    with db.session() as s:
        row = Sensor(
            org_id=org_id, gateway_id=gateway_id, tag=tag, kind=kind, source=source or {}, **fields
        )
        s.add(row)
        s.flush()
        return row.id


@dataclass
class Rig:
    """A real ingest service (and collector manager) on a real database."""

    services: Services
    ingest: IngestService
    manager: CollectorManager
    site: Site

    @property
    def db(self) -> Database:
        return self.services.db

    async def sync(self) -> None:
        """What the refresh loops do every ``ingest.refresh_s``, now."""
        await self.ingest.reload()
        await self.manager.refresh()

    def readings(self, tag: str, org_id: int | None = None) -> list[tuple[datetime, float, int]]:
        org = org_id or self.site.enterprise_id
        with self.db.session() as s:
            rows = s.execute(
                select(Reading.at, Reading.value, Reading.quality)
                .join(Sensor, Sensor.id == Reading.sensor_pk)
                .where(Sensor.tag == tag, Sensor.org_id == org)
                .order_by(Reading.at)
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]

    def sensor(self, tag: str) -> Sensor:
        with self.db.session() as s:
            row = s.scalar(
                select(Sensor).where(Sensor.tag == tag, Sensor.org_id == self.site.enterprise_id)
            )
            assert row is not None, tag
            return row

    def gateway(self, gateway_id: int) -> SensorGateway:
        with self.db.session() as s:
            row = s.get(SensorGateway, gateway_id)
            assert row is not None
            return row

    def events(self, tag: str, kind: str | None = None) -> list[SensorEvent]:
        pk = self.sensor(tag).id
        with self.db.session() as s:
            stmt = select(SensorEvent).where(SensorEvent.sensor_pk == pk)
            if kind is not None:
                stmt = stmt.where(SensorEvent.kind == kind)
            return list(s.scalars(stmt.order_by(SensorEvent.id)))

    def collector_status(self, gateway_id: int) -> dict[str, Any]:
        for info in self.manager.status():
            if info["gateway_id"] == gateway_id:
                return info
        return {}

    async def wait_value(
        self, tag: str, predicate: Callable[[float], bool], timeout: float = 30.0
    ) -> list[tuple[datetime, float, int]]:
        """Wait for a stored reading of ``tag`` whose value satisfies ``predicate``."""
        return await wait_until(
            lambda: [r for r in self.readings(tag) if predicate(r[1])],
            timeout,
            f"a reading of {tag} that matches",
        )


def make_settings(tmp_path: Path, db_url: str = "", **ingest: Any) -> Settings:
    return load_settings(
        server={"data_dir": tmp_path / "data"},
        database={"url": db_url},
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
        ingest={**FAST_INGEST, **ingest},
    )


@asynccontextmanager
async def running_ingest(
    tmp_path: Path,
    db_url: str = "",
    seed: Callable[[Database, Site], None] | None = None,
    **ingest: Any,
) -> AsyncIterator[Rig]:
    """Seed the site (and ``seed(db, site)``), then start the ingest service and collectors."""
    settings = make_settings(tmp_path, db_url, **ingest)
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    services = Services(settings=settings, db=db, objects=LocalObjectStore(settings.objects_path))
    site = seed_enterprises(db)
    if seed is not None:
        seed(db, site)
    ingest_service = IngestService(settings.ingest, db, services.events)
    services.ingest = ingest_service
    await ingest_service.start()
    manager = CollectorManager(services, ingest_service)
    await manager.start()
    try:
        yield Rig(services, ingest_service, manager, site)
    finally:
        await manager.stop()
        await ingest_service.stop()
        db.close()


# --- mosquitto ----------------------------------------------------------------------------


def mosquitto_binary(name: str = "mosquitto") -> str | None:
    """Debian installs the broker in /usr/sbin, which a normal user's PATH may lack."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))


class Broker:
    """A private mosquitto on 127.0.0.1: anonymous, or with a password file."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.users = users or {}
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "persistence false"]
        if os.geteuid() == 0:  # else it drops to user "mosquitto", who cannot read our files
            lines.append("user root")
        if self.users:
            passwd = folder / "passwd"
            passwd.touch()
            tool = mosquitto_binary("mosquitto_passwd")
            assert tool, "mosquitto_passwd not found"
            for user, password in self.users.items():
                subprocess.run([tool, "-b", str(passwd), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    async def start(self) -> None:
        binary = mosquitto_binary()
        assert binary, "mosquitto not found"
        self.log = (self.folder / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("mosquitto did not listen") from None
                await asyncio.sleep(0.05)

    async def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            await asyncio.to_thread(self.proc.wait, 10)
        self.proc = None
        if getattr(self, "log", None) is not None:
            self.log.close()


# --- a null-modem cable between two pseudo-terminals -----------------------------------------


class NullModem:
    """Two pseudo-terminals whose bytes are relayed to each other, like a crossed RS-485 pair.

    Each end is a real tty (``/dev/pts/N``) that pyserial opens with termios settings, as it
    would a USB-RS485 adapter; the relay runs in the event loop.
    """

    def __init__(self) -> None:
        self._m1, self._s1 = pty.openpty()
        self._m2, self._s2 = pty.openpty()
        for fd in (self._s1, self._s2):
            tty.setraw(fd)
        self.a = os.ttyname(self._s1)
        self.b = os.ttyname(self._s2)
        self.bytes = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._m1, self._relay, self._m1, self._m2)
        self._loop.add_reader(self._m2, self._relay, self._m2, self._m1)

    def _relay(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except OSError:
            return
        self.bytes += len(data)
        os.write(dst, data)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._m1)
            self._loop.remove_reader(self._m2)
        for fd in (self._m1, self._s1, self._m2, self._s2):
            try:
                os.close(fd)
            except OSError:
                pass
