"""The sensor side of ``vms demo``: a seeded plant and the simulated gateway that feeds it.

Seeding (before the node starts, every time, idempotent): installations of the demo
enterprise, a Modbus TCP gateway pointing at the in-process simulator on a free port, an
HTTP push gateway with a fresh identification code and key, an MQTT gateway when Debian's
``mosquitto`` is installed, the simulator's points with thresholds, and the contacts the
escalation table names (UI push only: no addresses).  The component then runs the
simulator (and a private mosquitto), and links the gas point to the first demo camera
once the NVR's catalog has created it.  The gas point's scripted leak starts a minute
after start-up, crosses 25 % LEL about a minute later and 50 % LEL a minute after that.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sip.channel_ref import ChannelRef
from storage.models import Channel, Device, Organisation
from storage.sensor_models import (
    Duty,
    GatewayProtocol,
    Installation,
    InstallationKind,
    OrgContact,
    Sensor,
    SensorCamera,
    SensorGateway,
)
from vms.ingest.push import new_ident_code, new_key
from vms.ingest.sim.plant import LEAK_TAG, MQTT_ROWS_TOPIC, plant_points
from vms.ingest.sim.values import LeakRamp
from vms.logging import get_logger
from vms.services import Services

log = get_logger("vms.demo")

MODBUS_GATEWAY = "演示罐区DCS"
PUSH_GATEWAY = "演示装卸区推送"
MQTT_GATEWAY = "演示仓库MQTT"
MQTT_TOPIC = "plant/demo"
DEMO_LEAK = LeakRamp(start_s=60, rise_s=180, hold_s=180, fall_s=180, peak=65, repeat_s=1800)
INSTALLATIONS = {
    "tank_area": ("储罐区", True),
    "loading_rack": ("装卸栈台", True),
    "warehouse": ("仓库", False),
}
ENTERPRISE_DUTIES = (Duty.safety_dept, Duty.hq)
COUNTY_DUTIES = (Duty.industry_regulator, Duty.emergency_bureau, Duty.industry_dept)
CITY_DUTIES = (Duty.monitoring_center,)
MOSQUITTO_START_S = 10.0


def mosquitto_path() -> str | None:
    """Debian installs the broker in /usr/sbin, which a normal user's PATH may lack."""
    return shutil.which(
        "mosquitto", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_demo_sensors(session: Session, enterprise: Organisation) -> None:
    """Create the demo plant once; on every start, give the simulator fresh free ports."""
    gateways = {
        g.name: g
        for g in session.scalars(select(SensorGateway).where(SensorGateway.org_id == enterprise.id))
    }
    modbus = gateways.get(MODBUS_GATEWAY)
    if modbus is None:
        _create_plant(session, enterprise)
        return
    modbus.config = {**modbus.config, "host": "127.0.0.1", "port": free_port()}
    mqtt = gateways.get(MQTT_GATEWAY)
    if mqtt is not None:
        mqtt.config = {**mqtt.config, "host": "127.0.0.1", "port": free_port()}
        mqtt.enabled = mosquitto_path() is not None


def _create_plant(session: Session, enterprise: Organisation) -> None:
    installations = {}
    for kind, (name, major) in INSTALLATIONS.items():
        row = Installation(
            org_id=enterprise.id, kind=InstallationKind(kind), name=name, major_hazard=major
        )
        session.add(row)
        installations[kind] = row
    modbus = SensorGateway(
        org_id=enterprise.id,
        name=MODBUS_GATEWAY,
        protocol=GatewayProtocol.modbus_tcp,
        config={"host": "127.0.0.1", "port": free_port(), "unit_id": 1, "poll_s": 5.0},
    )
    push = SensorGateway(
        org_id=enterprise.id,
        name=PUSH_GATEWAY,
        protocol=GatewayProtocol.http_push,
        config={},
        ident_code=new_ident_code(),
        secret=new_key(),
    )
    mqtt = SensorGateway(
        org_id=enterprise.id,
        name=MQTT_GATEWAY,
        protocol=GatewayProtocol.mqtt,
        config={
            "host": "127.0.0.1",
            "port": free_port(),
            "topics": [f"{MQTT_TOPIC}/{MQTT_ROWS_TOPIC}"],
        },
        enabled=mosquitto_path() is not None,
    )
    session.add_all([modbus, push, mqtt])
    session.flush()
    by_transport = {"modbus": modbus, "push": push, "mqtt": mqtt}
    for point in plant_points(DEMO_LEAK, mqtt_prefix=MQTT_TOPIC):
        session.add(
            Sensor(
                org_id=enterprise.id,
                installation_id=installations[point.installation].id,
                gateway_id=by_transport[point.transport].id,
                tag=point.tag,
                name=point.name,
                kind=point.kind,
                unit=point.unit,
                range_min=point.low,
                range_max=point.high,
                thresholds=dict(point.thresholds),
                source=dict(point.source),
            )
        )
    _add_contacts(session, enterprise)
    log.info("demo sensors seeded", enterprise=enterprise.name, leak_point=LEAK_TAG)


def _add_contacts(session: Session, enterprise: Organisation) -> None:
    county = session.get(Organisation, enterprise.parent_id) if enterprise.parent_id else None
    city = session.get(Organisation, county.parent_id) if county and county.parent_id else None
    for org, duties in (
        (enterprise, ENTERPRISE_DUTIES),
        (county, COUNTY_DUTIES),
        (city, CITY_DUTIES),
    ):
        if org is None:
            continue
        for duty in duties:
            session.add(OrgContact(org_id=org.id, duty=duty, name=f"{org.name} {duty.value}"))


class DemoSensors:
    """Runs the simulated gateway (and a private mosquitto) for the seeded demo plant."""

    name = "demo-sensors"

    def __init__(self, services: Services, enterprise_code: str, first_camera: ChannelRef) -> None:
        self.services = services
        self.enterprise_code = enterprise_code
        self.first_camera = first_camera
        self.gateway: Any = None
        self.broker: subprocess.Popen[bytes] | None = None
        self._link: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from vms.ingest.sim.gateway import SimOptions, SimulatedGateway

        found = await self.services.db.run(self._load)
        if found is None:
            log.warning("demo sensors not seeded; simulator not started")
            return
        modbus, mqtt, push = found
        settings = self.services.settings
        options = SimOptions(
            modbus_host="127.0.0.1",
            modbus_port=int(modbus["port"]),
            unit_id=0,
            leak=DEMO_LEAK,
            timezone=settings.server.timezone,
            mqtt_topic=MQTT_TOPIC,
            reconnect_max_s=settings.ingest.reconnect_max_s,
        )
        if mqtt is not None and await self._start_broker(int(mqtt["port"])):
            options.mqtt_host, options.mqtt_port = "127.0.0.1", int(mqtt["port"])
        server = settings.server
        if push is not None and server.port:
            host = "127.0.0.1" if server.host in ("", "0.0.0.0", "::") else server.host
            options.push_url = f"http://{host}:{server.port}/api/ingest/push"
            options.push_ident, options.push_key = push
        self.gateway = SimulatedGateway(options)
        await self.gateway.start()
        self._link = asyncio.create_task(self._link_camera(), name="demo-sensor-camera")

    def _load(self, s: Session) -> tuple[dict[str, Any], dict[str, Any] | None, Any] | None:
        ent = s.scalar(select(Organisation).where(Organisation.code == self.enterprise_code))
        if ent is None:
            return None
        rows = {
            g.name: g
            for g in s.scalars(select(SensorGateway).where(SensorGateway.org_id == ent.id))
        }
        modbus = rows.get(MODBUS_GATEWAY)
        if modbus is None:
            return None
        mqtt = rows.get(MQTT_GATEWAY)
        push = rows.get(PUSH_GATEWAY)
        return (
            dict(modbus.config),
            dict(mqtt.config) if mqtt is not None and mqtt.enabled else None,
            (push.ident_code, push.secret) if push is not None and push.enabled else None,
        )

    async def _start_broker(self, port: int) -> bool:
        binary = mosquitto_path()
        if binary is None:
            return False
        folder = Path(self.services.settings.server.data_dir) / "demo-mosquitto"
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        logfile = (folder / "mosquitto.log").open("ab")
        self.broker = subprocess.Popen(  # same process group: a Ctrl+C ends it with us
            [binary, "-c", str(conf)], stdout=logfile, stderr=subprocess.STDOUT
        )
        logfile.close()  # the child keeps its own descriptor
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MOSQUITTO_START_S
        while loop.time() < deadline:
            if self.broker.poll() is not None:
                break
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                log.info("demo MQTT broker started", port=port)
                return True
            except OSError:
                await asyncio.sleep(0.1)
        log.warning("demo MQTT broker did not start; see demo-mosquitto/mosquitto.log", port=port)
        await self._stop_broker()
        return False

    async def _link_camera(self) -> None:
        """Once the first camera is in the catalog, link the leak's gas point to it."""

        def link(s: Session) -> bool | None:
            camera = self.first_camera
            channel = s.scalar(
                select(Channel)
                .join(Device, Channel.device_pk == Device.id)
                .where(Device.device_id == camera.device_id)
                .where(Channel.channel_id == camera.channel_id)
            )
            ent = s.scalar(select(Organisation).where(Organisation.code == self.enterprise_code))
            if channel is None or ent is None:
                return None
            sensor = s.scalar(select(Sensor).where(Sensor.org_id == ent.id, Sensor.tag == LEAK_TAG))
            if sensor is None or s.get(SensorCamera, (sensor.id, channel.id)) is not None:
                return False
            s.add(SensorCamera(sensor_pk=sensor.id, channel_pk=channel.id))
            return True

        try:
            linked = None
            for _ in range(240):  # two minutes for the NVR to register and send its catalog
                linked = await self.services.db.run(link)
                if linked is not None:
                    break
                await asyncio.sleep(0.5)
            if linked and self.services.ingest is not None:
                await self.services.ingest.reload()
                log.info(
                    "demo gas point watched by camera", tag=LEAK_TAG, channel=str(self.first_camera)
                )
        except Exception as exc:  # noqa: BLE001 - the demo runs on without the link
            log.warning("demo camera link failed", error=repr(exc))

    async def stop(self) -> None:
        if self._link is not None:
            self._link.cancel()
            await asyncio.gather(self._link, return_exceptions=True)
        if self.gateway is not None:
            await self.gateway.stop()
        await self._stop_broker()

    async def _stop_broker(self) -> None:
        broker, self.broker = self.broker, None
        if broker is None or broker.poll() is not None:
            return
        broker.terminate()
        try:
            await asyncio.to_thread(broker.wait, 5)
        except subprocess.TimeoutExpired:
            broker.kill()
            await asyncio.to_thread(broker.wait, 5)
