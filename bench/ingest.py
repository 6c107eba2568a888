"""Sensor ingest benchmark: readings/s sustained through ``IngestService`` (validation,
duplicate check, upload periods, aggregates, warning evaluation, batched write) into SQLite
and PostgreSQL, against a bare bulk insert of the same rows in the same run.

    .venv/bin/python bench/ingest.py [--quick] [--no-postgres]

A county: 200 enterprises × 200 points every 10 s = 4,000 readings/s on one core (floor);
goal ≥ 20,000/s.  Figures are readings per CPU-second of this process (the database server
of PostgreSQL runs in its own process and is reported apart) and per wall-second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from storage.db import Database  # noqa: E402
from storage.models import OrgKind  # noqa: E402
from storage.org_tree import create_org  # noqa: E402
from storage.sensor_models import Sensor  # noqa: E402
from tests.pg import PrivatePostgres  # noqa: E402
from vms.config import IngestSettings, WarningSettings  # noqa: E402
from vms.events import EventBus  # noqa: E402
from vms.ingest.samples import IngestBusy, Sample  # noqa: E402
from vms.ingest.service import IngestService  # noqa: E402
from vms.ingest.writer import write_readings  # noqa: E402

PERIOD_S = 10  # each point reports every 10 s (simulated time)
WARNING_SHARE = 0.005  # share of points that cross a threshold during the run


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def seed(db: Database, enterprises: int, points: int) -> list[tuple[int, list[str]]]:
    sites: list[tuple[int, list[str]]] = []
    with db.session() as s:
        county = create_org(s, "县", OrgKind.county, None, "370102")
        for e in range(enterprises):
            ent = create_org(s, f"企业{e}", OrgKind.enterprise, county, f"37010{e:04d}")
            tags = [f"PT-{e}-{p}" for p in range(points)]
            s.add_all(
                Sensor(
                    org_id=ent.id,
                    tag=t,
                    kind="pressure",
                    unit="MPa",
                    range_min=0.0,
                    range_max=10.0,
                    thresholds={"h": 6.0, "hh": 8.0},
                )
                for t in tags
            )
            sites.append((ent.id, tags))
    return sites


def rounds_of_samples(
    sites: list[tuple[int, list[str]]], rounds: int, seed_value: int = 7
) -> list[list[tuple[int, list[Sample]]]]:
    """Per round, one batch per enterprise with one reading per point; a few points ramp up."""
    rnd = random.Random(seed_value)
    t0 = datetime.now(UTC) - timedelta(seconds=PERIOD_S * (rounds + 1))
    hot = {(org, tag) for org, tags in sites for tag in tags if rnd.random() < WARNING_SHARE}
    out = []
    for r in range(rounds):
        at = t0 + timedelta(seconds=PERIOD_S * r)
        batches = []
        for org, tags in sites:
            samples = []
            for tag in tags:
                value = 2.0 + rnd.random()
                if (org, tag) in hot:
                    value = 2.0 + 7.0 * r / max(1, rounds - 1)  # crosses h, then hh
                samples.append(Sample(tag, at, value))
            batches.append((org, samples))
        out.append(batches)
    return out


def make_warnings(db: Database, ingest: IngestService):
    """The warning engine on the ingest path, when the build has one."""
    try:
        from vms.warning.engine import WarningEngine
    except ImportError:
        return None
    engine = WarningEngine.for_bench(db, WarningSettings(), ingest)  # type: ignore[attr-defined]
    ingest.warnings = engine
    return engine


async def run_ingest(db: Database, data, with_warnings: bool) -> tuple[float, float, int]:
    settings = IngestSettings(retention_interval_s=1e9, refresh_s=1e9, flush_interval_s=0.2)
    ingest = IngestService(settings, db, EventBus())
    await ingest.start()
    engine = make_warnings(db, ingest) if with_warnings else None
    if engine is not None and hasattr(engine, "start"):
        await engine.start()
    n = 0
    c0, w0 = cpu_s(), time.perf_counter()
    for batches in data:
        for org, samples in batches:
            while True:
                try:
                    result = ingest.submit(org, samples, "bench")
                    break
                except IngestBusy:  # back-pressure: wait for the writer, as collectors do
                    await asyncio.sleep(0.05)
            n += result.accepted
            await asyncio.sleep(0)  # let the flush task run, as collectors would
    await ingest.committed(ingest._ticket, timeout=600)
    c1, w1 = cpu_s(), time.perf_counter()
    if engine is not None and hasattr(engine, "stop"):
        await engine.stop()
    await ingest.stop()
    return n / (c1 - c0), n / (w1 - w0), n


def run_bare(db: Database, data, batch: int) -> tuple[float, float, int]:
    """Reference: the same rows, resolved to sensor pks beforehand, bulk-inserted as they are."""
    pks: dict[tuple[int, str], int] = {}
    with db.session() as s:
        for row in s.query(Sensor.id, Sensor.org_id, Sensor.tag):
            pks[(row.org_id, row.tag)] = row.id
    rows = [
        (pks[(org, smp.tag)], smp.at + timedelta(milliseconds=1), smp.value, 0)
        for batches in data
        for org, samples in batches
        for smp in samples
    ]
    c0, w0 = cpu_s(), time.perf_counter()
    with db.engine.begin() as conn:
        for i in range(0, len(rows), batch):
            write_readings(conn, rows[i : i + batch])
    c1, w1 = cpu_s(), time.perf_counter()
    return len(rows) / (c1 - c0), len(rows) / (w1 - w0), len(rows)


async def bench(url: str, label: str, enterprises: int, points: int, rounds: int) -> None:
    db = Database(url)
    db.open()
    sites = seed(db, enterprises, points)
    data = rounds_of_samples(sites, rounds)
    cpu_rate, wall_rate, n = await run_ingest(db, data, with_warnings=True)
    bare_cpu, bare_wall, _ = run_bare(db, data, IngestSettings().batch_max)
    print(
        f"{label:10s} {n:>8,d} readings  ingest {cpu_rate:>9,.0f}/CPU-s {wall_rate:>9,.0f}/s wall"
        f" | bare insert {bare_cpu:>9,.0f}/CPU-s {bare_wall:>9,.0f}/s wall"
        f" | ratio CPU {cpu_rate / bare_cpu:.2f} wall {wall_rate / bare_wall:.2f}  floor 4,000/s: "
        f"{'ok' if cpu_rate >= 4000 else 'MISSED'}  goal 20,000/s: "
        f"{'ok' if cpu_rate >= 20000 else 'missed'}"
    )
    db.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run")
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = ap.parse_args()
    enterprises, points, rounds = (20, 200, 10) if args.quick else (200, 200, 6)
    print(f"{enterprises} enterprises × {points} points, {rounds} rounds of one reading each")
    with tempfile.TemporaryDirectory() as tmp:
        await bench(f"sqlite:///{tmp}/bench.db", "SQLite", enterprises, points, rounds)
    if args.no_postgres:
        return
    pg = PrivatePostgres()
    pg.start()
    try:
        url = pg.create_database(f"bench_{os.getpid()}")
        await bench(url, "PostgreSQL", enterprises, points, rounds)
    finally:
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
