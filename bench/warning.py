"""Warning engine benchmark: the cost of ``WarningEngine.observe`` per reading, on the event
loop, for the no-change paths and for readings that change the level.

    .venv/bin/python bench/warning.py [--quick]

Goal: the ingest path's 20,000 readings/s per core leaves 50 µs per reading for everything;
the warning check should be a small part of it.  Level changes only queue an op (the database
write happens in the writer task, not counted here).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from storage.db import Database  # noqa: E402
from vms.config import WarningSettings  # noqa: E402
from vms.ingest.points import Point  # noqa: E402
from vms.warning.engine import WarningEngine  # noqa: E402


def point(pk: int, kind: str = "pressure", **thresholds: float) -> Point:
    return Point(pk=pk, org_id=1, tag=f"P{pk}", kind=kind, range_min=0.0, range_max=10.0,
                 thresholds=thresholds)  # fmt: skip


def per_call_us(engine: WarningEngine, p: Point, values: list[float], n: int) -> float:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    ats = [t0 + timedelta(seconds=i) for i in range(len(values))]
    m = len(values)
    observe = engine.observe
    start = time.perf_counter()
    for i in range(n):
        j = i % m
        observe(p, ats[j], values[j])
    return (time.perf_counter() - start) / n * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run")
    args = ap.parse_args()
    n = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")  # never written: only ops are queued
        engine = WarningEngine(WarningSettings(downgrade_hold_s=0), db)
        rows = [
            ("normal, h/hh thresholds", point(1, h=6.0, hh=8.0), [2.0, 2.5, 3.0]),
            ("normal, h/hh/l/ll", point(2, ll=0.5, l=1.0, h=6.0, hh=8.0), [2.0, 2.5, 3.0]),
            ("in warning, level unchanged", point(3, h=6.0, hh=8.0), [7.0, 7.1, 7.2]),
            ("normal, with a rate threshold", point(4, h=6.0, rate=5.0), [2.0, 2.01, 2.02]),
            ("discrete (SIS), normal", point(5, kind="sis"), [0.0]),
        ]
        print(f"observe() per reading, {n:,} calls each (µs):")
        for label, p, values in rows:
            per_call_us(engine, p, values, 1000)  # warm up, open the episode where one is due
            us = per_call_us(engine, p, values, n)
            print(f"  {label:32s} {us:6.2f} µs   ({1e6 / us:>12,.0f}/s)")
        changes = n // 10
        p = point(6, h=6.0, hh=8.0)
        us = per_call_us(engine, p, [2.0, 7.0, 9.0, 7.0], changes)  # open/escalate/down/clear
        print(f"  {'every reading changes the level':32s} {us:6.2f} µs   ({1e6 / us:>12,.0f}/s)")
        print(f"  ops queued for the writer: {len(engine._ops):,}")


if __name__ == "__main__":
    asyncio.run(main())
