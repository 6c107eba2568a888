"""Offline supervision benchmark: how long the periodic refresh of the daily figures, the
first catch-up after start and a weekly report take for a county-sized installation.

    .venv/bin/python bench/supervision.py [--quick] [--db-url postgresql+psycopg://...]

Reference measured in the same run: a bare read of the same window's events (the least
any refresh must do).  Default size: 200 enterprises × (25 points + 10 cameras) = 7,000
subjects, each point flapping offline/online twice a day for 14 days.
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

from sqlalchemy import insert, select  # noqa: E402

from storage.db import Database  # noqa: E402
from storage.models import Channel, Device, DeviceEvent, OrgKind  # noqa: E402
from storage.org_tree import create_org  # noqa: E402
from storage.sensor_models import Sensor, SensorEvent  # noqa: E402
from vms.config import load_settings  # noqa: E402
from vms.supervision.periods import Period, latest_due  # noqa: E402
from vms.supervision.service import Supervision  # noqa: E402

DAYS = 14


def seed(db: Database, enterprises: int, points: int, cameras: int, now: datetime) -> int:
    start = now - timedelta(days=DAYS)
    with db.session() as s:
        city = create_org(s, "市", OrgKind.city, None, "370100")
        county = create_org(s, "县", OrgKind.county, city, "370102")
        orgs = [
            create_org(s, f"企业{i}", OrgKind.enterprise, county, f"3701{i:05d}")
            for i in range(enterprises)
        ]
    sensor_rows, device_rows, events = [], [], 0
    with db.engine.begin() as conn:
        for i, org in enumerate(orgs):
            sensor_rows += [
                {"org_id": org.id, "tag": f"T{j}", "name": "", "kind": "pressure",
                 "created_at": start - timedelta(days=30), "online": True, "last_reading_at": now}
                for j in range(points)
            ]  # fmt: skip
            device_rows.append(
                {"device_id": f"37010200001180{i:06d}", "org_id": org.id, "online": True,
                 "keepalive_at": now, "registered_at": now, "created_at": start}
            )  # fmt: skip
        conn.execute(insert(Sensor), sensor_rows)
        conn.execute(insert(Device), device_rows)
        devices = conn.execute(select(Device.id)).scalars().all()
        conn.execute(
            insert(Channel),
            [{"device_pk": d, "channel_id": f"{d:09d}0132{c:07d}", "name": f"cam {c}"}
             for d in devices for c in range(cameras)],
        )  # fmt: skip
        pks = conn.execute(select(Sensor.id)).scalars().all()
        batch: list[dict[str, object]] = []
        for pk in pks:
            batch.append({"sensor_pk": pk, "kind": "online", "at": start, "detail": {}})
            for day in range(DAYS):
                for flap in range(2):
                    at = start + timedelta(days=day, hours=3 + 9 * flap + pk % 5)
                    batch.append({"sensor_pk": pk, "kind": "offline", "at": at, "detail": {}})
                    batch.append(
                        {"sensor_pk": pk, "kind": "online", "at": at + timedelta(minutes=40),
                         "detail": {}}
                    )  # fmt: skip
            if len(batch) > 20000:
                conn.execute(insert(SensorEvent), batch)
                events += len(batch)
                batch = []
        conn.execute(insert(SensorEvent), batch)
        events += len(batch)
        conn.execute(
            insert(DeviceEvent),
            [{"device_pk": d, "kind": "online", "at": start, "detail": {}} for d in devices],
        )
    return events


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--db-url", default="")
    args = ap.parse_args()
    enterprises = 20 if args.quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            server={"data_dir": Path(tmp), "timezone": "Asia/Shanghai"},
            database={"url": args.db_url},
        )
        db = Database(settings.database_url)
        db.open()
        now = datetime.now(UTC).replace(microsecond=0)
        t0 = time.perf_counter()
        events = seed(db, enterprises, 25, 10, now)
        subjects = enterprises * 35
        print(f"seeded {subjects} subjects, {events} events in {time.perf_counter() - t0:.1f} s")
        sup = Supervision(settings, db)

        t0 = time.perf_counter()
        rows = await sup.refresh(now)
        catch_up = time.perf_counter() - t0
        print(f"first refresh (catch-up, {rows} rows): {catch_up:.2f} s")

        steady = []
        for _ in range(3):
            t0 = time.perf_counter()
            rows = await sup.refresh(now)
            steady.append(time.perf_counter() - t0)
        print(f"periodic refresh (yesterday + today, {rows} rows): {min(steady):.2f} s")

        period: Period = latest_due("weekly", now, sup.tz, sup.report_time)
        t0 = time.perf_counter()
        await sup.make_report(period, now)
        print(f"weekly report ({enterprises} enterprises): {time.perf_counter() - t0:.2f} s")

        def bare_read() -> int:
            ev = SensorEvent
            since = now - timedelta(days=2)
            with db.session() as s:
                return len(
                    s.execute(select(ev.sensor_pk, ev.kind, ev.at).where(ev.at >= since)).all()
                )

        t0 = time.perf_counter()
        n = bare_read()
        ref = time.perf_counter() - t0
        print(f"reference: bare read of the window's {n} events: {ref:.2f} s "
              f"→ refresh = {min(steady) / ref:.1f}× the bare read")  # fmt: skip
        interval = settings.supervision.interval_s
        share = 100 * min(steady) / interval
        print(f"refresh cost at interval_s={interval:.0f}: {share:.2f} % of a core")
        db.close()


if __name__ == "__main__":
    asyncio.run(main())
