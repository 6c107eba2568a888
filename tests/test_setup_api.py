"""What the web UI's Setup view relies on: the camera's current picture to draw zones on
(``GET /api/analyzers/channels/{id}/snapshot.jpg``), scoped like every camera route, with a
clear 503 when no picture comes; and the zone/line config it saves, validated by the PUT."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from api.app import create_app
from storage.db import Database
from storage.objects import LocalObjectStore
from vms.config import load_settings
from vms.services import Services

from .live_media import (
    CAMERA,
    CHANNEL_ID,
    DEVICE_ID,
    OTHER_CHANNEL_ID,
    FakeHub,
    access_unit,
    encoded_units,
    login,
    seed_cameras,
)

SNAPSHOT = "/api/analyzers/channels/{}/snapshot.jpg"


@dataclass
class Node:
    services: Services
    hub: FakeHub
    client: httpx.AsyncClient


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    settings = load_settings(
        server={"data_dir": tmp_path / "data"},
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
        warning={"snapshot_timeout_s": 0.5},  # the wait for a keyframe before the 503
    )
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    seed_cameras(db)
    hub = FakeHub()
    services.media = hub
    app = create_app(services)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    try:
        yield Node(services, hub, client)
    finally:
        await client.aclose()
        db.close()


async def _feed(hub: FakeHub) -> None:
    units = encoded_units(profile="high")
    i = 0
    while True:
        hub.publish(CAMERA, access_unit(CHANNEL_ID, i, units))
        i += 1
        await asyncio.sleep(0.01)


async def test_snapshot_is_the_cameras_keyframe_and_scoped(node: Node) -> None:
    c = node.client
    ent_a, ent_b = await login(c, "ent_a"), await login(c, "ent_b")
    feeder = asyncio.create_task(_feed(node.hub))
    try:
        r = await c.get(SNAPSHOT.format(CHANNEL_ID), headers=ent_a)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg"
        assert r.headers["cache-control"] == "no-store"  # always the current picture
        img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[:2] == (240, 320)
        assert CAMERA in node.hub.keyframe_requests  # asked the device for one at once
        # an <img> carries the token in the query; the device may be named
        token = ent_a["Authorization"].split()[1]
        r = await c.get(
            SNAPSHOT.format(CHANNEL_ID), params={"token": token, "device_id": DEVICE_ID}
        )
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        # another enterprise's camera: not found, as every camera route answers
        r = await c.get(SNAPSHOT.format(CHANNEL_ID), headers=ent_b)
        assert r.status_code == 404
        assert (await c.get(SNAPSHOT.format(CHANNEL_ID))).status_code == 401
        r = await c.get(SNAPSHOT.format("34020000001310009999"), headers=ent_a)
        assert r.status_code == 404
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
    assert node.hub.consumers(CAMERA) == 0  # the snapshot let go of the stream


async def test_snapshot_without_a_picture_says_why(node: Node) -> None:
    c = node.client
    ent_b = await login(c, "ent_b")
    r = await c.get(SNAPSHOT.format(OTHER_CHANNEL_ID), headers=ent_b)  # nothing streams
    assert r.status_code == 503
    assert r.json()["detail"] == "no picture from the camera: no keyframe within 0.5 s"
    node.services.media = None
    r = await c.get(SNAPSHOT.format(OTHER_CHANNEL_ID), headers=ent_b)
    assert r.status_code == 503 and r.json()["detail"] == "media hub is not running"


async def test_zones_and_lines_as_the_editor_saves_them(node: Node) -> None:
    """The editor's format: zones and lines by name, [x, y] points normalised to 0..1."""
    c = node.client
    ent_a = await login(c, "ent_a")
    url = f"/api/analyzers/channels/{CHANNEL_ID}"
    config = {
        "enabled": True,
        "zones": {"区域1": [[0.1, 0.1], [0.6, 0.1], [0.6, 0.7], [0.1, 0.7]]},
        "lines": {"线1": [[0.2, 0.9], [0.8, 0.9]]},
        "rules": [
            {"type": "intrusion", "zones": ["区域1"], "min_score": 0.5, "confirm_s": 1},
            {"type": "climbing_fence", "line": "线1"},
        ],
    }
    r = await c.put(url, json=config, headers=ent_a)
    assert r.status_code == 200, r.text
    got = (await c.get(url, headers=ent_a)).json()
    assert got["config"]["zones"]["区域1"][2] == [0.6, 0.7]
    assert got["config"]["lines"]["线1"] == [[0.2, 0.9], [0.8, 0.9]]
    assert got["profile"] == "enterprise" and got["codes"]["intrusion"] == "4"
    bad = [
        ({"zones": {"z": [[0.1, 0.1], [0.2, 0.2]]}}, "needs at least 3 points"),
        ({"zones": {"z": [[0.1, 0.1], [1.2, 0.2], [0.3, 0.3]]}}, "less than or equal to 1"),
        ({"rules": [{"type": "intrusion", "zones": ["nowhere"]}]}, "unknown zone 'nowhere'"),
        ({"rules": [{"type": "climbing_fence"}]}, "needs a line or a fence zone"),
    ]
    for body, words in bad:
        r = await c.put(url, json=body, headers=ent_a)
        assert r.status_code == 422 and words in r.text, (body, r.text)
    # a rule the gas-station table has no code for is refused with its reason
    ent_b = await login(c, "ent_b")
    r = await c.put(
        f"/api/analyzers/channels/{OTHER_CHANNEL_ID}",
        json={"enabled": True, "zones": config["zones"], "rules": config["rules"][:1]},
        headers=ent_b,
    )
    assert r.status_code == 422 and "intrusion" in r.text, r.text
    r = await c.put(url, json=config, headers=ent_b)  # not its camera
    assert r.status_code == 404
