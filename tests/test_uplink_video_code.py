"""Table 4's VIDEO_CODE is the code the province knows the camera by (issue 17, spec §4.1):
9-digit enterprise code + 0132 + 7-digit serial — the channel's ``uplink_video_code``, else
its channel ID when it has that form, else the camera is not reportable: refused when its
analysis is switched on, flagged when its site is recoded, and its alarms are kept here but
never sent with an invented code."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.models import Channel, Device, Organisation, OrgKind, OutboxItem
from vms.uplink import tables
from vms.uplink.identity import camera_video_code, video_code_problem
from vms.uplink.receiver import Receiver, validate_table4

from .alarms_support import ENTERPRISE_CODE, camera_code, event, small_jpeg, wait_until
from .test_alarms_api import Node, _node

NVR = "37010200001180000001"  # seed_site's enterprise NVR
NVR_CAMERA = "37010200001310000009"  # the NVR's own id for a camera: digits 10-13 are 0131
PROVINCE_CODE = camera_code(ENTERPRISE_CODE, 42)  # what the province knows that camera by
ANALYSIS = {"enabled": True, "rules": [{"type": "intrusion"}]}


def test_the_effective_code_is_the_override_else_a_well_formed_channel_id() -> None:
    ent = Organisation(id=1, kind=OrgKind.enterprise, name="e", code=ENTERPRISE_CODE)
    own = camera_code(ENTERPRISE_CODE, 1)
    assert camera_video_code(own, "", ent) == own
    assert camera_video_code(NVR_CAMERA, "", ent) == ""  # not 0132: never sent as is
    assert camera_video_code("34020000001320000001", "", ent) == ""  # another code's prefix
    assert camera_video_code(NVR_CAMERA, PROVINCE_CODE, ent) == PROVINCE_CODE
    # an override that no longer fits its site is not silently replaced by the channel ID
    assert camera_video_code(own, camera_code("370102003", 1), ent) == ""
    assert "does not start with the enterprise's code 370102001" in video_code_problem(
        camera_code("370102003", 1), ent
    )
    for bad in ("123", "３７０１０２００１０１３２００００００１", own + "0", own[:-1] + "x"):
        assert "is not a VIDEO_CODE" in video_code_problem(bad, ent)
    # no 9-digit enterprise code to compare with (a park's camera, a site coded otherwise):
    # the form alone is checked
    park = Organisation(id=2, kind=OrgKind.park, name="p", code="370102")
    uscc = Organisation(id=3, kind=OrgKind.enterprise, name="u", code="91370102MA3C1234XY")
    for org in (park, uscc, None):
        assert camera_video_code("34020000001320000001", "", org) == "34020000001320000001"
        assert camera_video_code(NVR_CAMERA, "", org) == ""


def test_the_reference_receiver_refuses_a_code_of_the_wrong_form() -> None:
    fields = {
        tables.ALARM_ID: "0b6b3b3e-3c1e-4a59-9a4e-2b1f7f0e8c11",
        tables.ALARM_TYPE: "9",
        tables.ALARM_STATUS: "1",
        tables.ALARM_TIME: "2026-12-03 08:00:00",
        tables.DEVICE_CODE: "d",
        tables.VIDEO_CODE: PROVINCE_CODE,
    }
    assert validate_table4(fields, small_jpeg()) == []
    errors = validate_table4({**fields, tables.VIDEO_CODE: NVR_CAMERA}, small_jpeg())
    assert errors == ["VIDEO_CODE not 9-digit enterprise code + 0132 + 7-digit serial"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver().start()
    yield rx
    rx.stop()


@pytest.fixture
async def node(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Node]:
    receivers = [{"name": "prov", "table4_url": receiver.url("table4"), "timeout_s": 2}]
    async for n in _node(tmp_path, receivers=receivers):
        with n.services.db.session() as s:  # a camera the NVR names in its own scheme
            device = s.scalar(select(Device).where(Device.device_id == NVR))
            s.add(Channel(device_pk=device.id, channel_id=NVR_CAMERA, name="gate"))
        n.site.devices[NVR_CAMERA] = NVR
        yield n


def _url(channel_id: str) -> str:
    return f"/api/devices/{NVR}/channels/{channel_id}"


async def _channels(node: Node) -> dict[str, dict]:
    r = await node.client.get(f"/api/devices/{NVR}/channels", headers=node.auth("admin"))
    return {c["channel_id"]: c for c in r.json()}


async def test_channel_override_is_checked_against_the_site_and_unique(node: Node) -> None:
    c, admin = node.client, node.auth("admin")
    listed = await _channels(node)
    own = node.site.cameras[0]
    assert listed[own]["video_code"] == own and listed[own]["uplink_video_code"] == ""
    assert listed[NVR_CAMERA]["video_code"] is None  # not reportable as it stands

    r = await c.patch(_url(NVR_CAMERA), json={"uplink_video_code": "123"}, headers=admin)
    assert r.status_code == 422 and "0132" in r.json()["detail"]
    other_site = camera_code("370102003", 42)
    r = await c.patch(_url(NVR_CAMERA), json={"uplink_video_code": other_site}, headers=admin)
    assert r.status_code == 422
    assert "does not start with the enterprise's code 370102001" in r.json()["detail"]
    # another camera is already known by that code (its channel ID, or its override)
    r = await c.patch(_url(NVR_CAMERA), json={"uplink_video_code": own}, headers=admin)
    assert r.status_code == 409 and own in r.json()["detail"]
    body = {"uplink_video_code": PROVINCE_CODE, "name": "gate"}
    r = await c.patch(_url(NVR_CAMERA), json=body, headers=node.auth("ent"))
    assert r.status_code == 403  # the site's own users do not choose its upward identity

    r = await c.patch(_url(NVR_CAMERA), json=body, headers=admin)
    assert r.status_code == 200
    assert r.json()["uplink_video_code"] == PROVINCE_CODE
    assert r.json()["video_code"] == PROVINCE_CODE
    second = node.site.cameras[1]
    r = await c.patch(_url(second), json={"uplink_video_code": PROVINCE_CODE}, headers=admin)
    assert r.status_code == 409
    assert (await _channels(node))[NVR_CAMERA]["video_code"] == PROVINCE_CODE

    r = await c.patch(_url(NVR_CAMERA), json={"uplink_video_code": ""}, headers=admin)
    assert r.status_code == 200 and r.json()["video_code"] is None


async def test_analysis_of_a_camera_without_a_code_is_refused_naming_the_fix(
    node: Node,
) -> None:
    c, admin = node.client, node.auth("admin")
    r = await c.patch(_url(NVR_CAMERA), json={"analysis": ANALYSIS}, headers=admin)
    assert r.status_code == 422
    assert "no VIDEO_CODE" in r.json()["detail"] and "uplink_video_code" in r.json()["detail"]
    put = f"/api/analyzers/channels/{NVR_CAMERA}"
    r = await c.put(put, params={"device_id": NVR}, json=ANALYSIS, headers=admin)
    assert r.status_code == 422 and "uplink_video_code" in r.json()["detail"]
    off = {**ANALYSIS, "enabled": False}  # switching it off is always allowed
    assert (await c.patch(_url(NVR_CAMERA), json={"analysis": off}, headers=admin)).is_success

    both = {"analysis": ANALYSIS, "uplink_video_code": PROVINCE_CODE}
    r = await c.patch(_url(NVR_CAMERA), json=both, headers=admin)
    assert r.status_code == 200 and r.json()["analysis"]["enabled"]
    # taking the code away from a camera that reports alarms is refused the same way
    r = await c.patch(_url(NVR_CAMERA), json={"uplink_video_code": ""}, headers=admin)
    assert r.status_code == 422
    assert (await _channels(node))[NVR_CAMERA]["video_code"] == PROVINCE_CODE
    # a camera whose channel ID has the form needs nothing
    own = node.site.cameras[0]
    r = await c.put(f"/api/analyzers/channels/{own}", json=ANALYSIS, headers=node.auth("ent"))
    assert r.status_code == 200


async def test_recoding_a_site_names_the_cameras_left_without_a_code(node: Node) -> None:
    c, admin = node.client, node.auth("admin")
    own = node.site.cameras[0]
    assert (await c.patch(_url(own), json={"analysis": ANALYSIS}, headers=admin)).is_success
    url = f"/api/orgs/{node.site.enterprise_id}"
    r = await c.patch(url, json={"code": "370102009"}, headers=admin)
    assert r.status_code == 200 and r.json()["cameras_without_video_code"] == [f"{NVR}/{own}"]
    assert (await _channels(node))[own]["video_code"] is None
    r = await c.patch(url, json={"code": ENTERPRISE_CODE}, headers=admin)
    assert r.json()["cameras_without_video_code"] == []
    assert (await _channels(node))[own]["video_code"] == own
    listed = (await c.get("/api/orgs", headers=admin)).json()
    assert all(o["cameras_without_video_code"] == [] for o in listed)


def _table4_ids(node: Node) -> list[str]:
    with node.services.db.session() as s:
        rows = s.scalars(select(OutboxItem).where(OutboxItem.table == tables.TABLE4))
        return [r.payload[tables.ALARM_ID] for r in rows]


async def test_alarms_go_up_with_the_effective_code_or_stay_here(
    node: Node, receiver: Receiver
) -> None:
    c, admin = node.client, node.auth("admin")
    # no code: the alarm and its clear are stored and shown, nothing goes upward
    lost = event(NVR_CAMERA)
    outcome = await node.services.alarms.handle(lost)
    assert outcome.created
    await node.services.alarms.handle(event(NVR_CAMERA, 0, lost.alarm_id))
    shown = (await c.get(f"/api/alarms/{lost.alarm_id}", headers=admin)).json()
    assert shown["uplink_video_code"] == "" and not shown["active"]
    assert lost.alarm_id not in _table4_ids(node)
    stats = (await c.get("/api/alarms/stats", headers=admin)).json()
    assert stats["not_reported"] == 1

    # with the province's code: alarm and clear carry it, even if it is changed in between
    body = {"uplink_video_code": PROVINCE_CODE}
    assert (await c.patch(_url(NVR_CAMERA), json=body, headers=admin)).is_success
    ev = event(NVR_CAMERA)
    await node.services.alarms.handle(ev)
    later = camera_code(ENTERPRISE_CODE, 43)
    r = await c.patch(_url(NVR_CAMERA), json={"uplink_video_code": later}, headers=admin)
    assert r.is_success
    await node.services.alarms.handle(event(NVR_CAMERA, 0, ev.alarm_id))
    await wait_until(lambda: len(receiver.snapshot()) == 2, 10, "alarm and clear upward")
    got = receiver.snapshot()
    assert [(p.fields[tables.ALARM_ID], p.fields[tables.ALARM_STATUS]) for p in got] == [
        (ev.alarm_id, "1"),
        (ev.alarm_id, "0"),
    ]
    assert {p.fields[tables.VIDEO_CODE] for p in got} == {PROVINCE_CODE}
    assert all(not p.errors for p in got)
    shown = (await c.get(f"/api/alarms/{ev.alarm_id}", headers=admin)).json()
    assert shown["video_code"] == NVR_CAMERA and shown["uplink_video_code"] == PROVINCE_CODE
    # a camera whose channel ID has the form goes up under it
    own = event(node.site.cameras[0])
    await node.services.alarms.handle(own)
    await wait_until(lambda: len(receiver.snapshot()) == 3, 10, "third post")
    assert receiver.snapshot()[2].fields[tables.VIDEO_CODE] == node.site.cameras[0]
