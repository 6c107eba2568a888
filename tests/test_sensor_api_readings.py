"""Readings through the API: raw rows or 1-min/1-h buckets chosen by range, exact after late
data, open buckets merged in, row caps, CSV export, and the live values of visible points."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.sensor_models import Reading
from vms.ingest.samples import Sample

from .sensor_api_support import ApiNode, api_node


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[ApiNode]:
    async with api_node(tmp_path, db_url) as n:
        yield n


async def _point(node: ApiNode, tag: str, who: str = "ent") -> int:
    body = {"tag": tag, "kind": "gas_combustible", "range_min": 0, "range_max": 100}
    return (await node.ok("POST", "/api/sensors", who, json=body))["id"]


async def _submit(node: ApiNode, org_id: int, samples: list[Sample]) -> None:
    result = node.ingest.submit(org_id, samples)
    assert not result.errors, result.errors
    assert await node.ingest.committed(result.ticket)


def _expected_buckets(node: ApiNode, pk: int, period: int) -> dict[datetime, dict[str, Any]]:
    """What every bucket must say, computed from the raw rows themselves."""
    with node.services.db.session() as s:
        raw = s.execute(
            select(Reading.at, Reading.value).where(Reading.sensor_pk == pk).order_by(Reading.at)
        ).all()
    groups: dict[datetime, list[tuple[datetime, float]]] = defaultdict(list)
    for at, value in raw:
        start = datetime.fromtimestamp(int(at.timestamp()) // period * period, UTC)
        groups[start].append((at, value))
    return {
        start: {
            "count": len(rows),
            "min": min(v for _, v in rows),
            "max": max(v for _, v in rows),
            "avg": sum(v for _, v in rows) / len(rows),
            "last": max(rows)[1],
        }
        for start, rows in groups.items()
    }


def _iso(at: datetime) -> str:
    return at.isoformat()


async def test_raw_and_bucketed_readings_exact_after_late_data(node: ApiNode) -> None:
    org = node.site.enterprise_id
    pk = await _point(node, "GT-1")
    now = datetime.now(UTC)
    t0 = datetime.fromtimestamp(int((now - timedelta(hours=3)).timestamp()) // 3600 * 3600, UTC)
    samples = [Sample("GT-1", t0 + timedelta(seconds=10 * i), float(i % 37)) for i in range(720)]
    await _submit(node, org, samples)
    # a late row into a bucket already written: merged, the figures stay exact
    late = node.ingest.submit(org, [Sample("GT-1", t0 + timedelta(seconds=5), 99.0)])
    assert late.late == 1 and await node.ingest.committed(late.ticket)
    path = f"/api/sensors/{pk}/readings"

    short = await node.ok(
        "GET", path, params={"start": _iso(t0), "end": _iso(t0 + timedelta(minutes=30))}
    )
    assert short["step"] == 0 and short["truncated"] is False and short["tag"] == "GT-1"
    assert len(short["rows"]) == 181 and short["unit"] == "%LEL"
    late_row = short["rows"][1]
    assert datetime.fromisoformat(late_row["at"]) == t0 + timedelta(seconds=5)
    assert (late_row["value"], late_row["quality"]) == (99.0, 3)  # stored as history
    ats = [r["at"] for r in short["rows"]]
    assert ats == sorted(ats)

    minutes = await node.ok(
        "GET", path, params={"start": _iso(t0), "end": _iso(t0 + timedelta(hours=2)), "step": 60}
    )
    expected = _expected_buckets(node, pk, 60)
    assert minutes["step"] == 60 and len(minutes["rows"]) == 120 == len(expected)
    for row in minutes["rows"]:
        want = expected[datetime.fromisoformat(row["at"])]
        assert {k: row[k] for k in want} == pytest.approx(want), row
    assert minutes["rows"][0]["count"] == 7 and minutes["rows"][0]["max"] == 99.0

    hours = await node.ok(
        "GET", path, params={"start": _iso(t0), "end": _iso(t0 + timedelta(hours=2)), "limit": 100}
    )
    assert hours["step"] == 3600 and len(hours["rows"]) == 2  # 120 minutes would not fit in 100
    expected_h = _expected_buckets(node, pk, 3600)
    for row in hours["rows"]:
        want = expected_h[datetime.fromisoformat(row["at"])]
        assert {k: row[k] for k in want} == pytest.approx(want)

    two_days = await node.ok("GET", path, params={"start": _iso(now - timedelta(days=2))})
    assert two_days["step"] == 60 and len(two_days["rows"]) == 120
    capped = await node.ok(
        "GET", path, params={"start": _iso(t0), "end": _iso(now), "step": 0, "limit": 50}
    )
    assert capped["truncated"] is True and len(capped["rows"]) == 50
    recent = await node.ok("GET", path)  # the last hour: nothing there
    assert recent["rows"] == [] and recent["step"] == 0

    r = await node.call("GET", path, params={"start": _iso(now), "end": _iso(t0)})
    assert r.status_code == 422
    assert (await node.call("GET", path, params={"step": 5})).status_code == 422

    # the current minute is still open in the ingest service: merged into the answer
    fresh = datetime.now(UTC) - timedelta(seconds=1)
    await _submit(node, org, [Sample("GT-1", fresh, 12.5)])
    current = await node.ok(
        "GET", path, params={"start": _iso(fresh - timedelta(minutes=3)), "step": 60}
    )
    assert [(r["count"], r["last"]) for r in current["rows"]] == [(1, 12.5)]


async def test_csv_export(node: ApiNode) -> None:
    org = node.site.enterprise_id
    pk = await _point(node, "GT-7")
    t0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    node.ingest.settings.future_tolerance_s = 1e9  # fixed times, whatever today is
    await _submit(node, org, [Sample("GT-7", t0 + timedelta(seconds=20 * i), i) for i in range(9)])
    params = {"start": _iso(t0), "end": _iso(t0 + timedelta(hours=1))}
    r = await node.call("GET", f"/api/sensors/{pk}/readings.csv", params=params)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "GT-7-raw.csv" in r.headers["content-disposition"]
    assert r.content.startswith("\ufeff".encode())
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert table[0] == ["tag", "unit", "at", "value", "quality"]
    assert table[1] == ["GT-7", "%LEL", "2026-12-01T08:00:00+08:00", "0.0", "good"]
    assert len(table) == 10
    r = await node.call("GET", f"/api/sensors/{pk}/readings.csv", params={**params, "step": 60})
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert table[0] == ["tag", "unit", "bucket", "count", "min", "max", "avg", "last"]
    assert table[1:] == [
        ["GT-7", "%LEL", "2026-12-01T08:00:00+08:00", "3", "0.0", "2.0", "1.0", "2.0"],
        ["GT-7", "%LEL", "2026-12-01T08:01:00+08:00", "3", "3.0", "5.0", "4.0", "5.0"],
        ["GT-7", "%LEL", "2026-12-01T08:02:00+08:00", "3", "6.0", "8.0", "7.0", "8.0"],
    ]
    assert (await node.call("GET", f"/api/sensors/{pk}/readings.csv", "other")).status_code == 404


async def test_live_values_in_scope(node: ApiNode) -> None:
    site = node.site
    mine = [await _point(node, f"GT-{i}") for i in range(3)]
    theirs = await _point(node, "GT-0", "other")
    now = datetime.now(UTC) - timedelta(seconds=2)
    await _submit(node, site.enterprise_id, [Sample("GT-1", now, 31.5)])
    await _submit(node, site.other_enterprise_id, [Sample("GT-0", now, 7.0)])
    live = await node.ok("GET", "/api/sensors/live")
    assert [p["id"] for p in live] == mine
    one = live[1]
    assert one["value"] == 31.5 and one["online"] is True and one["tag"] == "GT-1"
    assert datetime.fromisoformat(one["last_reading_at"]) == now
    assert live[0]["value"] is None and live[0]["online"] is False
    county = await node.ok("GET", "/api/sensors/live", "county")
    assert {p["id"] for p in county} == {*mine, theirs}
    only = await node.ok("GET", f"/api/sensors/live?org_id={site.other_enterprise_id}", "county")
    assert [p["id"] for p in only] == [theirs]
    r = await node.call("GET", f"/api/sensors/live?org_id={site.other_enterprise_id}")
    assert r.status_code == 404
    # a disabled point is listed (the page shows it greyed), with its last stored value
    await node.ok("PATCH", f"/api/sensors/{mine[1]}", json={"enabled": False})
    await node.ingest.flush()
    live = await node.ok("GET", "/api/sensors/live")
    assert live[1]["enabled"] is False and live[1]["value"] == 31.5
