"""Playback of the NVR's own recording under control, through the API: the Playback INVITE
the device receives, MANSRTSP INFO for pause / resume / speed / seek (checked on the
device's side), the stream's pace following the speed, a pause outliving the receive
timeout, a WebRTC viewer (aiortc, decoding) and MediaStatus 121 at the range's end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiortc import RTCSessionDescription
from sqlalchemy import select

from storage.models import Device, RecordingSegment
from vms.live.service import LiveService
from vms.media.frames import AccessUnit
from vms.recording.playback_sessions import PlaybackSession
from vms.recording.recorder import Recorder
from vms.services import Services

from .live_media import make_offer
from .recording_support import seed
from .replay_support import ReplayNode, replay_node, until


@pytest.fixture
async def node(services: Services) -> AsyncIterator[ReplayNode]:
    services.settings.media.stream_timeout_s = 2  # a pause must outlive it
    async with replay_node(services) as n:
        yield n


def hour_ago(seconds: float = 0) -> datetime:
    return (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0) + timedelta(
        seconds=seconds
    )


async def position_after(api, url: str, wait_s: float) -> tuple[float, float]:
    """(media seconds advanced, wall seconds waited) over about ``wait_s``."""
    first = (await api.get(url)).json()
    t0 = time.monotonic()
    await asyncio.sleep(wait_s)
    last = (await api.get(url)).json()
    return last["position_s"] - first["position_s"], time.monotonic() - t0


async def test_pause_resume_speed_seek_reach_the_device_and_pace_follows(node) -> None:
    start, end = hour_ago(), hour_ago(120)
    async with node.client() as api:
        r = await api.post(
            "/api/playback/sessions",
            json={"channel_id": node.channel, "start": start.isoformat(), "end": end.isoformat()},
        )
        assert r.status_code == 201, r.text
        session = r.json()
        url = session["status_url"]
        assert session["speeds"] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
        await until(lambda: node.offers("Playback"), what="the Playback INVITE")
        offer = node.offers("Playback")[-1]  # what the device received, exactly
        assert offer.uri == f"{node.channel}:0" and offer.ssrc and offer.ssrc[0] == "1"
        assert (offer.start, offer.end) == (int(start.timestamp()), int(end.timestamp()))

        async def playing() -> bool:
            return (await api.get(url)).json()["state"] == "playing"

        await until(playing, what="the playback to play")
        media, wall = await position_after(api, url, 1.5)
        assert media <= 1.5 * wall  # real time (a loaded runner may be slower, never faster)

        r = await api.post(f"{url}/control", json={"action": "speed", "speed": 4})
        assert r.status_code == 200, r.text
        assert r.json()["speed"] == 4.0
        assert "Scale: 4.000000" in node.rtsp()[-1] and node.rtsp()[-1].startswith("PLAY RTSP/1.0")
        await asyncio.sleep(0.3)  # the frames in flight at 1× have arrived
        media, wall = await position_after(api, url, 1.5)
        assert media >= 2.5 * wall, (media, wall)  # 4×: the device sends four times faster

        r = await api.post(f"{url}/control", json={"action": "pause"})
        assert r.status_code == 200 and r.json()["paused"] is True
        assert node.rtsp()[-1].startswith("PAUSE RTSP/1.0") and "PauseTime: now" in node.rtsp()[-1]
        await asyncio.sleep(0.3)
        media, _ = await position_after(api, url, 2.5)  # longer than media.stream_timeout_s
        assert media == 0
        body = (await api.get(url)).json()
        assert body["state"] == "paused", body  # the receive timeout waited

        r = await api.post(f"{url}/control", json={"action": "resume"})
        assert r.status_code == 200 and r.json()["state"] == "playing"
        assert "Range: npt=now-" in node.rtsp()[-1]
        media, _ = await position_after(api, url, 1.0)
        assert media > 0

        r = await api.post(f"{url}/control", json={"action": "speed", "speed": 1})
        assert r.status_code == 200
        target = start + timedelta(seconds=90)
        r = await api.post(f"{url}/control", json={"action": "seek", "at": target.isoformat()})
        assert r.status_code == 200, r.text
        assert "Range: npt=90-" in node.rtsp()[-1]

        async def jumped() -> float:
            p = (await api.get(url)).json()["position_s"]
            return p if p >= 90 else 0

        position = await until(jumped, what="the position to jump to the seek target")
        assert 90 <= position < 93

        # Bad requests: named, nothing sent to the device.
        sent = len(node.rtsp())
        for body, status in (
            ({"action": "speed", "speed": 3}, 422),
            ({"action": "seek", "at": (end + timedelta(seconds=1)).isoformat()}, 422),
            ({"action": "seek"}, 422),
            ({"action": "rewind"}, 422),
        ):
            r = await api.post(f"{url}/control", json=body)
            assert r.status_code == status, (body, r.text)
        assert len(node.rtsp()) == sent

        calls = {cid for cid, _ in node.nvr.media.rtsp}
        assert len(calls) == 1  # every INFO in the playback's own dialog
        r = await api.delete(url)
        assert r.status_code == 204
        await until(lambda: not node.nvr.media.streams, what="the device to get a BYE")
        assert (await api.get(url)).status_code == 404


async def test_webrtc_viewer_decodes_and_the_range_end_ends_the_session(node) -> None:
    start = hour_ago()
    async with node.client() as api:
        r = await api.post(
            "/api/playback/sessions",
            json={
                "channel_id": node.channel,
                "start": start.isoformat(),
                "end": (start + timedelta(seconds=4)).isoformat(),
            },
        )
        assert r.status_code == 201, r.text
        session = r.json()
        frames: list = []
        pc = await make_offer()

        @pc.on("track")
        def _on_track(track) -> None:
            async def read() -> None:
                try:
                    while True:
                        frames.append(await track.recv())
                except Exception:
                    return

            asyncio.ensure_future(read())

        live = LiveService(node.services, node.services.settings.live)
        node.services.live = live
        await live.start()
        try:
            r = await api.post(
                f"{session['status_url']}/offer", json={"sdp": pc.localDescription.sdp}
            )
            assert r.status_code == 200, r.text
            answer = r.json()
            assert answer["playback_id"] == session["id"]
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            r = await api.post(
                f"{session['status_url']}/control", json={"action": "speed", "speed": 2}
            )
            assert r.status_code == 200
            await until(lambda: len(frames) >= 10, what="decoded frames in the viewer")
            assert (frames[0].width, frames[0].height) == (640, 360)  # the NVR's own pixels

            async def ended() -> dict:
                body = (await api.get(session["status_url"])).json()
                return body if body["state"] == "ended" else {}

            body = await until(ended, what="MediaStatus 121 to end the session")
            assert body["end_reason"] == "device ended session: media-status-121"
            assert 3.5 <= body["position_s"] <= 4.1 and body["error"] == ""
            assert node.nvr.media.finished  # the device ran the range to its end
        finally:
            await pc.close()
            await live.stop()


async def test_sessions_are_the_callers_and_cameras_scoped(node) -> None:
    services = node.services
    _, other_token = seed(services, ["34010000001320000099"], org_name="Plant B")
    start = hour_ago()
    body = {
        "channel_id": node.channel,
        "start": start.isoformat(),
        "end": (start + timedelta(seconds=30)).isoformat(),
    }
    async with node.client() as api, node.client(other_token) as other:
        r = await other.post("/api/playback/sessions", json=body)
        assert r.status_code == 404  # another organisation's camera
        r = await api.post("/api/playback/sessions", json={**body, "end": body["start"]})
        assert r.status_code == 422
        r = await api.post("/api/playback/sessions", json={**body, "channel_id": "123"})
        assert r.status_code == 422
        r = await api.post("/api/playback/sessions", json=body)
        assert r.status_code == 201
        url = r.json()["status_url"]
        assert (await other.get(url)).status_code == 404  # not the caller's session
        r = await other.post(f"{url}/control", json={"action": "pause"})
        assert r.status_code == 404
        assert (await api.get("/api/playback/sessions/nope")).status_code == 404
        assert (await api.delete(url)).status_code == 204


def unit(pts: int, keyframe: bool = False) -> AccessUnit:
    return AccessUnit("34020000001310000001", pts, keyframe, b"\x00\x00\x00\x01\x65")


def test_position_and_viewer_timestamps_follow_the_speed() -> None:
    """Pure bookkeeping: PTS steps move the position; the viewer's clock is divided by the
    speed; a seek takes effect at the next keyframe; a clock jump is not playing time."""
    start = hour_ago()
    s = PlaybackSession("x", "c", "u", start, start + timedelta(minutes=2), None, None)  # type: ignore[arg-type]
    out = [s.advance(unit(i * 3600, i % 25 == 0)).pts for i in range(50)]
    assert out[1] - out[0] == 3600 and abs(s.position_s - 49 * 0.04) < 1e-6
    s.scale = 4.0
    a = s.advance(unit(50 * 3600)).pts
    b = s.advance(unit(51 * 3600)).pts
    assert b - a == 900  # 4×: the device's 40 ms steps come every 10 ms
    s._seek_to = 90.0
    s.advance(unit(52 * 3600 + 90 * 90000))  # not a keyframe: still the old place
    assert s.position_s < 3
    s.advance(unit(53 * 3600 + 90 * 90000, keyframe=True))
    assert s.position_s == 90.0
    s.advance(unit(10))  # the device's clock went back: no time counted
    assert s.position_s == 90.0


async def test_nvr_copy_job_at_speed_fetches_with_download(node) -> None:
    """The NVR copy into temporary segments (``device-playback``) at ×4: a Download INVITE;
    the segments keep the recording's own wall-clock times."""
    services = node.services
    services.settings.recording.segment_s = 2
    with services.db.session() as s:
        s.scalars(select(Device)).one().online = False  # no live recording, only the copy
    recorder = Recorder(services)
    services.recorder = recorder
    await recorder.start()
    start = hour_ago()
    end = start + timedelta(seconds=8)
    try:
        async with node.client() as api:
            began = time.monotonic()
            r = await api.post(
                f"/api/recordings/{node.channel}/device-playback",
                json={"start": start.isoformat(), "end": end.isoformat(), "speed": 4},
            )
            assert r.status_code == 202, r.text
            job = r.json()
            assert job["speed"] == 4

            async def done() -> dict:
                body = (await api.get(job["status_url"])).json()
                return body if body["state"] in ("done", "failed") else {}

            body = await until(done, 30, "the copy")
            assert body["state"] == "done", body
            assert time.monotonic() - began < 8  # faster than the 8 s it covers
        offer = node.offers("Download")[-1]
        assert offer.download_speed == 4 and offer.ssrc[0] == "1"
        with services.db.session() as s:
            rows = list(s.scalars(select(RecordingSegment).order_by(RecordingSegment.start)))
        assert rows and {r.source for r in rows} == {"playback"}
        assert rows[0].start == start and abs((rows[-1].end - end).total_seconds()) <= 0.2
    finally:
        await recorder.stop()
