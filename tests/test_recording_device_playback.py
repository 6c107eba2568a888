"""Replay from the NVR's own storage: RecordInfo and a Playback INVITE through the real SIP
server to the simulated NVR, RTP/PS into the hub, recorded into temporary segments and
served as HLS like our own recordings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from simdevice.nvr import NvrConfig, SimulatedNvr
from simdevice.video_source import test_pattern as nvr_test_pattern
from sip.channel_ref import ChannelRef
from sip.server import SipServer
from sip.settings import ServerConfig
from sip.store import MemoryDeviceStore
from storage.models import Device, RecordingSegment
from vms.recording.recorder import Recorder
from vms.services import Services

from .recording_support import decode_md5s, seed, start_hub

DEVICE = "34020000001180000001"
PASSWORD = "replay-nvr-pass"  # not a vendor default: there is none


@pytest.fixture
async def node(services: Services) -> AsyncIterator[tuple[Services, SimulatedNvr, str]]:
    server = SipServer(
        ServerConfig(host="127.0.0.1", port=0, transports=("udp",), password=PASSWORD, t1=0.1),
        MemoryDeviceStore(),
    )
    await server.start()
    services.sip = server
    nvr = SimulatedNvr(
        NvrConfig(
            device_id=DEVICE,
            server_id=server.config.server_id,
            server_domain=server.config.domain,
            server_host="127.0.0.1",
            server_port=server.port,
            password=PASSWORD,
            channels=1,
            t1=0.1,
        )
    )
    hub = recorder = None
    try:
        await nvr.start(wait=True, timeout=10)
        _, token = seed(services, nvr.channels)
        with services.db.session() as s:  # the seeded device becomes the simulated NVR
            device = s.scalars(select(Device)).one()
            device.device_id = DEVICE
            device.online = False  # not recorded live: only the playback copy is made
        services.settings.recording.segment_s = 2
        hub = await start_hub(services)
        recorder = Recorder(services)
        services.recorder = recorder
        await recorder.start()
        yield services, nvr, token
    finally:
        if recorder is not None:
            await asyncio.wait_for(recorder.stop(), 20)
        if hub is not None:
            await asyncio.wait_for(hub.stop(), 20)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nvr.stop(), 10)
        await server.close()


async def test_device_playback_recorded_and_served(node) -> None:
    services, nvr, token = node
    channel = nvr.channels[0]
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)),
        base_url="http://test",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    start = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    end = start + timedelta(seconds=3)
    async with api:
        r = await api.get(
            f"/api/recordings/{channel}/device-records",
            params={"start": start.isoformat(), "end": end.isoformat()},
        )
        assert r.status_code == 200, r.text
        ranges = r.json()["ranges"]
        assert len(ranges) == 1
        assert datetime.fromisoformat(ranges[0]["start"]) == start
        assert datetime.fromisoformat(ranges[0]["end"]) == end

        r = await api.post(
            f"/api/recordings/{channel}/device-playback",
            json={"start": start.isoformat(), "end": end.isoformat()},
        )
        assert r.status_code == 202, r.text
        job = r.json()
        for _ in range(300):
            job = (await api.get(job["status_url"])).json()
            if job["state"] in ("done", "failed"):
                break
            await asyncio.sleep(0.1)
        assert job["state"] == "done", job
        with services.db.session() as s:
            rows = list(s.scalars(select(RecordingSegment).order_by(RecordingSegment.start)))
        assert rows and {r.source for r in rows} == {"playback"}
        assert rows[0].start == start  # wall-clock time of the NVR's recording, not of arrival
        assert all(r.object_key.startswith(f"playback/{DEVICE}/{channel}/") for r in rows)

        r = await api.get(job["playlist_url"])
        assert r.status_code == 200, r.text
        media = b""
        for line in r.text.splitlines():
            if line.startswith("/api/"):
                seg = await api.get(line)
                assert seg.status_code == 200
                media += seg.content
        frames = decode_md5s(media, "mpegts")
        assert 50 <= len(frames) <= 80  # ~3 s at 25 fps from the device, all decodable
        # our own recording of the same window stays empty: the copies are kept apart
        params = {"start": start.isoformat(), "end": end.isoformat()}
        body = (await api.get(f"/api/recordings/{channel}/timeline", params=params)).json()
        assert body["ranges"] == []
        params["source"] = "playback"
        body = (await api.get(f"/api/recordings/{channel}/timeline", params=params)).json()
        assert body["recorded_s"] > 2.0


async def test_live_pull_recorded_and_replayed(node) -> None:
    """Simulated NVR → INVITE → RTP/PS → hub → recorder → HLS replay of a sub-range whose
    frames are the NVR's own frames, pixel for pixel."""
    services, nvr, token = node
    channel = nvr.channels[0]
    source = nvr_test_pattern()  # what the simulated NVR loops, 2 s of 25 fps, GOP 1 s
    reference = decode_md5s(b"".join(f.data for f in source.frames), "h264")
    # RTP over TCP (RFC 4571): loopback UDP on a loaded 2-core runner may drop a datagram,
    # and this test is about recording, not about loss (the media tests cover that)
    services.settings.media.transport = "tcp-passive"
    with services.db.session() as s:
        s.scalars(select(Device)).one().online = True
    recorder: Recorder = services.recorder
    await recorder.refresh()
    camera = ChannelRef(DEVICE, channel)
    assert camera in recorder.channels
    rec = recorder.channels[camera]
    for _ in range(400):  # ~5 s of live video recorded into 2 s segments
        if rec.segments >= 2:
            break
        await asyncio.sleep(0.05)
    assert rec.segments >= 2
    await asyncio.wait_for(recorder.flush(camera), 20)
    with services.db.session() as s:
        rows = [r for r in s.scalars(select(RecordingSegment).order_by(RecordingSegment.start))]
    assert len(rows) >= 2 and not any(r.is_gap for r in rows)
    start = rows[0].start + timedelta(seconds=0.5)  # mid-GOP: replay starts at its keyframe
    end = rows[1].end - timedelta(seconds=0.1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)),
        base_url="http://test",
        timeout=30,
    ) as api:
        params = {"start": start.isoformat(), "end": end.isoformat(), "token": token}
        r = await api.get(f"/api/recordings/{channel}/playlist.m3u8", params=params)
        assert r.status_code == 200, r.text
        media = b""
        for line in r.text.splitlines():
            if line.startswith("/api/"):
                seg = await api.get(line)
                assert seg.status_code == 200
                media += seg.content
    frames = decode_md5s(media, "mpegts")
    expected_s = (rows[1].end - rows[0].start).total_seconds()
    assert abs(len(frames) - expected_s * 25) <= 1
    first = reference.index(frames[0])
    assert first in (0, 25)  # the replay starts on one of the NVR's keyframes
    assert frames == [reference[(first + i) % len(reference)] for i in range(len(frames))]
