"""Sensor configuration API through the real app on uvicorn: gateways (config checks, push
credentials shown once, key rotation), installations, points (every validation rule, tag
uniqueness, cameras, reload into the ingest service) and organisation scoping."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from storage.sensor_models import Sensor, SensorGateway

from .sensor_api_support import COUNTY_CAMERA, ApiNode, api_node


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[ApiNode]:
    async with api_node(tmp_path, db_url) as n:
        yield n


def fields_of(r: Any) -> dict[str, str]:
    body = r.json()
    assert body["detail"] == "invalid request", body
    return {e["field"]: e["error"] for e in body["errors"]}


async def modbus_gateway(node: ApiNode, who: str = "ent", **kw: Any) -> dict[str, Any]:
    body = {"name": "DCS", "protocol": "modbus_tcp", "config": {"host": "127.0.0.1", "port": 1}}
    return await node.ok("POST", "/api/gateways", who, json={**body, **kw})


async def test_gateway_crud_credentials_and_config_checks(node: ApiNode) -> None:
    gw = await modbus_gateway(node)
    assert gw["org_id"] == node.site.enterprise_id and gw["credentials"] is None
    assert gw["config"] == {
        "host": "127.0.0.1", "port": 1, "unit_id": 1, "poll_s": 5.0, "timeout_s": None,
        "max_block": 100,
    }  # fmt: skip
    assert gw["points"] == 0 and gw["has_key"] is False

    r = await node.call(
        "POST", "/api/gateways", json={"name": "x", "protocol": "modbus_tcp", "config": {}}
    )
    assert r.status_code == 422 and "host" in fields_of(r)["body.config"]
    bad = {"name": "x", "protocol": "modbus_tcp", "config": {"host": "h", "port": 70000}}
    r = await node.call("POST", "/api/gateways", json=bad)
    assert r.status_code == 422 and "port" in fields_of(r)["body.config"]
    bad["config"] = {"host": "h", "colour": "red"}
    r = await node.call("POST", "/api/gateways", json=bad)
    assert r.status_code == 422 and "colour" in fields_of(r)["body.config"]
    r = await node.call("POST", "/api/gateways", json={"name": "x", "protocol": "bacnet"})
    assert r.status_code == 422 and "body.protocol" in fields_of(r)
    # a county is not a site; an organisation out of scope does not exist
    r = await node.call(
        "POST", "/api/gateways", "admin",
        json={"name": "x", "protocol": "http_push", "org_id": node.site.county_id},
    )  # fmt: skip
    assert r.status_code == 422 and "county" in fields_of(r)["body.org_id"]
    r = await node.call(
        "POST", "/api/gateways",
        json={"name": "x", "protocol": "http_push", "org_id": node.site.other_enterprise_id},
    )  # fmt: skip
    assert r.status_code == 404
    r = await node.call("POST", "/api/gateways", "admin", json={"name": "x", "protocol": "mqtt"})
    assert r.status_code == 422 and "org_id" in fields_of(r)["body.org_id"]
    station = await node.ok(
        "POST", "/api/gateways", "admin",
        json={"name": "站", "protocol": "http_push", "org_id": node.site.station_id},
    )  # fmt: skip
    assert station["org_id"] == node.site.station_id  # a gas station is a site too

    push = await node.ok("POST", "/api/gateways", json={"name": "push", "protocol": "http_push"})
    creds = push["credentials"]
    assert len(creds["ident_code"]) == 16 and int(creds["ident_code"], 16) >= 0
    assert len(base64.b64decode(creds["key"])) == 32 and push["has_key"] is True
    for path in ("/api/gateways", f"/api/gateways/{push['id']}"):
        text = (await node.call("GET", path)).text
        assert creds["key"] not in text and creds["ident_code"] not in text
    rotated = await node.ok("POST", f"/api/gateways/{push['id']}/rotate-key")
    assert rotated["ident_code"] == creds["ident_code"] and rotated["key"] != creds["key"]
    with node.services.db.session() as s:
        assert s.get_one(SensorGateway, push["id"]).secret == rotated["key"]
    r = await node.call("POST", f"/api/gateways/{gw['id']}/rotate-key")
    assert r.status_code == 409

    # secret config fields are masked; sent back masked they are kept
    mqtt_cfg = {"host": "broker", "username": "u", "password": "s3cret", "topics": ["plant/#"]}
    mqtt = await node.ok(
        "POST", "/api/gateways", json={"name": "mq", "protocol": "mqtt", "config": mqtt_cfg}
    )
    assert mqtt["config"]["password"] == "********" and "s3cret" not in str(mqtt)
    cfg = {**mqtt["config"], "port": 8883}
    patched = await node.ok("PATCH", f"/api/gateways/{mqtt['id']}", json={"config": cfg})
    assert patched["config"]["port"] == 8883
    with node.services.db.session() as s:
        assert s.get_one(SensorGateway, mqtt["id"]).config["password"] == "s3cret"
    cfg["password"] = "new"
    await node.ok("PATCH", f"/api/gateways/{mqtt['id']}", json={"config": cfg})
    with node.services.db.session() as s:
        assert s.get_one(SensorGateway, mqtt["id"]).config["password"] == "new"
    r = await node.call("PATCH", f"/api/gateways/{mqtt['id']}", json={"protocol": "opcua"})
    assert r.status_code == 422
    r = await node.call("PATCH", f"/api/gateways/{mqtt['id']}", json={"config": {"port": 1}})
    assert r.status_code == 422 and "host" in fields_of(r)["body.config"]

    listed = await node.ok("GET", "/api/gateways?protocol=mqtt")
    assert [g["id"] for g in listed] == [mqtt["id"]]
    assert len(await node.ok("GET", "/api/gateways")) == 3
    assert len(await node.ok("GET", "/api/gateways", "admin")) == 4


async def test_gateway_roles_and_scoping(node: ApiNode) -> None:
    gw = await modbus_gateway(node)
    path = f"/api/gateways/{gw['id']}"
    assert (await node.call("GET", path, "county")).status_code == 200  # operators read
    assert len(await node.ok("GET", "/api/gateways", "county")) == 1
    for method, p, body in (
        ("POST", "/api/gateways", {"name": "x", "protocol": "http_push"}),
        ("PATCH", path, {"name": "y"}),
        ("DELETE", path, None),
        ("POST", f"{path}/rotate-key", None),
    ):
        assert (await node.call(method, p, "county", json=body)).status_code == 403
    for method, body in (("GET", None), ("PATCH", {"name": "y"}), ("DELETE", None)):
        assert (await node.call(method, path, "other", json=body)).status_code == 404
    assert await node.ok("GET", "/api/gateways", "other") == []
    r = await node.call("GET", f"/api/gateways?org_id={node.site.enterprise_id}", "other")
    assert r.status_code == 404
    assert (await node.client.get("/api/gateways")).status_code == 401

    point = await node.ok(
        "POST", "/api/sensors",
        json={"tag": "PT-1", "kind": "pressure", "gateway_id": gw["id"], "source": {"address": 1}},
    )  # fmt: skip
    assert (await node.ok("GET", path))["points"] == 1
    assert (await node.call("DELETE", path)).status_code == 204
    assert (await node.call("GET", path)).status_code == 404
    kept = await node.ok("GET", f"/api/sensors/{point['id']}")
    assert kept["gateway_id"] is None  # the point and its history stay


async def test_installations(node: ApiNode) -> None:
    r = await node.call("POST", "/api/installations", json={"kind": "process_unit", "name": "U1"})
    assert r.status_code == 422 and "18 processes" in fields_of(r)["body"]
    unit = await node.ok(
        "POST", "/api/installations",
        json={"kind": "process_unit", "name": "硝化装置", "process": "nitration",
              "major_hazard": True, "longitude": 117.0, "latitude": 36.6},
    )  # fmt: skip
    assert unit["process_name"] == "硝化工艺" and unit["org_id"] == node.site.enterprise_id
    r = await node.call(
        "POST",
        "/api/installations",
        json={"kind": "tank_area", "name": "T", "process": "nitration"},
    )
    assert r.status_code == 422
    r = await node.call(
        "POST", "/api/installations", json={"kind": "tank_area", "name": "T", "latitude": 91}
    )
    assert r.status_code == 422 and "body.latitude" in fields_of(r)
    path = f"/api/installations/{unit['id']}"
    moved = await node.ok("PATCH", path, json={"kind": "tank_area", "code": "T-01"})
    assert moved["kind"] == "tank_area" and moved["process"] == "" and moved["code"] == "T-01"
    r = await node.call("PATCH", path, json={"kind": "process_unit"})
    assert r.status_code == 422
    assert (await node.ok("GET", "/api/installations?major_hazard=true"))[0]["id"] == unit["id"]
    assert (await node.call("GET", path, "other")).status_code == 404
    assert (await node.call("PATCH", path, "county", json={"name": "x"})).status_code == 403
    assert len(await node.ok("GET", "/api/installations", "county")) == 1
    assert (await node.call("DELETE", path)).status_code == 204
    assert await node.ok("GET", "/api/installations") == []


async def test_point_create_validation_and_reload(node: ApiNode) -> None:
    site = node.site
    gw = await modbus_gateway(node)
    other_gw = await modbus_gateway(node, "other")
    inst = await node.ok("POST", "/api/installations", json={"kind": "tank_area", "name": "罐区"})
    other_inst = await node.ok(
        "POST", "/api/installations", "other", json={"kind": "tank_area", "name": "x"}
    )
    good = {
        "tag": "GT-101", "name": "可燃气体 1", "kind": "gas_combustible",
        "range_min": 0, "range_max": 100, "thresholds": {"h": 25, "hh": 50, "rate": 5},
        "levels": {"hh": "red"}, "gateway_id": gw["id"], "installation_id": inst["id"],
        "source": {"address": 10, "type": "float32"}, "cameras": [site.cameras[0]],
    }  # fmt: skip
    point = await node.ok("POST", "/api/sensors", json=good)
    assert point["unit"] == "%LEL" and point["org_id"] == site.enterprise_id
    assert point["source"]["type"] == "float32" and point["source"]["function"] == "holding"
    assert point["cameras"] == [site.cameras[0]] and point["online"] is False
    live = node.ingest.registry.get(site.enterprise_id, "GT-101")
    assert live is not None and live.thresholds == {"h": 25, "hh": 50, "rate": 5}
    assert [c.channel_id for c in live.cameras] == [site.cameras[0]]  # (device, channel)

    r = await node.call("POST", "/api/sensors", json=good)
    assert r.status_code == 409 and "GT-101" in r.json()["detail"]
    # the same tag in another enterprise is another point
    other = await node.ok(
        "POST", "/api/sensors", "other", json={"tag": "GT-101", "kind": "gas_combustible"}
    )
    assert other["org_id"] == site.other_enterprise_id

    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"kind": "radiation"}, "body.kind", ""),
        ({"tag": "GT 1"}, "body.tag", ""),
        ({"range_min": 100, "range_max": 0}, "range_max", "above"),
        ({"thresholds": {"h": 60, "hh": 50}}, "thresholds.hh", "above h"),
        ({"thresholds": {"ll": 5, "l": 5}}, "thresholds.l", "above ll"),
        ({"thresholds": {"hh": 150}}, "thresholds.hh", "outside the range"),
        ({"thresholds": {"hi": 1}}, "thresholds", "unknown"),
        ({"thresholds": {"rate": 0}}, "thresholds.rate", "above 0"),
        ({"levels": {"hh": "purple"}}, "body.levels.hh", ""),
        ({"levels": {"spike": "red"}}, "levels", "unknown"),
        ({"source": {"address": -1}}, "source", "address"),
        ({"source": {"function": "coil", "address": 1, "type": "float32"}}, "source", "bool"),
        ({"gateway_id": None, "source": {"address": 1}}, "source", "gateway"),
        ({"gateway_id": other_gw["id"]}, "gateway_id", "not one of"),
        ({"installation_id": other_inst["id"]}, "installation_id", "not one of"),
        ({"cameras": [site.other_cameras[0]]}, "cameras", "not found"),
        ({"cameras": ["37010200101329999999"]}, "cameras", "not found"),
        ({"cameras": [COUNTY_CAMERA]}, "cameras", "not found"),  # not visible to the enterprise
        ({"longitude": 200}, "body.longitude", ""),
        ({"colour": "red"}, "body.colour", ""),
    ]
    for change, field, words in cases:
        r = await node.call("POST", "/api/sensors", json={**good, "tag": "NEW-1", **change})
        assert r.status_code == 422, (change, r.text)
        errors = fields_of(r)
        key = field if field.startswith("body.") else f"body.{field}"
        assert key in errors, (change, errors)
        assert words in errors[key], (change, errors)
    r = await node.client.post(
        "/api/sensors",
        content=b'{"tag": "N", "kind": "level", "range_max": NaN}',
        headers={**node.auth("ent"), "content-type": "application/json"},
    )
    assert r.status_code == 422 and "body.range_max" in fields_of(r)
    # an administrator may link a camera of the county above the enterprise
    county_cam = await node.ok(
        "POST", "/api/sensors", "admin",
        json={"tag": "LT-1", "kind": "level", "org_id": site.enterprise_id,
              "cameras": [COUNTY_CAMERA, site.cameras[1]]},
    )  # fmt: skip
    assert sorted(county_cam["cameras"]) == sorted([COUNTY_CAMERA, site.cameras[1]])
    assert county_cam["unit"] == "m"
    discrete = await node.ok("POST", "/api/sensors", json={"tag": "GND-1", "kind": "grounding"})
    assert discrete["unit"] == ""


async def test_point_patch_delete_and_reload(node: ApiNode) -> None:
    site = node.site
    body = {"tag": "TI-1", "kind": "temperature", "range_min": -20, "range_max": 150,
            "thresholds": {"h": 80}, "cameras": [site.cameras[0]]}  # fmt: skip
    point = await node.ok("POST", "/api/sensors", json=body)
    await node.ok("POST", "/api/sensors", json={"tag": "TI-2", "kind": "temperature"})
    path = f"/api/sensors/{point['id']}"
    changed = await node.ok(
        "PATCH", path, json={"thresholds": {"h": 90, "hh": 120}, "cameras": [site.cameras[1]]}
    )
    assert changed["thresholds"] == {"h": 90, "hh": 120} and changed["cameras"] == [site.cameras[1]]
    assert node.ingest.registry.get(site.enterprise_id, "TI-1").thresholds["hh"] == 120
    r = await node.call("PATCH", path, json={"range_max": 100})  # hh 120 would lie outside
    assert r.status_code == 422 and "thresholds.hh" in " ".join(fields_of(r))
    assert (await node.call("PATCH", path, json={"tag": "TI-2"})).status_code == 409
    assert (
        await node.call("PATCH", path, json={"org_id": site.other_enterprise_id})
    ).status_code == 422
    renamed = await node.ok("PATCH", path, json={"tag": "TI-1A", "kind": "pressure"})
    assert renamed["unit"] == "MPa" and renamed["tag"] == "TI-1A"
    assert node.ingest.registry.get(site.enterprise_id, "TI-1") is None
    assert node.ingest.registry.get(site.enterprise_id, "TI-1A") is not None
    await node.ok("PATCH", path, json={"enabled": False})
    assert node.ingest.registry.get(site.enterprise_id, "TI-1A") is None
    assert (await node.call("PATCH", path, "county", json={"enabled": True})).status_code == 403

    listed = await node.call("GET", "/api/sensors?q=ti-", "county")
    assert listed.headers["x-total-count"] == "2"
    assert [p["tag"] for p in listed.json()] == ["TI-1A", "TI-2"]
    assert [p["tag"] for p in await node.ok("GET", "/api/sensors?enabled=false")] == ["TI-1A"]
    assert [p["tag"] for p in await node.ok("GET", "/api/sensors?kind=pressure")] == ["TI-1A"]

    for method in ("GET", "PATCH", "DELETE"):
        r = await node.call(method, path, "other", json={} if method == "PATCH" else None)
        assert r.status_code == 404
    for sub in ("/readings", "/readings.csv", "/events"):
        assert (await node.call("GET", path + sub, "other")).status_code == 404
    assert await node.ok("GET", "/api/sensors", "other") == []
    assert (await node.call("DELETE", path)).status_code == 204
    with node.services.db.session() as s:
        assert s.get(Sensor, point["id"]) is None
    assert (await node.call("GET", path)).status_code == 404
