"""GB/T 28181-2022 where it differs from 2016: the new queries and controls (answered by the
simulated NVR over real SIP, parsed into typed values, served by the API), H.265 in the SDP
(PT 100) and in PS (stream type 0x24) through receiver and recorder, and IFrameCmd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.security import create_token
from sip import manscdp
from sip import manscdp_2022 as m22
from sip.device_config import (
    AlarmReport,
    BasicParam,
    DeviceConfigInfo,
    RecordPlanDay,
    VideoRecordPlan,
    VideoStreamParam,
    config_types,
)
from sip.queries import QueryError
from storage.models import OrgKind, RecordingSegment, Role, User
from storage.org_tree import create_org
from storage.passwords import hash_password
from vms.media.frames import Codec
from vms.recording.recorder import Recorder
from vms.services import Services

from .audio_support import ffprobe_streams
from .media_support import collect_units, decode_units, nvr_rig
from .sip_support import nvr_config, running_nvr, running_server, wait_until

DEVICE = "34020000001180000022"


def response(cmd: str, inner: str, device_id: str = DEVICE) -> manscdp.Manscdp:
    """A ``<Response>`` as a device sends it, through the real decoder (GB2312 on the wire)."""
    return manscdp.decode(manscdp.encode("Response", cmd, 7, device_id, inner))


# --- bodies, no I/O ---------------------------------------------------------------------------


def test_config_download_answer_round_trip() -> None:
    info = DeviceConfigInfo(
        DEVICE,
        basic_param=BasicParam("北门NVR", 3600, 60, 3),
        video_params=[VideoStreamParam(0, "5", "6", "25", "1", "4096")],
        record_plan=VideoRecordPlan(True, 0, [RecordPlanDay(1, [("08:00:00", "18:30:00")])]),
        alarm_report=AlarmReport(True, False),
        frame_mirror="Vertical",
    )
    extra = "<OSDConfig>\r\n<Length>1920</Length><Item><Text>罐区</Text></Item></OSDConfig>\r\n"
    got = DeviceConfigInfo.from_doc(response("ConfigDownload", info.to_xml() + extra))
    assert got.basic_param == info.basic_param and got.video_params == info.video_params
    assert got.record_plan == info.record_plan and got.alarm_report == info.alarm_report
    assert got.frame_mirror == "Vertical" and got.result == "OK"
    assert got.other == {"OSDConfig": {"Length": "1920", "Item": {"Text": "罐区"}}}
    assert (
        config_types(["BasicParam", "VideoRecordPlan", "BasicParam"])
        == "BasicParam/VideoRecordPlan"
    )
    with pytest.raises(ValueError, match="unknown ConfigType"):
        config_types(["Bogus"])


def test_2022_query_answers_as_devices_write_them() -> None:
    """Bodies in the 2022 element names (as chengxiaosheng/libgb28181 writes them)."""
    ptz = response(
        "PTZPosition",
        "<Result>OK</Result><Pan>123.45</Pan><Tilt>-10.5</Tilt><Zoom>4.00</Zoom>"
        "<HorizontalFieldAngle>58.2</HorizontalFieldAngle><MaxViewDistance>150</MaxViewDistance>",
    )
    assert m22.PtzPosition.from_doc(ptz) == m22.PtzPosition(123.45, -10.5, 4.0, 58.2, None, 150.0)
    cards = response(
        "SDCardStatus",
        '<Result>OK</Result><SumNum>1</SumNum><SDCardStatusInfo Num="1"><Item><ID>1</ID>'
        "<HddName>SD1</HddName><Status>formatting</Status><FormatProgress>40</FormatProgress>"
        "<Capacity>30000</Capacity><FreeSpace>29000</FreeSpace></Item></SDCardStatusInfo>",
    )
    assert m22.sd_cards(cards) == [m22.SdCard(1, "SD1", "formatting", 40, 30000, 29000)]
    home = response(
        "HomePositionQuery",
        "<HomePosition><Enabled>1</Enabled><ResetTime>120</ResetTime>"
        "<PresetIndex>3</PresetIndex></HomePosition>",
    )
    assert m22.HomePosition.from_doc(home) == m22.HomePosition(True, 3, 120)
    tracks = response("CruiseTrackListQuery", m22.cruise_tracks_xml([m22.CruiseTrack(2, "东线")]))
    assert m22.cruise_tracks(tracks) == [m22.CruiseTrack(2, "东线")]
    detail = m22.CruiseTrackDetail(2, "东线", [m22.CruisePoint(1, 10, 3), m22.CruisePoint(4, 5, 8)])
    assert (
        m22.CruiseTrackDetail.from_doc(response("CruiseTrackQuery", detail.to_xml()), 2) == detail
    )


def test_2022_controls_refuse_bad_values() -> None:
    body = m22.ptz_precise_ctrl(90.0, -15.25, 2.5)
    assert body.replace("\r\n", "") == (
        "<PTZPreciseCtrl><Pan>90.00</Pan><Tilt>-15.25</Tilt><Zoom>2.50</Zoom></PTZPreciseCtrl>"
    )
    for bad in ((400, None, None), (None, 95, None), (None, None, 0.5), (None, None, None)):
        with pytest.raises(ValueError):
            m22.ptz_precise_ctrl(*bad)
    with pytest.raises(ValueError):
        m22.format_sd_card(-1)


# --- over SIP, with the simulated NVR -----------------------------------------------------------


async def test_extended_queries_and_controls_over_sip() -> None:
    async with running_server() as server, running_nvr(nvr_config(server, channels=2)) as nvr:
        ext, device, channel = server.extended, nvr.config.device_id, nvr.channels[0]
        info = await ext.config_download(device, ["BasicParam", "VideoParamAttribute"])
        assert info.basic_param == BasicParam(nvr.config.name, 3600, 60, 3)
        assert [p.stream_number for p in info.video_params or []] == [0, 1]
        assert await ext.configure_basic(device, BasicParam("新名字", None, 30, None)) == "OK"
        info = await ext.config_download(device, ["BasicParam", "VideoRecordPlan"])
        assert info.basic_param is not None and info.basic_param.name == "新名字"
        assert info.basic_param.heartbeat_interval == 30 and info.record_plan is not None
        assert len(info.record_plan.days) == 7

        presets = await ext.presets(device, channel)  # split over two MESSAGEs by the NVR
        assert [(p.preset_id, p.name) for p in presets] == [
            ("1", "大门"),
            ("2", "罐区"),
            ("3", "装卸台"),
        ]
        await ext.set_home_position(device, channel, m22.HomePosition(True, 2, 60))
        assert await ext.home_position(device, channel) == m22.HomePosition(True, 2, 60)
        assert await ext.cruise_tracks(device, channel) == [m22.CruiseTrack(1, "巡航1")]
        track = await ext.cruise_track(device, channel, 1)
        assert [p.preset_index for p in track.points] == [1, 2]

        await ext.ptz_precise(device, channel, pan=210.5, tilt=12.0, zoom=3.0)
        await wait_until(lambda: nvr.settings.position(channel).pan == 210.5, what="PTZ moved")
        pos = await ext.ptz_position(device, channel)
        assert (pos.pan, pos.tilt, pos.zoom, pos.horizontal_field_angle) == (210.5, 12.0, 3.0, 60.0)
        nvr.settings.sd_cards[0].status = "unformatted"
        await ext.format_sd_card(device, 1)
        await wait_until(lambda: nvr.settings.sd_cards[0].status == "ok", what="SD formatted")
        assert [c.status for c in await ext.sd_cards(device)] == ["ok"]


async def test_a_2016_device_ignores_2022_queries() -> None:
    async with running_server(query_timeout_s=0.5) as server:
        async with running_nvr(nvr_config(server, channels=1, gb_2022=False)) as nvr:
            ext, device, channel = server.extended, nvr.config.device_id, nvr.channels[0]
            with pytest.raises(QueryError, match="no PTZPosition answer"):
                await ext.ptz_position(device, channel)
            assert len(await ext.presets(device, channel)) == 3  # PresetQuery is 2016


# --- the API -------------------------------------------------------------------------------------


@pytest.fixture
async def api(services: Services) -> AsyncIterator[tuple[Any, httpx.AsyncClient, dict[str, Any]]]:
    async with nvr_rig(services, DEVICE, channels=1) as rig:
        app = create_app(services)
        secret = app.state.jwt_secret
        headers = {}
        with services.db.session() as s:
            county = create_org(s, "测试县", OrgKind.county, None, "340102")
            ent = create_org(s, "甲企业", OrgKind.enterprise, county, "913400001")
            for name, role, org in (("admin", Role.admin, None), ("ent", Role.enterprise, ent)):
                user = User(
                    username=name,
                    password_hash=hash_password("x" * 12),
                    role=role,
                    org_id=org.id if org else None,
                )
                s.add(user)
                s.flush()
                token = create_token(secret, user.id, role.value, 3600)
                headers[name] = {"Authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://vms.test") as client:
            yield rig, client, headers


async def test_api_serves_the_2022_queries(api: Any) -> None:
    rig, client, headers = api
    admin, ent = headers["admin"], headers["ent"]
    base = f"/api/sip/devices/{DEVICE}"
    ch = f"{base}/channels/{rig.channels[0]}"
    r = await client.get(
        f"{base}/config", params={"types": ["BasicParam", "AlarmReport"]}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["basic_param"]["heartbeat_count"] == 3
    assert r.json()["alarm_report"] == {"motion_detection": True, "field_detection": False}
    r = await client.get(f"{base}/config", params={"types": ["Nope"]}, headers=admin)
    assert r.status_code == 422 and "unknown ConfigType" in r.json()["detail"]
    r = await client.put(f"{base}/config/basic", json={"heartbeat_interval": 2}, headers=admin)
    assert r.status_code == 422  # below 5 s: refused before anything is sent
    r = await client.put(f"{base}/config/basic", json={"name": "NVR-东"}, headers=admin)
    assert r.status_code == 200 and rig.nvr.settings.basic.name == "NVR-东"
    r = await client.get(f"{ch}/presets", headers=admin)
    assert [p["preset_id"] for p in r.json()] == ["1", "2", "3"]
    r = await client.post(f"{ch}/ptz-position", json={"pan": 45, "zoom": 2}, headers=admin)
    assert r.status_code == 200
    await wait_until(lambda: rig.nvr.settings.position(rig.channels[0]).pan == 45.0)
    r = await client.get(f"{ch}/ptz-position", headers=admin)
    assert r.json()["pan"] == 45.0 and r.json()["zoom"] == 2.0
    r = await client.post(f"{ch}/ptz-position", json={"tilt": 120}, headers=admin)
    assert r.status_code == 422
    r = await client.put(
        f"{ch}/home-position",
        json={"enabled": True, "preset_index": 3, "reset_time": 30},
        headers=admin,
    )
    assert r.status_code == 200
    await wait_until(lambda: rig.channels[0] in rig.nvr.settings.home)
    assert (await client.get(f"{ch}/home-position", headers=admin)).json()["preset_index"] == 3
    r = await client.put(f"{ch}/home-position", json={"enabled": True}, headers=admin)
    assert r.status_code == 422 and "preset" in r.json()["detail"]
    assert (await client.get(f"{ch}/cruise-tracks/1", headers=admin)).json()["name"] == "巡航1"
    assert (await client.get(f"{base}/sd-cards", headers=admin)).json()[0]["capacity_mb"] == 65536
    assert (await client.post(f"{base}/sd-cards/1/format", headers=admin)).status_code == 200
    # scope and roles: the enterprise user does not see this (pending) device; staff only
    assert (await client.get(f"{ch}/ptz-position", headers=ent)).status_code == 404
    assert (await client.post(f"{base}/sd-cards/1/format", headers=ent)).status_code == 403


# --- H.265 (2022) and IFrameCmd ------------------------------------------------------------------


async def test_raw_h265_on_pt100_follows_the_answer(services: Services) -> None:
    async with nvr_rig(services, DEVICE, channels=1, media_payload="h265") as rig:
        sub = rig.hub.subscribe(rig.cameras[0], "h265")
        units = await collect_units(sub, 30)
        assert all(u.codec is Codec.h265 for u in units) and units[0].keyframe
        assert len(decode_units(units, Codec.h265)) >= len(units) - 1
        invite = rig.nvr.state.invites[-1].body.decode()
        assert "a=rtpmap:100 H265/90000" in invite and "MPEG4" not in invite
        assert rig.hub.stats(rig.cameras[0])["codec"] == "h265"
        sub.close()


async def test_h265_in_ps_is_recorded(services: Services, tmp_path: Path) -> None:
    services.settings.recording.segment_s = 2
    async with nvr_rig(services, DEVICE, channels=1, codec="h265", audio="pcma") as rig:
        recorder = Recorder(services)
        try:
            rec = await recorder.start_channel(rig.cameras[0])
            assert rec is not None
            async with asyncio.timeout(30):
                while rec.segments < 1:
                    await asyncio.sleep(0.1)
            await recorder.flush(rig.cameras[0])
        finally:
            await recorder.stop()
    with services.db.session() as s:
        rows = [r for r in s.scalars(select(RecordingSegment)) if not r.is_gap]
    assert rows and all(r.codec == "h265" for r in rows)
    data = services.objects.get(rows[0].object_key)
    kinds = {s["codec_type"]: s["codec_name"] for s in ffprobe_streams(data, tmp_path)}
    assert kinds == {"video": "hevc", "audio": "aac"}


async def test_keyframe_request_in_both_spellings(services: Services) -> None:
    async with nvr_rig(services, DEVICE, channels=1) as rig:
        camera = rig.cameras[0]
        channel = camera.channel_id
        sub = rig.hub.subscribe(camera, "iframe")
        await collect_units(sub, 3)
        assert rig.hub.request_keyframe(camera)
        controls = rig.nvr.state.controls
        await wait_until(lambda: (channel, "IFrameCmd", "Send") in controls, what="IFrameCmd")
        assert (channel, "IFameCmd", "Send") in controls  # 2016 devices read this one
        sub.close()
