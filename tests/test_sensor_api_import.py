"""Bulk import of a tag table (位号表) as CSV or JSON: per-row errors, valid rows kept,
upsert, spreadsheet encodings, and a few hundred tags in one request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .sensor_api_support import ApiNode, api_node


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[ApiNode]:
    async with api_node(tmp_path, db_url) as n:
        yield n


async def _site(node: ApiNode) -> dict[str, Any]:
    config = {"host": "127.0.0.1", "port": 1}
    gw = await node.ok(
        "POST", "/api/gateways", json={"name": "DCS-1", "protocol": "modbus_tcp", "config": config}
    )
    inst = await node.ok(
        "POST", "/api/installations", json={"kind": "tank_area", "name": "一号罐区", "code": "T1"}
    )
    return {"gateway": gw, "installation": inst}


def _csv(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


async def _import(node: ApiNode, body: bytes, ctype: str, **params: Any) -> Any:
    return await node.client.post(
        "/api/sensors/import",
        content=body,
        params=params,
        headers={**node.auth("ent"), "content-type": ctype},
    )


async def test_csv_import_keeps_valid_rows_and_names_bad_ones(node: ApiNode) -> None:
    site = await _site(node)
    cam = node.site.cameras[0]
    table = _csv(
        [
            "tag,name,kind,unit,range_min,range_max,l,h,hh,gateway,installation,"
            "source.address,source.type,levels.hh,cameras,enabled",
            f"GT-101,可燃气体1,gas_combustible,,0,100,,25,50,DCS-1,T1,100,float32,red,{cam},是",
            "GT-102,可燃气体2,gas_combustible,,0,100,,25,50,DCS-1,T1,102,float32,,,",
            "GT-103,坏类型,radioactivity,,0,100,,,,,,,,,,",
            "PT-201,压力,pressure,MPa,0,4,1,3,2.5,,,,,,,",
            "GT-101,重复,gas_combustible,,0,100,,,,,,,,,,",
            "LT-301,液位,level,,0,20,2,,,DCS-9,,,,,,",
            "TT-401,温度,temperature,,-20,200,,80,,DCS-1,一号罐区,7,int16,,,false",
        ]
    )
    r = await _import(node, table, "text/csv; charset=utf-8")
    assert r.status_code == 422, r.text
    body = r.json()
    assert (body["created"], body["updated"]) == (3, 0)
    bad = {(e["row"], e["field"]): e for e in body["rejected"]}
    assert sorted(bad) == [(2, "kind"), (3, "thresholds.hh"), (4, "tag"), (5, "gateway")]
    assert bad[(2, "kind")]["line"] == 4 and bad[(2, "kind")]["tag"] == "GT-103"
    assert "repeated" in bad[(4, "tag")]["error"]
    assert "DCS-9" in bad[(5, "gateway")]["error"]

    points = {p["tag"]: p for p in await node.ok("GET", "/api/sensors")}
    assert sorted(points) == ["GT-101", "GT-102", "TT-401"]
    first = points["GT-101"]
    assert first["gateway_id"] == site["gateway"]["id"]
    assert first["installation_id"] == site["installation"]["id"]
    assert first["source"]["address"] == 100 and first["source"]["type"] == "float32"
    assert first["thresholds"] == {"h": 25, "hh": 50} and first["levels"] == {"hh": "red"}
    assert first["cameras"] == [cam] and first["unit"] == "%LEL" and first["enabled"] is True
    assert points["TT-401"]["enabled"] is False and points["TT-401"]["source"]["type"] == "int16"
    registry = node.ingest.registry
    assert registry.get(node.site.enterprise_id, "GT-102") is not None  # applied at once
    assert registry.get(node.site.enterprise_id, "TT-401") is None  # disabled

    # the same file again: known tags are refused, unless upserted
    again = (await _import(node, table, "text/csv")).json()
    assert (
        again["created"] == 0
        and sum("already exists" in e["error"] for e in again["rejected"]) == 3
    )
    fixed = _csv(
        [
            "tag,kind,range_min,range_max,h,hh,gateway,source.address,source.type",
            "GT-101,gas_combustible,0,100,20,40,DCS-1,100,float32",
            "PT-201,pressure,0,4,2.5,3,,,",
        ]
    )
    up = await _import(node, fixed, "text/csv", mode="upsert")
    assert up.status_code == 200 and (up.json()["created"], up.json()["updated"]) == (1, 1)
    points = {p["tag"]: p for p in await node.ok("GET", "/api/sensors")}
    assert points["GT-101"]["thresholds"] == {"h": 20, "hh": 40}
    assert points["GT-101"]["cameras"] == [] and points["PT-201"]["unit"] == "MPa"
    assert registry.get(node.site.enterprise_id, "GT-101").thresholds == {"h": 20, "hh": 40}


async def test_csv_header_and_encoding(node: ApiNode) -> None:
    r = await _import(node, _csv(["tag,kind,colour", "A,level,red"]), "text/csv")
    assert r.status_code == 422 and "colour" in r.json()["errors"][0]["error"]
    r = await _import(node, _csv(["name,kind", "x,level"]), "text/csv")
    assert r.status_code == 422 and "tag" in r.json()["errors"][0]["error"]
    assert await node.ok("GET", "/api/sensors") == []
    gbk = "tag,name,kind\nLT-1,一号储罐液位,level\n".encode("gb18030")
    r = await _import(node, gbk, "text/csv")
    assert r.status_code == 200, r.text
    bom = "\ufefftag,name,kind\nLT-2,二号储罐液位,level\n".encode()
    assert (await _import(node, bom, "text/csv")).status_code == 200
    names = [p["name"] for p in await node.ok("GET", "/api/sensors")]
    assert names == ["一号储罐液位", "二号储罐液位"]


async def test_json_import_roles_scope_and_size(node: ApiNode) -> None:
    site = await _site(node)
    rows = [
        {"tag": f"GT-{i:03d}", "kind": "gas_toxic", "range_min": 0, "range_max": 50,
         "thresholds": {"h": 10, "hh": 20}, "gateway": "DCS-1", "source": {"address": i},
         "installation_id": site["installation"]["id"]}
        for i in range(300)
    ]  # fmt: skip
    rows.append({"tag": "BAD", "kind": "gas_toxic", "source": {"address": 1}})  # no gateway
    rows.append("not a row")
    r = await _import(node, json.dumps({"points": rows}).encode(), "application/json")
    assert r.status_code == 422
    body = r.json()
    assert body["created"] == 300
    assert [(e["row"], e["field"]) for e in body["rejected"]] == [(300, "source"), (301, "row")]
    assert "line" not in body["rejected"][0]
    listed = await node.call("GET", "/api/sensors?limit=1")
    assert listed.headers["x-total-count"] == "300"
    assert len(node.ingest.registry) == 300
    gw = await node.ok("GET", f"/api/gateways/{site['gateway']['id']}")
    assert gw["points"] == 300

    assert (await _import(node, b"{", "application/json")).status_code == 422
    assert (await _import(node, b'{"a": 1}', "application/json")).status_code == 422
    r = await node.client.post(
        "/api/sensors/import", content=b"[]",
        headers={**node.auth("county"), "content-type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 403
    r = await _import(
        node, b'[{"tag": "X", "kind": "level"}]', "application/json",
        org_id=node.site.other_enterprise_id,
    )  # fmt: skip
    assert r.status_code == 404
    big = b"[" + b" " * (8 * 1024 * 1024) + b"]"
    assert (await _import(node, big, "application/json")).status_code == 413
