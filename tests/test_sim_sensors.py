"""The simulated sensor gateway: its value model and scripted leak, then its Modbus server,
HTTP pusher and MQTT publisher read by our own collectors and endpoint, the
``vms sim-sensors`` command, and the demo's sensors."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import func, select

from api.app import create_app
from storage.db import Database
from storage.models import Channel, Device
from storage.objects import LocalObjectStore
from storage.sensor_models import OrgContact, Sensor, SensorCamera, SensorGateway
from vms.config import load_settings
from vms.ingest.component import IngestComponent
from vms.ingest.gateway_config import validate_point_source
from vms.ingest.push import new_ident_code, new_key
from vms.ingest.sim.gateway import SimOptions, SimulatedGateway
from vms.ingest.sim.plant import LEAK_TAG, plant_points
from vms.ingest.sim.values import Batches, DailyCycle, Drift, FillCycle, LeakRamp, SimPoint
from vms.services import Services

from .ingest_support import (
    Broker,
    Rig,
    Site,
    add_gateway,
    add_sensor,
    free_port,
    mosquitto_binary,
    running_ingest,
)
from .ingest_support import wait_until as wait

LEAK = LeakRamp(start_s=60, rise_s=180, hold_s=180, fall_s=180, peak=65)

# --- the value model --------------------------------------------------------------------------


def test_leak_ramp_crosses_the_thresholds_at_the_scripted_times() -> None:
    h, hh = 25.0, 50.0
    assert LEAK.crossing_s(h) == pytest.approx(60 + 180 * 25 / 65)
    assert LEAK.crossing_s(hh) == pytest.approx(60 + 180 * 50 / 65)
    assert LEAK.clearing_s(hh) == pytest.approx(60 + 360 + 180 * 15 / 65)
    assert LEAK.clearing_s(h) == pytest.approx(60 + 360 + 180 * 40 / 65)
    assert LEAK.crossing_s(70) is None and LEAK.clearing_s(70) is None
    assert LEAK.value(59.9) == 0 and LEAK.value(0) == 0
    assert LEAK.value(LEAK.crossing_s(h)) == pytest.approx(h)  # type: ignore[arg-type]
    assert LEAK.value(LEAK.crossing_s(hh)) == pytest.approx(hh)  # type: ignore[arg-type]
    assert LEAK.value(300) == 65 and LEAK.value(419) == 65
    assert LEAK.value(LEAK.clearing_s(h)) == pytest.approx(h)  # type: ignore[arg-type]
    assert LEAK.value(600) == 0 and LEAK.value(5000) == 0
    again = LeakRamp(60, 180, 180, 180, 65, repeat_s=1800)
    assert again.value(1800 + 60 + 90) == pytest.approx(32.5) and again.value(1800 + 30) == 0


@pytest.mark.parametrize(
    "kw",
    [{"rise_s": 0}, {"start_s": -1}, {"repeat_s": 100}, {"fall_s": 0}],
)
def test_leak_ramp_refuses_impossible_scripts(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LeakRamp(**kw)


def test_the_leak_point_with_background_and_noise_crosses_on_time() -> None:
    [gas] = [p for p in plant_points(LEAK) if p.tag == LEAK_TAG]
    rng = random.Random(7)
    series = [(t, gas.sample(float(t), rng)) for t in range(0, 900)]
    assert all(0.0 <= v <= 3.5 for t, v in series if t < 60 or t > 610)  # background 0-3 %LEL
    first_h = next(t for t, v in series if v >= 25)
    first_hh = next(t for t, v in series if v >= 50)
    last_h = max(t for t, v in series if v >= 25)
    # The background (≤ 1.8 %LEL) can only bring a crossing forward, by ≤ 1.8/65 × 180 s.
    assert LEAK.crossing_s(25) - 8 <= first_h <= LEAK.crossing_s(25) + 1  # type: ignore[operator]
    assert LEAK.crossing_s(50) - 8 <= first_hh <= LEAK.crossing_s(50) + 1  # type: ignore[operator]
    assert LEAK.clearing_s(25) - 1 <= last_h <= LEAK.clearing_s(25) + 8  # type: ignore[operator]
    assert max(v for _, v in series) <= 65 + 3.5


def test_slow_models() -> None:
    cycle = DailyCycle(22.0, 5.0, peak_hour=15.0, start_s_of_day=12 * 3600)
    assert cycle.value(3 * 3600) == pytest.approx(27.0)  # 15:00
    assert cycle.value(15 * 3600) == pytest.approx(17.0)  # 03:00
    fill = FillCycle(9.0, 14.0, 4000.0)
    assert fill.value(0) == 9.0 and fill.value(2000) == 14.0 and fill.value(1000) == 11.5
    assert all(9.0 <= fill.value(t) <= 14.0 for t in range(0, 10000, 37))
    drift = Drift(1.2, 0.6, 900.0)
    values = [drift.value(t) for t in range(0, 20000, 13)]
    assert 0.6 <= min(values) < 1.0 and 1.4 < max(values) <= 1.8
    batches = Batches(60.0, 1800.0, 900.0, start_s=120.0)
    assert (batches.value(100), batches.value(121), batches.value(120 + 1000)) == (0.0, 60.0, 0.0)


def test_sample_clamps_rounds_and_is_reproducible() -> None:
    point = SimPoint(
        "X", "x", "level", "m", Drift(19.99, 0.0), 0.0, 20.0, noise=0.5, resolution=0.1
    )
    a = [point.sample(t, random.Random(3)) for t in range(5)]
    b = [point.sample(t, random.Random(3)) for t in range(5)]
    assert a == b
    rng = random.Random(1)
    many = [point.sample(0, rng) for _ in range(500)]
    assert max(many) == 20.0 and all(round(v * 10) == pytest.approx(v * 10) for v in many)


def test_plant_points_are_a_valid_configuration() -> None:
    points = plant_points(LEAK)
    assert len({p.tag for p in points}) == len(points)
    protocols = {"modbus": "modbus_tcp", "push": "http_push", "mqtt": "mqtt"}
    used: dict[str, set[int]] = {}
    for p in points:
        source = validate_point_source(protocols[p.transport], p.source)
        assert set(p.thresholds) <= {"hh", "h", "l", "ll", "rate"}
        assert p.low <= p.signal.value(0) <= p.high or p.kind == "flow"
        if p.transport == "modbus":
            width = 2 if source["type"] in ("int32", "uint32", "float32") else 1
            cells = {source["address"] + i for i in range(width)}
            assert not cells & used.setdefault(source["function"], set()), p.tag
            used[source["function"]] |= cells
    assert {"tank_area", "loading_rack", "warehouse"} == {p.installation for p in points}


# --- the simulated gateway read by our collectors -------------------------------------------------

# Again every 10 s: a test that starts slowly on a busy machine still sees a whole leak.
FAST_LEAK = LeakRamp(start_s=0.5, rise_s=3.0, hold_s=2.0, fall_s=3.0, peak=65.0, repeat_s=10.0)
TOLERANCE = {"LT-101": 2e-3, "LT-102": 2e-3, "PT-101": 1e-3}  # float32, 0.001 steps


def matches_history(sim: SimulatedGateway, tag: str, value: float) -> bool:
    eps = TOLERANCE.get(tag, 0.051)
    return any(abs(values[tag] - value) <= eps for _, values in sim.history)


def seed_modbus_plant(port: int) -> tuple[dict[str, int], Any]:
    ids: dict[str, int] = {}

    def seed(db: Database, site: Site) -> None:
        config = {"host": "127.0.0.1", "port": port, "poll_s": 0.3}
        ids["gw"] = add_gateway(db, site.enterprise_id, "modbus_tcp", config, name="sim DCS")
        for p in plant_points(FAST_LEAK):
            if p.transport == "modbus":
                add_sensor(
                    db,
                    site.enterprise_id,
                    ids["gw"],
                    p.tag,
                    p.source,
                    kind=p.kind,
                    range_min=p.low,
                    range_max=p.high,
                    thresholds=p.thresholds,
                )

    return ids, seed


async def assert_modbus_points_follow(rig: Rig, sim: SimulatedGateway) -> None:
    modbus_tags = [p.tag for p in sim.points if p.transport == "modbus"]
    for tag in modbus_tags:
        await wait(lambda tag=tag: len(rig.readings(tag)) >= 3, 30, f"readings of {tag}")
    for tag in modbus_tags:
        for _, value, quality in rig.readings(tag):
            assert quality == 0
            assert matches_history(sim, tag, value), (tag, value)
    # The scripted leak, seen through the registers: past both alarm levels, then back.
    await rig.wait_value(LEAK_TAG, lambda v: v >= 50.0, timeout=30)
    await rig.wait_value(LEAK_TAG, lambda v: v <= 5.0 and sim.current[LEAK_TAG] <= 5.0, 30)


async def test_simulator_modbus_server_polled_by_our_collector(tmp_path: Path) -> None:
    port = free_port()
    sim = SimulatedGateway(SimOptions(modbus_port=port, tick_s=0.2, leak=FAST_LEAK, seed=1))
    ids, seed = seed_modbus_plant(port)
    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            await sim.start()  # the collector is already trying: it connects on its next try
            assert sim.port == port
            await assert_modbus_points_follow(rig, sim)
            await wait(lambda: rig.gateway(ids["gw"]).last_error == "", 10, "no point errors")
            rows = rig.readings(LEAK_TAG)
            before = [v for at, v, _ in rows if at.replace(tzinfo=UTC) < sim.history[0][0]]
            assert before == []  # nothing stored before the simulator existed
    finally:
        await sim.stop()


@asynccontextmanager
async def http_node(services: Services, port: int = 0) -> AsyncIterator[uvicorn.Server]:
    """The real API (with ``POST /api/ingest/push``) on 127.0.0.1."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(services), host="127.0.0.1", port=port, lifespan="off", log_config=None
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait(lambda: server.started, 20, "uvicorn")
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


def http_port(server: uvicorn.Server) -> int:
    return server.servers[0].sockets[0].getsockname()[1]


async def test_simulator_pushes_sealed_batches_and_keeps_them_through_an_outage(
    tmp_path: Path,
) -> None:
    ident, key = new_ident_code(), new_key()

    def seed(db: Database, site: Site) -> None:
        with db.session() as s:
            gw = SensorGateway(
                org_id=site.enterprise_id,
                name="rack",
                protocol="http_push",
                config={},
                ident_code=ident,
                secret=key,
            )
            s.add(gw)
            s.flush()
            gw_id = gw.id
        for p in plant_points(FAST_LEAK):
            if p.transport == "push":
                add_sensor(db, site.enterprise_id, gw_id, p.tag, {}, kind=p.kind)

    async with running_ingest(tmp_path, seed=seed) as rig:
        port = free_port()
        async with http_node(rig.services, port):
            options = SimOptions(
                modbus_port=None,
                tick_s=0.2,
                push_url=f"http://127.0.0.1:{port}/api/ingest/push",
                push_ident=ident,
                push_key=key,
                push_period_s=0.3,
            )
            sim = SimulatedGateway(options)
            await sim.start()
            try:
                await wait(lambda: len(rig.readings("GT-201")) >= 3, 30, "pushed readings")
                await wait(lambda: rig.readings("FT-201"), 10, "pushed flow readings")
                for tag in ("GT-201", "FT-201"):
                    assert all(matches_history(sim, tag, v) for _, v, _ in rig.readings(tag))
                # readings arrive in batches: six pushes may take longer than three readings
                await wait(lambda: sim.counters["pushed"] >= 6, 30, "six pushed batches")
                assert sim.counters["push_failures"] == 0
            except BaseException:
                await sim.stop()
                raise
        # The endpoint is down: the simulator keeps what it could not deliver ...
        outage_start = datetime.now(UTC)
        await wait(lambda: sim.counters["push_failures"] >= 3, 30, "failed pushes")
        outage_end = datetime.now(UTC)
        try:
            async with http_node(rig.services, port):
                # ... and delivers it once the endpoint is back: no gap in the rows.
                await wait(
                    lambda: any(
                        at.replace(tzinfo=UTC) > outage_end for at, _, _ in rig.readings("GT-201")
                    ),
                    30,
                    "readings after the outage",
                )
                during = [
                    at
                    for at, _, _ in rig.readings("GT-201")
                    if outage_start < at.replace(tzinfo=UTC) < outage_end
                ]
                assert len(during) >= 2
        finally:
            await sim.stop()


@pytest.mark.skipif(mosquitto_binary() is None, reason="Debian's mosquitto is needed")
async def test_simulator_publishes_to_mqtt(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")
    await broker.start()
    prefix = "plant/test"

    def seed(db: Database, site: Site) -> None:
        config = {"host": "127.0.0.1", "port": broker.port, "topics": [f"{prefix}/rows"]}
        gw = add_gateway(db, site.enterprise_id, "mqtt", config)
        for p in plant_points(FAST_LEAK, mqtt_prefix=prefix):
            if p.transport == "mqtt":
                add_sensor(db, site.enterprise_id, gw, p.tag, p.source, kind=p.kind)

    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            options = SimOptions(
                modbus_port=None,
                tick_s=0.2,
                mqtt_host="127.0.0.1",
                mqtt_port=broker.port,
                mqtt_topic=prefix,
                mqtt_period_s=0.3,
            )
            sim = SimulatedGateway(options)
            await sim.start()
            try:
                for tag in ("TT-301", "HT-301"):  # its own topic; JSON rows
                    await wait(lambda tag=tag: len(rig.readings(tag)) >= 2, 30, f"{tag} readings")
                    assert all(matches_history(sim, tag, v) for _, v, _ in rig.readings(tag))
            finally:
                await sim.stop()
    finally:
        await broker.stop()


# --- the command --------------------------------------------------------------------------------


def vms_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VMS_", "SIM_SENSORS_"))}
    env.update(VMS_CONFIG=str(tmp_path / "absent.toml"), **extra)
    return env


def test_sim_sensors_command_refuses_bad_options(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "vms", "sim-sensors"]
    env = vms_env(tmp_path)
    bad = subprocess.run(
        [*run, "--push-url", "http://127.0.0.1:1/x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--ident" in bad.stderr
    env_key = vms_env(tmp_path, SIM_SENSORS_KEY="not-base64!", SIM_SENSORS_IDENT="ABC")
    bad = subprocess.run(
        [*run, "--push-url", "http://127.0.0.1:1/x"],
        env=env_key,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "256-bit key" in bad.stderr
    bad = subprocess.run(
        [*run, "--leak-rise", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "rise" in bad.stderr
    listed = subprocess.run(
        [*run, "--print-points"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0
    points = json.loads(listed.stdout)
    assert {p["tag"] for p in points} >= {LEAK_TAG, "ES-201", "GT-201", "TT-301"}
    assert next(p for p in points if p["tag"] == LEAK_TAG)["thresholds"] == {"h": 25.0, "hh": 50.0}


async def test_sim_sensors_command_serves_modbus_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vms",
        "sim-sensors",
        "--modbus-port",
        str(port),
        "--tick",
        "0.2",
        "--leak-start",
        "0.5",
        "--leak-rise",
        "3",
        "--leak-hold",
        "2",
        "--leak-fall",
        "3",
        "--leak-repeat",
        "10",
        env=vms_env(tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, seed = seed_modbus_plant(port)
        async with running_ingest(tmp_path, seed=seed) as rig:
            for p in plant_points(FAST_LEAK):
                if p.transport == "modbus":
                    await wait(lambda tag=p.tag: rig.readings(tag), 40, f"readings of {p.tag}")
            await rig.wait_value(LEAK_TAG, lambda v: v >= 50.0, timeout=30)
            level = rig.readings("LT-101")[-1][1]
            assert 9.0 - 0.1 <= level <= 14.0 + 0.1
            assert rig.readings("ES-201")[-1][1] == 0.0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"Traceback" not in err


# --- the demo ----------------------------------------------------------------------------------


async def test_demo_seeds_the_plant_and_its_simulator_feeds_it(tmp_path: Path) -> None:
    from vms.demo import ENTERPRISE_CODE, demo_channel_id, demo_device_id, demo_sensors, seed_demo

    http = free_port()
    settings = load_settings(
        server={"data_dir": tmp_path / "data", "port": http},
        auth={
            "jwt_secret": "test-secret-not-for-production-0123456789",
            "admin_password": "x" * 12,
        },
        ingest={"flush_interval_s": 0.05, "reconnect_max_s": 1.0, "refresh_s": 3600},
        demo={"devices": 1, "channels": 1},
    )
    settings.server.data_dir.mkdir(parents=True)
    db = Database(settings.database_url)
    db.open()
    services = Services(settings=settings, db=db, objects=LocalObjectStore(settings.objects_path))
    seed_demo(services)
    seed_demo(services)  # a second start: the same plant, not a second one
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Sensor)) == len(plant_points(LEAK))
        gateways = {g.name: g for g in s.scalars(select(SensorGateway))}
        assert len(gateways) == 3
        duties = {c.duty.value for c in s.scalars(select(OrgContact))}
        assert duties == {
            "safety_dept",
            "hq",
            "industry_regulator",
            "emergency_bureau",
            "industry_dept",
            "monitoring_center",
        }
        modbus = next(g for g in gateways.values() if g.protocol == "modbus_tcp")
        assert modbus.config["host"] == "127.0.0.1" and 0 < modbus.config["port"] < 65536
        push = next(g for g in gateways.values() if g.protocol == "http_push")
        assert push.ident_code and push.secret
        gas = s.scalar(select(Sensor).where(Sensor.tag == LEAK_TAG))
        assert gas is not None and gas.thresholds == {"h": 25.0, "hh": 50.0}
        # The first camera appears (as the NVR's catalog would create it).
        device = s.scalar(select(Device).where(Device.device_id == demo_device_id(1)))
        assert device is not None
        s.add(Channel(device_pk=device.id, channel_id=demo_channel_id(ENTERPRISE_CODE, 1)))
    ingest = IngestComponent(services)
    demo = demo_sensors(services)
    assert demo is not None
    await ingest.start()
    try:
        async with http_node(services, http):
            await demo.start()
            try:
                for tag in ("LT-101", "PT-101", LEAK_TAG, "TT-101", "ES-201"):  # Modbus
                    await wait(lambda tag=tag: _count(db, tag), 40, f"readings of {tag}")
                for tag in ("GT-201", "FT-201"):  # the push
                    await wait(lambda tag=tag: _count(db, tag), 40, f"pushed {tag}")
                if mosquitto_binary() is not None:
                    for tag in ("TT-301", "HT-301"):
                        await wait(lambda tag=tag: _count(db, tag), 40, f"MQTT {tag}")
                await wait(lambda: _linked(db), 30, "the gas point linked to the first camera")
            finally:
                await demo.stop()
        assert demo.broker is None  # the private mosquitto is gone
    finally:
        await ingest.stop()
        db.close()


def _count(db: Database, tag: str) -> int:
    from storage.sensor_models import Reading

    with db.session() as s:
        return (
            s.scalar(
                select(func.count())
                .select_from(Reading)
                .join(Sensor, Sensor.id == Reading.sensor_pk)
                .where(Sensor.tag == tag)
            )
            or 0
        )


def _linked(db: Database) -> bool:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(SensorCamera)) == 1
