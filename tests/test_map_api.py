"""GET /api/map: positions of the caller's cameras, sensors, installations and active alarms,
scoped to its organisation subtree; 0/0 and missing positions come back as null; the tile
setting reaches the browser and a bad one stops start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from vms.config import ConfigError, load_settings
from vms.services import Services

from .live_media import CAMERA, CHANNEL_ID, OTHER_CAMERA, OTHER_CHANNEL_ID, login, seed_cameras
from .map_support import (
    A_POS,
    B_POS,
    INSTALLATION_POS,
    SENSOR_POS,
    UNPLACED_CHANNEL,
    place,
    raise_alarm,
)


@pytest.fixture
async def api(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    seed_cameras(services.db)
    services.ids = place(services.db)  # type: ignore[attr-defined]
    services.alarms_seeded = {  # type: ignore[attr-defined]
        "a": raise_alarm(services.db, CHANNEL_ID),
        "b": raise_alarm(services.db, OTHER_CHANNEL_ID),
        "a_cleared": raise_alarm(services.db, CHANNEL_ID, active=False),
    }
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://vms.test") as client:
        client.services = services  # type: ignore[attr-defined]
        yield client


async def get_map(api: httpx.AsyncClient, who: str, **params: str) -> dict:
    r = await api.get("/api/map", headers=await login(api, who), params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def test_the_county_sees_both_enterprises_placed(api: httpx.AsyncClient) -> None:
    m = await get_map(api, "operator")
    assert m["tile_url"] == "" and m["tile_attribution"] == ""
    cams = {c["key"]: c for c in m["cameras"]}
    assert set(cams) == {str(CAMERA), str(OTHER_CAMERA), f"{CAMERA.device_id}/{UNPLACED_CHANNEL}"}
    assert (cams[str(CAMERA)]["longitude"], cams[str(CAMERA)]["latitude"]) == A_POS
    assert (cams[str(OTHER_CAMERA)]["longitude"], cams[str(OTHER_CAMERA)]["latitude"]) == B_POS
    unplaced = cams[f"{CAMERA.device_id}/{UNPLACED_CHANNEL}"]
    assert unplaced["longitude"] is None and unplaced["latitude"] is None  # 0/0 is no position
    sensors = {s["tag"]: s for s in m["sensors"]}
    assert (sensors["GT-A01"]["longitude"], sensors["GT-A01"]["latitude"]) == SENSOR_POS
    assert sensors["GT-A01"]["level"] == "orange" and not sensors["GT-A01"]["from_installation"]
    b = sensors["GT-B01"]  # no position of its own: its installation's
    assert (b["longitude"], b["latitude"]) == INSTALLATION_POS and b["from_installation"]
    assert [i["name"] for i in m["installations"]] == ["乙罐区 B tanks"]
    seeded = api.services.alarms_seeded  # type: ignore[attr-defined]
    alarms = {a["alarm_id"]: a for a in m["alarms"]}
    assert set(alarms) == {seeded["a"], seeded["b"]}  # active ones only
    assert alarms[seeded["a"]]["camera"] == str(CAMERA)
    assert (alarms[seeded["a"]]["longitude"], alarms[seeded["a"]]["latitude"]) == A_POS
    assert alarms[seeded["a"]]["type_name"]


async def test_an_enterprise_never_sees_the_others_positions(api: httpx.AsyncClient) -> None:
    seeded = api.services.alarms_seeded  # type: ignore[attr-defined]
    a = await get_map(api, "ent_a")
    assert {c["channel_id"] for c in a["cameras"]} == {CHANNEL_ID, UNPLACED_CHANNEL}
    assert [s["tag"] for s in a["sensors"]] == ["GT-A01"]
    assert a["installations"] == []
    assert [x["alarm_id"] for x in a["alarms"]] == [seeded["a"]]
    text = str(a)
    for leaked in (B_POS[0], INSTALLATION_POS[0], OTHER_CHANNEL_ID, "GT-B01"):
        assert str(leaked) not in text
    b = await get_map(api, "ent_b")
    assert [c["channel_id"] for c in b["cameras"]] == [OTHER_CHANNEL_ID]
    assert [s["tag"] for s in b["sensors"]] == ["GT-B01"]
    assert [x["alarm_id"] for x in b["alarms"]] == [seeded["b"]]
    assert str(A_POS[0]) not in str(b) and str(SENSOR_POS[0]) not in str(b)
    # an organisation outside the caller's subtree: 404, as on every list
    a_org = a["cameras"][0]["org_id"]
    r = await api.get("/api/map", headers=await login(api, "ent_b"), params={"org_id": a_org})
    assert r.status_code == 404
    # the county narrowed to one enterprise
    only_a = await get_map(api, "operator", org_id=str(a_org))
    assert {c["channel_id"] for c in only_a["cameras"]} == {CHANNEL_ID, UNPLACED_CHANNEL}


async def test_alarms_can_be_left_out_and_logins_are_required(api: httpx.AsyncClient) -> None:
    assert (await get_map(api, "operator", alarms="none"))["alarms"] == []
    assert (await api.get("/api/map")).status_code == 401


async def test_the_tile_setting_reaches_the_browser(services: Services, tmp_path: Path) -> None:
    services.settings.server.map_tile_url = "https://tiles.example/{z}/{x}/{y}.png"
    services.settings.server.map_tile_attribution = "© tiles <b>x</b>"
    seed_cameras(services.db)
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://vms.test") as client:
        m = await get_map(client, "ent_a")
    assert m["tile_url"] == "https://tiles.example/{z}/{x}/{y}.png"
    assert m["tile_attribution"] == "© tiles <b>x</b>"


@pytest.mark.parametrize("url", ["tiles.example/{z}/{x}/{y}.png", "https://tiles.example/t.png"])
def test_a_tile_url_without_its_placeholders_stops_start_up(url: str) -> None:
    with pytest.raises(ConfigError, match="map_tile_url"):
        load_settings(server={"map_tile_url": url})
