"""Two levels on loopback, both this project: node A (a county) holds a simulated NVR
streaming the real pedestrian clip and cascades to node B (its city) through
``sip.upstreams``.  B's user sees A's catalog tree, watches A's camera live (B pulls
through its own hub; the frames decode to the clip's pixels: no re-encode anywhere),
replays an hour of it (t= spans 3600 s; A holds a few recorded seconds of that hour and
sends what it has, then MediaStatus 121), replays a range A never recorded (A fetches it
from its NVR), sees A's catalog change (NOTIFY upward) and receives A's device alarm.
SIP over UDP and TCP; media UDP, TCP passive and TCP active.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from simdevice.nvr import NvrConfig, SimulatedNvr
from sip import ids
from sip.channel_ref import ChannelRef
from sip.manscdp import el
from storage.db import Database
from storage.device_alarm_models import DeviceAlarm
from storage.models import Channel, Device, OrgKind, RecordingSegment
from storage.org_tree import create_org
from vms.cascade import catalog as tree
from vms.media.frames import AccessUnit

from .cascade_support import VTEST, clip_md5s, decode, running_node, settings_for, until

A_ID, A_DOMAIN = "37010200002000000001", "3701020000"  # county platform
B_ID, B_DOMAIN = "37010000002000000001", "3701000000"  # city platform
NVR_ID = "37010200001180000001"
CAMS = ["37010200001320000001", "37010200001320000002", "37010200001320000003"]
NEW_CAM = "37010200001320000004"
SECRET_CAM = CAMS[2]  # the NVR marks it classified: it never goes up
NVR_PASSWORD, CASCADE_PASSWORD = "nvr-pass-1", "cascade-pass-1"
VIDEO = VTEST if VTEST.exists() else None


def seed_a(db: Database) -> None:
    with db.session() as s:
        province = create_org(s, "山东省", OrgKind.province, None, "370000")
        city = create_org(s, "济南市", OrgKind.city, province, "370100")
        county = create_org(s, "历下区", OrgKind.county, city, "370102")
        plant = create_org(s, "示例化工", OrgKind.enterprise, county, "370102001")
        s.add(Device(device_id=NVR_ID, name="NVR", org_id=plant.id))


def seed_b(db: Database) -> None:
    with db.session() as s:
        s.add(Device(device_id=A_ID, name="历下区平台", sip_password=CASCADE_PASSWORD))
        for cam in CAMS[:2]:  # B's operators record nothing of A here: only on demand
            device = s.scalar(select(Device).where(Device.device_id == A_ID))
            assert device is not None
            device.channels.append(Channel(channel_id=cam, record_enabled=False))


def b_channels(db: Database) -> dict[str, Channel]:
    with db.session() as s:
        rows = s.scalars(
            select(Channel)
            .join(Device, Channel.device_pk == Device.id)
            .where(Device.device_id == A_ID)
        )
        return {c.channel_id: c for c in rows}


async def take(sub, n: int, timeout: float = 30) -> list[AccessUnit]:
    out: list[AccessUnit] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            item = await sub.get()
            if isinstance(item, AccessUnit):
                out.append(item)
    return out


async def drain(sub, timeout: float) -> list[AccessUnit]:
    """Every unit until the subscription ends (the replay's end)."""
    out: list[AccessUnit] = []
    async with asyncio.timeout(timeout):
        async for item in sub:
            if isinstance(item, AccessUnit):
                out.append(item)
    return out


@pytest.mark.parametrize(
    ("sip_transport", "media_transport"),
    [("udp", "udp"), ("tcp", "tcp-passive"), ("tcp", "tcp-active")],
)
async def test_county_cascades_to_city(
    tmp_path: Path, sip_transport: str, media_transport: str
) -> None:
    b_settings = settings_for(
        tmp_path / "b",
        server_id=B_ID,
        domain=B_DOMAIN,
        password="b-devices",
        ports=(36200, 36399),
        transport=media_transport,
        auto_create_devices=False,
        keepalive_interval_s=2,
    )
    async with running_node(b_settings, seed_b) as b:
        upstream = {
            "server_id": B_ID,
            "domain": B_DOMAIN,
            "host": "127.0.0.1",
            "port": b.sip.port,
            "password": CASCADE_PASSWORD,
            "transport": sip_transport,
            "keepalive_interval_s": 1,
            "retry_s": 1,
            "catalog_group": 2,
        }
        a_settings = settings_for(
            tmp_path / "a",
            server_id=A_ID,
            domain=A_DOMAIN,
            password=NVR_PASSWORD,
            ports=(36000, 36199),
            upstreams=[upstream],
        )
        async with running_node(a_settings, seed_a, record=True) as a:
            nvr = SimulatedNvr(
                NvrConfig(
                    device_id=NVR_ID,
                    server_id=A_ID,
                    server_domain=A_DOMAIN,
                    server_host="127.0.0.1",
                    server_port=a.sip.port,
                    password=NVR_PASSWORD,
                    channel_ids=list(CAMS),
                    video=VIDEO,
                    record_hours=3.0,
                )
            )
            plain = nvr.catalog_items
            nvr.catalog_items = lambda: [  # type: ignore[method-assign]
                replace(i, secrecy=1) if i.device_id == SECRET_CAM else i for i in plain()
            ]
            await nvr.start(wait=True, timeout=15)
            try:
                await run_scenario(a, b, nvr, media_transport)
            finally:
                await nvr.stop()


async def run_scenario(a, b, nvr: SimulatedNvr, media_transport: str) -> None:
    adb, bdb = a.services.db, b.services.db
    cam = CAMS[0]
    b_cam = ChannelRef(A_ID, cam)  # on B, A's camera is a channel of the device A

    # --- A knows its NVR, is registered with B, B sees A's tree ---------------------------
    def a_secret() -> bool:
        with adb.session() as s:
            return s.scalar(select(Channel.secrecy).where(Channel.channel_id == SECRET_CAM)) == 1

    await until(a_secret, 20, "A's catalog of its NVR (classified channel stored)")
    await until(lambda: b.sip.registrations.online(A_ID), 20, "A registered with B")
    result = await b.sip.catalog(A_ID)  # the operator's refresh (B also asked on register)
    assert result.complete
    items = {i.device_id: i for i in result.items}
    plant_org = next(i for i in result.items if ids.type_code_of(i.device_id) == 216)
    assert {"37", "3701", "370102"} <= set(items)
    assert items[tree.group_id(A_ID)].parent_id == A_ID
    assert plant_org.name == "示例化工" and plant_org.business_group_id == tree.group_id(A_ID)
    assert sorted(i for i in items if ids.type_code_of(i) in ids.PERIPHERALS) == CAMS[:2]
    assert items[cam].parent_id == plant_org.device_id and items[cam].civil_code == "370102"
    await until(lambda: len(b_channels(bdb)) >= 2, 10, "A's channels stored on B")
    assert SECRET_CAM not in b_channels(bdb)
    info = await b.sip.device_info(A_ID)
    assert (info.channels, info.manufacturer) == (2, "vms-gb28181")

    # --- B's user watches A's camera live -------------------------------------------------
    viewer = b.hub.subscribe(b_cam, "b-viewer")
    try:
        live = await take(viewer, 30, timeout=40)
    finally:
        viewer.close()
    assert live[0].keyframe
    pictures = decode(live)
    assert len(pictures) >= 25
    assert set(pictures) <= clip_md5s(VIDEO)  # the clip's own pixels: nothing re-encoded
    forwards = [f for f in a.cascade.describe() if f["channel_id"] == cam and f["mode"] == "Play"]
    assert forwards and forwards[-1]["source"] == "live"
    assert (
        forwards[-1]["transport"]
        == {
            "udp": "udp",
            "tcp-passive": "tcp-active",  # B listens, A connects
            "tcp-active": "tcp-passive",  # B connects, A listens
        }[media_transport]
    )
    await until(lambda: not a.cascade.forwards, 15, "B's BYE ending A's forward")

    # --- B's user replays an hour: A's own recordings of it ------------------------------
    def a_segments() -> list[RecordingSegment]:
        with adb.session() as s:
            return list(
                s.scalars(
                    select(RecordingSegment).where(
                        RecordingSegment.channel_id == cam, RecordingSegment.is_gap.is_(False)
                    )
                )
            )

    await until(lambda: len(a_segments()) >= 2, 40, "A recording two segments")
    ended: list[str] = []  # why B's sessions with A ended
    b.sip.add_session_listener(lambda session, reason: ended.append(reason))
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    start = end - timedelta(hours=1)
    records = await b.sip.record_info(A_ID, cam, start, end)
    assert records.items and records.complete
    recorded = a_segments()
    first = min(r.start for r in recorded)
    assert abs((records.items[0].start - first).total_seconds()) < 1.5  # A's index, not NVR's
    key, replay = b.hub.open_playback(b_cam, start, end, "b-replay")
    got = await drain(replay, timeout=60)
    seconds = sum((r.end - r.start).total_seconds() for r in recorded if r.end <= end)
    assert len(got) >= 0.7 * seconds * 10  # 10 fps clip: most of what A had recorded
    assert set(decode(got)) <= clip_md5s(VIDEO)
    offset = got[0].pts / 90000  # A stamps the replay on the hour's timeline
    assert abs(offset - (first - start).total_seconds()) < 3
    sent = [f for f in a.cascade.describe() if f["mode"] == "Playback"]
    assert sent and sent[-1]["source"] == "recording" and sent[-1]["state"] == "ended"
    invite = datetime.fromisoformat(sent[-1]["end"]) - datetime.fromisoformat(sent[-1]["start"])
    assert invite == timedelta(hours=1)

    # --- a range A never recorded: A replays it from its NVR --------------------------------
    old_start = start - timedelta(hours=1)
    old = await b.sip.record_info(A_ID, cam, old_start, old_start + timedelta(seconds=3))
    assert old.items  # the NVR's own RecordInfo, passed up
    _, from_nvr = b.hub.open_playback(b_cam, old_start, old_start + timedelta(seconds=3), "b-old")
    old_units = await drain(from_nvr, timeout=40)
    assert len(old_units) >= 15 and set(decode(old_units)) <= clip_md5s(VIDEO)
    sent = [f for f in a.cascade.describe() if f["mode"] == "Playback"]
    assert sent[-1]["source"] == "device" and sent[-1]["state"] == "ended"
    assert ended == ["media-status-121", "media-status-121"]  # A told B both times

    # --- DeviceControl from B reaches the NVR ---------------------------------------------
    await b.sip.ptz(A_ID, cam, "A50F0100000000B5")
    await until(lambda: (cam, "A50F0100000000B5") in nvr.state.ptz_commands, 10, "PTZ at the NVR")
    await b.sip.record_control(A_ID, cam, True)
    await until(lambda: (cam, "RecordCmd", "Record") in nvr.state.controls, 10, "RecordCmd")
    reset = el("AlarmCmd", "ResetAlarm") + f"<Info>\r\n{el('AlarmMethod', 5)}</Info>\r\n"
    for inner in (el("GuardCmd", "SetGuard"), reset, el("TeleBoot", "Boot")):
        await b.sip.device_control(A_ID, cam, inner)  # B knows the channel, not the NVR
    for name, value in (("GuardCmd", "SetGuard"), ("AlarmCmd", "ResetAlarm"), ("TeleBoot", "Boot")):
        await until(
            lambda n=name, v=value: (NVR_ID, n, v) in nvr.state.controls, 10, f"{name} at the NVR"
        )

    # --- A's catalog changes: B hears of it (Catalog NOTIFY upward) -----------------------
    nvr.channels.append(NEW_CAM)
    await a.sip.catalog(NVR_ID)  # A's refresh of its NVR brings the new channel
    await until(lambda: NEW_CAM in b_channels(bdb), 40, "the new channel on B")

    # --- A's device alarm reaches B -------------------------------------------------------
    assert await nvr.send_alarm(cam, priority=1, method=5, alarm_type=2) == 200

    def b_alarms() -> int:
        with bdb.session() as s:
            return s.scalar(
                select(func.count()).select_from(DeviceAlarm).where(DeviceAlarm.source_id == cam)
            )

    await until(lambda: b_alarms() >= 1, 20, "A's device alarm stored on B")
