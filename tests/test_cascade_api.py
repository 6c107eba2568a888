"""``/api/cascade``: the superiors' registration and the streams sent to them (staff), and the
channels each superior gets (admin), checked against what a real superior then receives."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.security import create_token
from sip import ids
from sip.media_api import MediaOffer, PlayRequest
from sip.store import MemoryDeviceStore
from storage.cascade_models import CascadeChannel
from storage.db import Database
from storage.models import Channel, Device, OrgKind, Role, User
from storage.org_tree import create_org

from .cascade_support import JWT, running_node, settings_for, until
from .sip_support import running_server

NODE_ID, NODE_DOMAIN = "34020000002000000001", "3402000000"
SUP_ID, SUP_DOMAIN = "34000000002000000001", "3400000000"
NVR = "34020000001180000001"
CAMS = [f"3402000000132000000{n}" for n in (1, 2, 3)]
PASSWORD = "up-secret-2"


def seed(db: Database) -> None:
    with db.session() as s:
        county = create_org(s, "县", OrgKind.county, None, "340200")
        plant = create_org(s, "厂", OrgKind.enterprise, county, "340200001")
        s.add(
            Device(
                device_id=NVR,
                org_id=plant.id,
                channels=[Channel(channel_id=c, record_enabled=False) for c in CAMS],
            )
        )
        s.add(User(username="admin", password_hash="x", role=Role.admin))
        s.add(User(username="op", password_hash="x", role=Role.operator, org_id=county.id))
        s.add(User(username="ent", password_hash="x", role=Role.enterprise, org_id=plant.id))


def tokens(db: Database) -> dict[str, str]:
    with db.session() as s:
        return {
            u.username: create_token(JWT, u.id, u.role.value, 3600) for u in s.scalars(select(User))
        }


@pytest.fixture
async def rig(tmp_path: Path):
    store = MemoryDeviceStore({NODE_ID: PASSWORD})
    async with running_server(
        store, server_id=SUP_ID, domain=SUP_DOMAIN, auto_create_devices=False
    ) as superior:
        upstream = {
            "server_id": SUP_ID,
            "domain": SUP_DOMAIN,
            "host": "127.0.0.1",
            "port": superior.port,
            "password": PASSWORD,
            "keepalive_interval_s": 1,
            "retry_s": 1,
            "media_ip": "192.0.2.7",  # how this superior reaches our RTP (another network)
        }
        settings = settings_for(
            tmp_path / "node",
            server_id=NODE_ID,
            domain=NODE_DOMAIN,
            password="devices-pass",
            ports=(36600, 36799),
            upstreams=[upstream],
            catalog_on_register=False,
        )
        async with running_node(settings, seed) as node:
            await until(lambda: superior.registrations.online(NODE_ID), 20, "registered upward")
            api = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(node.services)),
                base_url="http://test",
                timeout=30,
            )
            async with api:
                yield superior, node, api, tokens(node.services.db)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def channels_of(items) -> list[str]:
    return sorted(i.device_id for i in items if ids.type_code_of(i.device_id) in ids.PERIPHERALS)


async def test_state_and_streams(rig) -> None:
    superior, node, api, tok = rig
    r = await api.get("/api/cascade", headers=auth(tok["op"]))
    assert r.status_code == 200, r.text
    (up,) = r.json()["upstreams"]
    assert up["server_id"] == SUP_ID and up["registered"] and up["register_status"] == 200
    assert up["selection"] == {"all_channels": True, "selected": 0}
    assert up["streams"] == []

    session = await superior.play(
        PlayRequest(NODE_ID, CAMS[0]), MediaOffer("127.0.0.1", 9, "0340000001")
    )
    assert session.answer.ip == "192.0.2.7"  # the upstream's media_ip, not media.sdp_ip
    try:
        r = await api.get("/api/cascade", headers=auth(tok["admin"]))
        (stream,) = r.json()["upstreams"][0]["streams"]
        assert (stream["channel_id"], stream["mode"], stream["source"]) == (CAMS[0], "Play", "live")
        assert stream["ssrc"] == "0340000001" and stream["transport"] == "udp"
        assert stream["destination"] == "127.0.0.1:9"
    finally:
        await superior.stop(session)
    await until(lambda: not node.cascade.forwards, 10, "the forward ended by BYE")

    assert (await api.get("/api/cascade", headers=auth(tok["ent"]))).status_code == 403
    assert (await api.get("/api/cascade")).status_code == 401


async def test_selection_is_what_the_superior_gets(rig) -> None:
    superior, node, api, tok = rig
    url = f"/api/cascade/{SUP_ID}/channels"
    r = await api.get(url, headers=auth(tok["op"]))
    assert r.status_code == 200
    assert r.json() == {
        "upstream_id": SUP_ID,
        "all_channels": True,
        "channel_ids": [],
        "shared": CAMS,
    }
    assert channels_of((await superior.catalog(NODE_ID)).items) == CAMS

    body = {"all_channels": False, "channel_ids": [CAMS[1]]}
    assert (await api.put(url, json=body, headers=auth(tok["op"]))).status_code == 403
    r = await api.put(url, json=body, headers=auth(tok["admin"]))
    assert r.status_code == 200, r.text
    assert r.json()["shared"] == [CAMS[1]] and r.json()["channel_ids"] == [CAMS[1]]
    assert channels_of((await superior.catalog(NODE_ID)).items) == [CAMS[1]]
    info = await superior.device_info(NODE_ID)
    assert info.channels == 1

    # bad input: nothing changes
    bad = {"all_channels": False, "channel_ids": [CAMS[0], "34020000001329999999"]}
    r = await api.put(url, json=bad, headers=auth(tok["admin"]))
    assert r.status_code == 422
    assert "34020000001329999999" in r.text
    r = await api.put(
        url, json={"all_channels": False, "channel_ids": ["12x"]}, headers=auth(tok["admin"])
    )
    assert r.status_code == 422
    with node.services.db.session() as s:
        assert list(s.scalars(select(CascadeChannel.channel_id))) == [CAMS[1]]

    r = await api.put(url, json={"all_channels": True}, headers=auth(tok["admin"]))
    assert r.json()["shared"] == CAMS
    assert channels_of((await superior.catalog(NODE_ID)).items) == CAMS

    r = await api.get("/api/cascade/34999999992000000001/channels", headers=auth(tok["admin"]))
    assert r.status_code == 404
