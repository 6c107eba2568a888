"""The analysis API and the whole chain on one node: PUT a camera's config through the real
FastAPI app → the analyzer component applies it → real H.264 through the media hub → person
model → intrusion alarm and clear stored by the real alarm service, read back over the API.
Also: 422s that name the problem, organisation scoping, per-camera fps/drop statistics.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.security import create_token
from storage.db import Database
from storage.models import Channel, Role, User
from storage.objects import LocalObjectStore
from storage.passwords import hash_password
from vms.alarm_component import AlarmComponent
from vms.analyzer_component import AnalyzerComponent
from vms.config import load_settings
from vms.media.hub import StreamHub
from vms.services import Services

from .alarms_support import Site, seed_site
from .analyzers_support import FULL_FRAME, MODELS, pedestrian_clip, require_model

INTRUSION = {
    "enabled": True,
    "input_size": 320,
    "sample": {"mode": "fps", "fps": 2},
    "zones": {"yard": FULL_FRAME},
    "rules": [
        {
            "type": "intrusion",
            "zones": ["yard"],
            "min_score": 0.25,
            "confirm_s": 1,
            "clear_s": 1,
            "cooldown_s": 0,
        }
    ],
}


@dataclass
class Node:
    services: Services
    site: Site
    client: httpx.AsyncClient
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    require_model("person", 320)
    settings = load_settings(
        server={"data_dir": tmp_path / "data"},
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
        analyzers={"models_dir": str(MODELS), "workers": 1},
    )
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    site = seed_site(db, cameras=1)
    with db.session() as s:  # a camera switched on before start: the component picks it up
        ch = s.query(Channel).filter_by(channel_id=site.other_cameras[0]).one()
        ch.analysis = INTRUSION
    alarms = AlarmComponent(services, spool_retry_s=0.2)
    hub = StreamHub(services)  # no SIP: frames come through hub.publish
    await alarms.start()
    await hub.start()
    analyzers = AnalyzerComponent(services)
    await analyzers.start()
    app = create_app(services)
    tokens = {}
    with db.session() as s:
        for name, role, org in (
            ("admin", Role.admin, None),
            ("ent", Role.enterprise, site.enterprise_id),
            ("station", Role.enterprise, site.station_id),
            ("other", Role.enterprise, site.other_enterprise_id),
        ):
            user = User(username=name, password_hash=hash_password("x" * 12), role=role, org_id=org)
            s.add(user)
            s.flush()
            tokens[name] = create_token(app.state.jwt_secret, user.id, role.value, 3600)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    try:
        yield Node(services, site, client, tokens)
    finally:
        await client.aclose()
        await analyzers.stop()
        await hub.stop()
        await alarms.stop()
        db.close()


async def test_put_config_then_real_video_gives_stored_alarm_and_clear(node: Node) -> None:
    cam = node.site.cameras[0]
    ref = node.site.camera(cam)
    assert ref not in node.services.analyzers.stats()
    r = await node.client.put(
        f"/api/analyzers/channels/{cam}", json=INTRUSION, headers=node.auth("ent")
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["running"] and body["profile"] == "enterprise" and body["codes"]["intrusion"] == "4"
    for au in pedestrian_clip(channel=cam):
        node.services.media.publish(ref, au)
        await asyncio.sleep(0.05)

    async def alarms() -> list[dict]:
        r = await node.client.get("/api/alarms", headers=node.auth("ent"))
        return r.json()

    async def cleared() -> bool:
        rows = await alarms()
        return len(rows) == 1 and rows[0]["cleared_at"] is not None

    for _ in range(600):  # bounded: 60 s
        if await cleared():
            break
        await asyncio.sleep(0.1)
    (row,) = await alarms()
    assert row["alarm_type"] == "4" and row["rule"] == "intrusion" and row["video_code"] == cam
    assert row["profile"] == "enterprise" and not row["active"]
    image = await node.client.get(row["image_url"], headers=node.auth("ent"))
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    stats = (await node.client.get("/api/analyzers/stats", headers=node.auth("ent"))).json()
    assert stats["running"] and set(stats["channels"]) == {str(ref)}  # not other's camera
    ch = stats["channels"][str(ref)]
    assert (ch["device_id"], ch["channel_id"]) == (ref.device_id, cam)
    assert ch["analysed"] >= 10 and ch["alarms"] == 1 and ch["clears"] == 1
    assert {"fps", "dropped_queue", "dropped_stale", "gated"} <= set(ch)
    got = (await node.client.get(f"/api/analyzers/channels/{cam}", headers=node.auth("ent"))).json()
    assert got["config"]["rules"][0]["type"] == "intrusion" and got["running"]


async def test_camera_enabled_in_database_starts_with_the_node(node: Node) -> None:
    other = node.site.other_cameras[0]
    ref = node.site.camera(other)
    assert ref in node.services.analyzers.stats()
    r = await node.client.get("/api/analyzers/stats", headers=node.auth("other"))
    assert set(r.json()["channels"]) == {str(ref)}
    off = {**INTRUSION, "enabled": False}
    r = await node.client.put(
        f"/api/analyzers/channels/{other}", json=off, headers=node.auth("other")
    )
    assert r.status_code == 200 and not r.json()["running"]
    assert ref not in node.services.analyzers.stats()


async def test_bad_configs_get_clear_422_and_change_nothing(node: Node) -> None:
    cam, station = node.site.cameras[0], node.site.station_cameras[0]
    url = f"/api/analyzers/channels/{cam}"
    bad_zone = {**INTRUSION, "zones": {"yard": [[0, 0], [1, 1]]}}
    r = await node.client.put(url, json=bad_zone, headers=node.auth("ent"))
    assert r.status_code == 422
    assert any("at least 3 points" in e["error"] for e in r.json()["errors"])
    unknown = {**INTRUSION, "rules": [{"type": "intrusion", "zones": ["gate"]}]}
    r = await node.client.put(url, json=unknown, headers=node.auth("ent"))
    assert r.status_code == 422 and "unknown zone 'gate'" in r.text
    phone = {"enabled": True, "rules": [{"type": "phone"}]}
    r = await node.client.put(url, json=phone, headers=node.auth("ent"))
    assert r.status_code == 422 and "vms models add" in r.text and "'phone'" in r.text
    r = await node.client.put(
        f"/api/analyzers/channels/{station}", json=INTRUSION, headers=node.auth("station")
    )
    assert r.status_code == 422 and "no alarm code in the gas_station table" in r.text
    got = (await node.client.get(url, headers=node.auth("ent"))).json()
    assert got["config"] == {} and not got["running"]


async def test_other_organisations_cannot_see_or_change_a_camera(node: Node) -> None:
    cam = node.site.cameras[0]
    url = f"/api/analyzers/channels/{cam}"
    assert (await node.client.get(url, headers=node.auth("other"))).status_code == 404
    r = await node.client.put(url, json=INTRUSION, headers=node.auth("other"))
    assert r.status_code == 404
    assert (await node.client.get(url)).status_code == 401
    assert (await node.client.get(url, headers=node.auth("admin"))).status_code == 200


async def test_channel_patch_validates_analysis_like_the_analyzer_put(node: Node) -> None:
    """PATCH /api/devices/{id}/channels/{id} with ``analysis``: the same checks as the PUT."""
    cam, station = node.site.cameras[0], node.site.station_cameras[0]

    def device_of(channel_id: str) -> str:
        with node.services.db.session() as s:
            return s.query(Channel).filter_by(channel_id=channel_id).one().device.device_id

    url = f"/api/devices/{device_of(cam)}/channels/{cam}"
    bad_zone = {"analysis": {**INTRUSION, "zones": {"yard": [[0, 0], [1, 1]]}}}
    r = await node.client.patch(url, json=bad_zone, headers=node.auth("ent"))
    assert r.status_code == 422 and "at least 3 points" in r.text
    typo = {"analysis": {**INTRUSION, "input_sise": 640}}
    assert (await node.client.patch(url, json=typo, headers=node.auth("ent"))).status_code == 422
    station_url = f"/api/devices/{device_of(station)}/channels/{station}"
    r = await node.client.patch(
        station_url, json={"analysis": INTRUSION}, headers=node.auth("station")
    )
    assert r.status_code == 422 and "no alarm code in the gas_station table" in r.text
    phone = {"analysis": {"enabled": True, "rules": [{"type": "phone"}]}}
    r = await node.client.patch(url, json=phone, headers=node.auth("ent"))
    assert r.status_code == 422 and "vms models add" in r.text
    got = (await node.client.get(f"/api/analyzers/channels/{cam}", headers=node.auth("ent"))).json()
    assert got["config"] == {} and not got["running"]  # nothing stored by the refusals
    sleeping = {
        "enabled": True,
        "input_size": 320,
        "zones": {"post": FULL_FRAME},
        "rules": [{"type": "sleeping", "zones": ["post"]}],
    }
    r = await node.client.patch(url, json={"analysis": sleeping}, headers=node.auth("ent"))
    assert r.status_code == 200, r.text
    stored = r.json()["analysis"]
    assert stored["rules"][0]["confirm_s"] == 120 and stored["detect"]["track"] is True
    assert node.site.camera(cam) in node.services.analyzers.stats()  # at once, like the PUT
    r = await node.client.patch(url, json={"analysis": None}, headers=node.auth("ent"))
    assert r.status_code == 200 and r.json()["analysis"]["enabled"] is False
    assert node.site.camera(cam) not in node.services.analyzers.stats()
