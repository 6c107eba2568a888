"""Sensor API benchmark on the real app served by uvicorn (SQLite): the encrypted HTTP push
(readings/s, answered after the rows are stored), the live page for 2,000 points, a month of
1-hour buckets, and the import of a 2,000-row tag table.

    .venv/bin/python bench/sensor_api.py [--quick]

References measured in the same run: the ingest service alone (submit + flush of the same
rows, no HTTP, no AES-GCM), and a bare SELECT of the live columns of the same points.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from sqlalchemy import select  # noqa: E402

from api.app import create_app  # noqa: E402
from api.routers.sensors import LIVE_COLUMNS  # noqa: E402
from api.security import create_token  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import OrgKind, Role, User  # noqa: E402
from storage.objects import LocalObjectStore  # noqa: E402
from storage.org_tree import create_org  # noqa: E402
from vms.config import load_settings  # noqa: E402
from vms.ingest.component import IngestComponent  # noqa: E402
from vms.ingest.push import seal  # noqa: E402
from vms.ingest.samples import Sample  # noqa: E402
from vms.services import Services  # noqa: E402

POINTS = 2000


async def run(quick: bool) -> None:
    rounds = 5 if quick else 20
    tmp = Path(tempfile.mkdtemp(prefix="bench-sensor-api-"))
    settings = load_settings(
        server={"data_dir": tmp},
        auth={"jwt_secret": "bench-secret-0123456789-0123456789-0123"},
        ingest={"push_max_rows": 10_000},
    )
    db = Database(settings.database_url)
    db.open()
    with db.session() as s:
        county = create_org(s, "县", OrgKind.county, None, "370102")
        ent = create_org(s, "企业", OrgKind.enterprise, county, "370102001")
        user = User(username="b", password_hash="-", role=Role.enterprise, org_id=ent.id)
        s.add(user)
        s.flush()
        org_id, user_id = ent.id, user.id
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    component = IngestComponent(services)
    await component.start()
    app = create_app(services)
    token = create_token(app.state.jwt_secret, user_id, "enterprise", 3600)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    h = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
        gw = (
            await c.post("/api/gateways", headers=h, json={"name": "p", "protocol": "http_push"})
        ).json()
        ident, key = gw["credentials"]["ident_code"], gw["credentials"]["key"]
        table = [
            {"tag": f"GT-{i:04d}", "kind": "gas_combustible", "range_min": 0, "range_max": 100,
             "thresholds": {"h": 25, "hh": 50}, "gateway_id": gw["id"]}
            for i in range(POINTS)
        ]  # fmt: skip
        t0 = time.perf_counter()
        r = await c.post("/api/sensors/import", headers=h, json=table)
        assert r.status_code == 200, r.text
        print(f"import of a {POINTS}-row tag table: {time.perf_counter() - t0:.2f} s")

        start = datetime.now(UTC) - timedelta(hours=2)
        push_s = []
        for k in range(rounds):
            at = (start + timedelta(seconds=10 * k)).isoformat()
            rows = [{"tag": t["tag"], "at": at, "value": 5.0 + k % 7} for t in table]
            env = seal(ident, key, {"batch_id": str(k), "readings": rows})
            t0 = time.perf_counter()
            r = await c.post("/api/ingest/push", json=env)
            push_s.append(time.perf_counter() - t0)
            assert r.status_code == 200 and r.json()["accepted"] == POINTS, r.text
        med = statistics.median(push_s)
        print(
            f"push of {POINTS} readings, answered after commit: median {med * 1000:.0f} ms "
            f"→ {POINTS / med:,.0f} readings/s"
        )
        ingest = services.ingest
        ref_s = []
        for k in range(rounds):
            at = start + timedelta(hours=1, seconds=10 * k)
            samples = [Sample(t["tag"], at, 5.0) for t in table]
            t0 = time.perf_counter()
            result = ingest.submit(org_id, samples)
            assert await ingest.committed(result.ticket)
            ref_s.append(time.perf_counter() - t0)
        ref = statistics.median(ref_s)
        print(
            f"  reference, ingest service alone: {ref * 1000:.0f} ms "
            f"({POINTS / ref:,.0f} readings/s); push costs {med / ref:.2f}×"
        )

        live_s = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            r = await c.get("/api/sensors/live", headers=h)
            live_s.append(time.perf_counter() - t0)
            assert r.status_code == 200 and len(r.json()) == POINTS
        bare_s = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            with db.session() as s:
                n = len(s.execute(select(*LIVE_COLUMNS)).all())
            bare_s.append(time.perf_counter() - t0)
            assert n == POINTS
        live, bare = statistics.median(live_s), statistics.median(bare_s)
        print(
            f"GET /api/sensors/live, {POINTS} points: median {live * 1000:.0f} ms "
            f"(bare SELECT {bare * 1000:.1f} ms, {live / bare:.0f}×)"
        )

        # a month of hourly buckets for one point
        pk = r.json()[0]["id"]
        t0 = time.perf_counter()
        r = await c.get(
            f"/api/sensors/{pk}/readings", headers=h,
            params={"start": (datetime.now(UTC) - timedelta(days=30)).isoformat()},
        )  # fmt: skip
        took = (time.perf_counter() - t0) * 1000
        assert r.status_code == 200
        print(f"30-day readings query (step {r.json()['step']}): {took:.0f} ms")
    server.should_exit = True
    await task
    await component.stop()
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    asyncio.run(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
