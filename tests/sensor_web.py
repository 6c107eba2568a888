"""Browser-test support for the sensor-side UI: the real server with seeded points, readings
fed through the real ingest path in the server's loop, and a Chromium driver.

Builds on ``tests.live_web.LiveNode`` (the county with 甲化工 and 乙加油站, their cameras and
users): 甲化工 gets a tank area and a loading rack with four points, the gas point watched by
the wall's camera ``CHANNEL_ID``; 乙加油站 gets one gas point of its own.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from storage.models import Channel, Device, Organisation
from storage.sensor_models import Installation, InstallationKind, Sensor, SensorCamera
from vms.ingest.samples import Sample, SubmitResult

from .live_media import CHANNEL_ID, OTHER_CHANNEL_ID
from .live_web import CHROMEDRIVER, CHROMIUM, WAIT_S, LiveNode

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts" / "sensor-ui"
HISTORY_STEP_S = 60  # one reading a minute of history: inside the 5-minute upload period
HISTORY_DAYS = 7


@dataclass
class SeededPoints:
    gas: int  # 甲化工 GT-101, combustible gas %LEL, H 25 / HH 50, watched by CHANNEL_ID
    level: int  # 甲化工 LT-101, tank level m
    pressure: int  # 甲化工 PT-101
    grounding: int  # 甲化工 ES-201, static grounding (discrete)
    other_gas: int  # 乙加油站 GT-301, watched by OTHER_CHANNEL_ID
    ent_a: int
    ent_b: int


def gas_history(t: float) -> float:
    """A calm, visibly varying combustible-gas trace well below H (25 %LEL)."""
    return round(8 + 4 * math.sin(t / 1800) + 1.5 * math.sin(t / 170), 3)


def seed_points(db: Any) -> SeededPoints:
    with db.session() as s:
        orgs = {o.name: o for o in s.scalars(select(Organisation))}
        ent_a, ent_b = orgs["甲化工"], orgs["乙加油站"]
        channels = {c.channel_id: c for c in s.scalars(select(Channel))}
        for device in s.scalars(select(Device)):  # the NVRs registered and keep alive
            device.registered_at = device.keepalive_at = datetime.now(UTC)
        tank = Installation(
            org_id=ent_a.id,
            kind=InstallationKind.tank_area,
            name="1号罐区 Tank area 1",
            code="T1",
            major_hazard=True,
        )
        rack = Installation(
            org_id=ent_a.id, kind=InstallationKind.loading_rack, name="装卸栈台 Loading rack"
        )
        pumps = Installation(org_id=ent_b.id, kind=InstallationKind.tank_area, name="油罐区 Tanks")
        s.add_all([tank, rack, pumps])
        s.flush()

        def point(org: Organisation, inst: Installation, **kw: Any) -> Sensor:
            row = Sensor(org_id=org.id, installation_id=inst.id, **kw)
            s.add(row)
            s.flush()
            return row

        gas = point(
            ent_a,
            tank,
            tag="GT-101",
            name="罐区可燃气体 tank gas",
            kind="gas_combustible",
            unit="%LEL",
            range_min=0,
            range_max=100,
            thresholds={"h": 25, "hh": 50},
        )
        level = point(
            ent_a,
            tank,
            tag="LT-101",
            name="1号罐液位 tank level",
            kind="level",
            unit="m",
            range_min=0,
            range_max=12,
            thresholds={"ll": 0.5, "l": 1, "h": 10, "hh": 11},
        )
        pressure = point(
            ent_a,
            tank,
            tag="PT-101",
            name="1号罐压力 tank pressure",
            kind="pressure",
            unit="MPa",
            range_min=0,
            range_max=2.5,
            thresholds={"h": 1.6, "hh": 2.0},
        )
        grounding = point(
            ent_a, rack, tag="ES-201", name="静电接地 grounding", kind="grounding", unit=""
        )
        other = point(
            ent_b,
            pumps,
            tag="GT-301",
            name="加油区可燃气体 pump gas",
            kind="gas_combustible",
            unit="%LEL",
            range_min=0,
            range_max=100,
            thresholds={"h": 25, "hh": 50},
        )
        s.add(SensorCamera(sensor_pk=gas.id, channel_pk=channels[CHANNEL_ID].id))
        s.add(SensorCamera(sensor_pk=other.id, channel_pk=channels[OTHER_CHANNEL_ID].id))
        return SeededPoints(
            gas.id, level.id, pressure.id, grounding.id, other.id, ent_a.id, ent_b.id
        )


class SensorNode(LiveNode):
    """``LiveNode`` plus sensor points; readings go through ``services.ingest`` in its loop."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.points = seed_points(self.services.db)
        # a lower value must hold this long before a warning is downgraded or cleared
        self.settings.warning.downgrade_hold_s = 1.0
        self.settings.warning.tick_s = 1.0

    def run(self, coro: Any, timeout: float = WAIT_S) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, org_id: int, samples: list[Sample]) -> SubmitResult:
        """Hand readings to the ingest service (as a collector does) and wait until stored."""

        async def go() -> SubmitResult:
            ingest = self.services.ingest
            result = ingest.submit(org_id, samples, source="test")
            assert not result.errors, result.errors
            assert await ingest.committed(result.ticket), "readings not stored in time"
            return result

        return self.run(go())

    def feed_history(self) -> datetime:
        """A week of readings a minute for GT-101 (so 1 h, 6 h, 24 h and 7 d all have data)
        and a recent value for each other point; returns the newest reading's time."""
        now = datetime.now(UTC).replace(microsecond=0)
        start = now - timedelta(days=HISTORY_DAYS)
        p = self.points
        samples = []
        t = start
        while t <= now - timedelta(seconds=30):
            samples.append(Sample("GT-101", t, gas_history(t.timestamp())))
            t += timedelta(seconds=HISTORY_STEP_S)
        for i in range(0, len(samples), 2000):
            self.submit(p.ent_a, samples[i : i + 2000])
        last = now - timedelta(seconds=5)
        self.submit(
            p.ent_a,
            [Sample("LT-101", last, 6.4), Sample("PT-101", last, 0.82), Sample("ES-201", last, 0)],
        )
        self.submit(p.ent_b, [Sample("GT-301", last, 3.5)])
        return samples[-1].at


@contextmanager
def chromium(tmp_path: Path, width: int = 1400, height: int = 900) -> Iterator[Any]:
    """Headless Chromium as tests/test_live_browser.py starts it (no Selenium Manager)."""
    import os

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager fetch drivers
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--lang=zh-CN",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str, tmp_path: Path) -> Path:
    """Save a PNG under var/test-artifacts/sensor-ui (git-ignored) and the test's tmp dir."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    (tmp_path / f"{name}.png").write_bytes(path.read_bytes())
    return path


# --- page probes (run in the browser) ------------------------------------------------

CARD = """
const el = document.querySelector(`#sensor-groups .point[data-sensor="${arguments[0]}"]`);
if (!el) return null;
return {level: el.dataset.level, online: el.dataset.online, text: el.innerText,
        value: el.querySelector('.point-value').innerText,
        colour: getComputedStyle(el).borderLeftColor};
"""

CHART = """
const el = document.getElementById('trend-chart');
if (!el || !window.echarts) return null;
const chart = echarts.getInstanceByDom(el);
if (!chart) return null;
const opt = chart.getOption();
const canvas = el.querySelector('canvas');
let painted = 0;
if (canvas && canvas.width) {
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < data.length; i += 16) if (data[i + 3] > 0) painted++;
}
return {series: opt.series.map(s => ({name: s.name, n: s.data.length,
                                      marks: s.markLine ? s.markLine.data.map(m => m.name) : []})),
        rows: Number(el.dataset.rows), step: Number(el.dataset.step), painted,
        width: canvas ? canvas.width : 0};
"""
