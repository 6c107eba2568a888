"""Alarm pipeline benchmark: alarms/s committed with images, and latency from the
AlarmEvent to the receiver's 200, with the local folder store and with S3 (moto_server).

    .venv/bin/python bench/alarms.py [--quick]

Reference measured in the same run: bare DB inserts/s of Alarm rows (no image, no outbox).
Goal (issue 7): p99 latency < 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from asyncio.subprocess import DEVNULL, PIPE
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from analyzers.events import AlarmEvent, AlarmStatus  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import Alarm, Channel, Device, OrgKind, Profile  # noqa: E402
from storage.objects import LocalObjectStore, ObjectStore, S3ObjectStore  # noqa: E402
from storage.org_tree import create_org  # noqa: E402
from tests import testdata  # noqa: E402
from tests.s3server import S3Server  # noqa: E402
from vms.alarm_component import AlarmComponent  # noqa: E402
from vms.config import load_settings  # noqa: E402
from vms.services import Services  # noqa: E402
from vms.uplink.receiver import free_port  # noqa: E402

IMAGE = (testdata.build() / "vision" / "bus.jpg").read_bytes()
CAMERAS = 8
DEVICE = "37010200001180000001"  # the NVR listing the cameras: an event names (device, channel)


def seed(db: Database) -> list[str]:
    with db.session() as s:
        county = create_org(s, "县", OrgKind.county, None, "370102")
        ent = create_org(s, "企业", OrgKind.enterprise, county, "370102001")
        dev = Device(device_id=DEVICE, org_id=ent.id)
        s.add(dev)
        s.flush()
        codes = [f"3701020010132{i:07d}" for i in range(1, CAMERAS + 1)]
        s.add_all(Channel(device_pk=dev.id, channel_id=c) for c in codes)
    return codes


def make_event(camera: str, status: int = 1, alarm_id: str | None = None) -> AlarmEvent:
    return AlarmEvent(
        alarm_id or str(uuid.uuid4()),
        AlarmStatus(status),
        camera,
        "enterprise",
        "no_helmet",
        "9",
        datetime.now(UTC),
        IMAGE,
        device_id=DEVICE,
    )


async def bare_inserts(db: Database, cameras: list[str], n: int) -> float:
    """Reference: one Alarm row per transaction, same concurrency, nothing else."""

    def insert(s, cam: str) -> None:
        s.add(Alarm(profile=Profile.enterprise, alarm_type="9", video_code=cam))

    async def worker(cam: str, k: int) -> None:
        for _ in range(k):
            await db.run(lambda s: insert(s, cam))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c, n // len(cameras)) for c in cameras))
    return n / (time.perf_counter() - t0)


class ReceiverProcess:
    """The reference receiver in its own process, so its parsing does not share our GIL;
    arrival times (CLOCK_MONOTONIC, system-wide) come back as JSON lines."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: dict[tuple[str, str], float] = {}
        self.errors = 0

    async def start(self) -> None:
        cmd = [sys.executable, "-m", "vms.uplink.receiver", "--port", str(self.port)]
        self.proc = await asyncio.create_subprocess_exec(
            *cmd, "--arrivals", "--no-validate", cwd=REPO, stdout=PIPE, stderr=DEVNULL
        )
        self.reader = asyncio.create_task(self._read())
        for _ in range(200):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("receiver did not start")

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            rec = json.loads(line)
            self.errors += bool(rec["errors"])
            self.arrivals.setdefault((rec["ALARM_ID"], rec["ALARM_STATUS"]), rec["t"])

    async def stop(self) -> None:
        self.proc.terminate()
        await self.proc.wait()
        self.reader.cancel()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/table4"


async def run_case(
    name: str, tmp: Path, store: ObjectStore, n_burst: int, n_paced: int, rate: float
) -> dict:
    receiver = ReceiverProcess()
    await receiver.start()
    arrivals = receiver.arrivals
    settings = load_settings(
        server={"data_dir": tmp / name},
        uplink={"receivers": [{"name": "p", "table4_url": receiver.url()}], "retry_base_s": 0.2},
    )
    settings.server.data_dir.mkdir(parents=True)
    db = Database(settings.database_url)
    db.open()
    cameras = seed(db)
    services = Services(settings, db, store)
    component = AlarmComponent(services)
    await component.start()
    started: dict[tuple[str, str], float] = {}
    try:
        ref = await bare_inserts(db, cameras, n_burst)

        async def one(ev: AlarmEvent) -> None:
            started[(ev.alarm_id, str(int(ev.status)))] = time.monotonic()
            await services.alarms.handle(ev)

        async def burst(cam: str, k: int) -> None:
            for _ in range(k):
                await one(make_event(cam))

        t0 = time.monotonic()
        await asyncio.gather(*(burst(c, n_burst // len(cameras)) for c in cameras))
        commit_rate = n_burst / (time.monotonic() - t0)
        burst_keys = set(started)
        await wait_for(lambda: burst_keys <= arrivals.keys(), 120)

        # paced: an analyzer-like steady stream of alarms and their clears over the cameras
        paced_keys = []
        interval = 1.0 / rate
        t_next = time.monotonic()
        tasks = []
        open_alarms: list[AlarmEvent] = []
        for i in range(n_paced):
            cam = cameras[i % len(cameras)]
            if i % 2 == 1 and open_alarms:
                first = open_alarms.pop(0)
                ev = make_event(first.channel_id, 0, first.alarm_id)
            else:
                ev = make_event(cam)
                open_alarms.append(ev)
            paced_keys.append((ev.alarm_id, str(int(ev.status))))
            tasks.append(asyncio.create_task(one(ev)))
            t_next += interval
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))
        await asyncio.gather(*tasks)
        await wait_for(lambda: set(paced_keys) <= arrivals.keys(), 60)
        lat = sorted(arrivals[k] - started[k] for k in paced_keys)
        burst_lat = sorted(arrivals[k] - started[k] for k in burst_keys)
        return {
            "case": name,
            "ref_inserts_s": ref,
            "commit_rate": commit_rate,
            "p50": quantile(lat, 0.5),
            "p99": quantile(lat, 0.99),
            "burst_p99": quantile(burst_lat, 0.99),
            "errors": receiver.errors,
        }
    finally:
        await component.stop()
        await receiver.stop()
        db.close()


def quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


async def wait_for(pred, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("receiver did not get every record")
        await asyncio.sleep(0.01)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run (< 60 s)")
    args = parser.parse_args()
    n_burst, n_paced, rate = (200, 100, 20.0) if args.quick else (1000, 600, 30.0)
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results.append(
            await run_case("local", tmp, LocalObjectStore(tmp / "objects"), n_burst, n_paced, rate)
        )
        with S3Server() as s3:
            store = S3ObjectStore(s3.endpoint, s3.access_key, s3.secret_key, "bench")
            results.append(await run_case("s3", tmp, store, n_burst, n_paced, rate))
    print(
        f"alarm pipeline: {n_burst} burst alarms over {CAMERAS} cameras, "
        f"{n_paced} paced at {rate:.0f}/s; image {len(IMAGE) // 1024} KiB"
    )
    print(
        f"{'store':6} {'bare DB ins/s':>14} {'alarms/s':>9} {'ratio':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'burst p99 ms':>13}  goal p99<2000ms"
    )
    for r in results:
        print(
            f"{r['case']:6} {r['ref_inserts_s']:14.0f} {r['commit_rate']:9.0f} "
            f"{r['commit_rate'] / r['ref_inserts_s']:6.2f} {r['p50'] * 1000:7.0f} "
            f"{r['p99'] * 1000:7.0f} {r['burst_p99'] * 1000:13.0f}  "
            f"{'OK' if r['p99'] < 2 else 'MISSED'}"
        )


if __name__ == "__main__":
    asyncio.run(main())
