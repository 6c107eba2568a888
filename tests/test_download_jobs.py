"""Download jobs through the API against the simulated NVR: the Download INVITE at ×N speed,
MediaStatus 121 ending the job, the MP4 read by ffprobe with the right duration, a stalled
device resumed or reported, a node restart resumed from where the parts reached, cancel,
expiry, exports of our own recordings, and the scope of every route."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest
from sqlalchemy import select

from storage.db import Database
from storage.download_models import DownloadJob, DownloadSource, DownloadState
from vms.recording.download_rows import JobRows
from vms.recording.downloads import Downloads
from vms.services import Services

from .live_media import encoded_units, ts_segment
from .recording_support import seed
from .replay_support import DEVICE, ReplayNode, ffprobe, replay_node, until

FRAME_S = 0.04  # the simulated NVR's 25 fps


@pytest.fixture
async def node(services: Services) -> AsyncIterator[ReplayNode]:
    services.settings.media.stream_timeout_s = 1.5
    services.settings.recording.download_retry_s = 0.2
    async with replay_node(services) as n:
        yield n


def hour_ago(seconds: float = 0) -> datetime:
    return (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0) + timedelta(
        seconds=seconds
    )


async def finished(api, job_id: str, timeout: float = 40) -> dict:
    async def check() -> dict:
        body = (await api.get(f"/api/downloads/{job_id}")).json()
        return body if body["state"] not in ("queued", "running") else {}

    return await until(check, timeout, "the download to finish")


async def fetch(api, body: dict, out: Path) -> Path:
    r = await api.get(body["file_url"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp4"
    assert "attachment" in r.headers["content-disposition"]
    out.write_bytes(r.content)
    return out


def mp4_steps(path: Path) -> list[int]:
    """The MP4's frame-to-frame PTS steps (90 kHz)."""
    with av.open(str(path)) as c:
        pts = sorted(p.pts for p in c.demux(c.streams.video[0]) if p.pts is not None)
    return [b - a for a, b in zip(pts, pts[1:], strict=False)]


async def test_device_download_at_speed_ends_on_media_status_into_a_playable_mp4(
    node, tmp_path: Path
) -> None:
    start = hour_ago()
    end = start + timedelta(seconds=8)
    async with node.client() as api:
        began = time.monotonic()
        r = await api.post(
            "/api/downloads",
            json={
                "channel_id": node.channel,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "speed": 4,
            },
        )
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["state"] == "queued" and job["source"] == "device" and job["speed"] == 4
        body = await finished(api, job["id"])
        elapsed = time.monotonic() - began
        assert body["state"] == "done", body
        assert elapsed < 8  # faster than real time: the device sent at ×4

        offer = node.offers("Download")[-1]  # the INVITE exactly as the device read it
        assert offer.download_speed == 4 and offer.ssrc and offer.ssrc[0] == "1"
        assert offer.uri == f"{node.channel}:0"
        assert (offer.start, offer.end) == (int(start.timestamp()), int(end.timestamp()))
        assert node.nvr.media.finished  # the device ran to the end and sent MediaStatus 121
        assert body["file_size"] == 8 * 250_000  # a=filesize of the device's answer
        assert body["progress"] == 1.0 and body["attempts"] == 1 and body["gaps"] == 0
        assert body["bytes_received"] > 0
        assert datetime.fromisoformat(body["reached"]) >= end - timedelta(seconds=0.1)
        assert body["events"][-1]["event"].startswith("done: 200 frames")

        mp4 = await fetch(api, body, tmp_path / "clip.mp4")
        probe = ffprobe(mp4)
        assert "mp4" in probe["format"]["format_name"]
        stream = probe["streams"][0]
        assert stream["codec_name"] == "h264" and (stream["width"], stream["height"]) == (640, 360)
        assert int(stream["nb_read_frames"]) == 200
        assert abs(float(probe["format"]["duration"]) - 8.0) <= 0.1
        assert body["size"] == mp4.stat().st_size and body["frames"] == 200

        r = await api.get("/api/downloads")
        assert r.headers["x-total-count"] == "1" and r.json()[0]["id"] == job["id"]
        # the partial files are gone once the MP4 is in the object store
        assert not (node.services.settings.server.data_dir / "downloads" / job["id"]).exists()


async def test_stalled_device_is_resumed_then_reported(node, tmp_path: Path) -> None:
    """The NVR stops sending mid-range: after media.stream_timeout_s the job asks again from
    the second it reached (the MP4 has every frame once); with no resumes left it fails."""
    services = node.services
    services.settings.recording.download_retries = 1
    start = hour_ago()
    async with node.client() as api:
        body = {"channel_id": node.channel, "start": start.isoformat(), "speed": 2}
        body["end"] = (start + timedelta(seconds=6)).isoformat()
        job = (await api.post("/api/downloads", json=body)).json()

        async def streaming_past_2s():
            # 3 s of 25 fps sent: the node holds past second 2 even with the last frames still
            # in flight (at 50 frames sent it may hold only 1.9 s, and resume from second 1)
            streams = [s for s in node.nvr.media.streams.values() if s.streamer is not None]
            return streams and streams[0].streamer.position >= 75 and streams[0]

        stream = await until(streaming_past_2s, what="the download to stream")
        stream.streamer.pause()  # the device goes silent, the dialog stays up
        body_out = await finished(api, job["id"])
        assert body_out["state"] == "done", body_out
        assert body_out["attempts"] == 2
        events = [e["event"] for e in body_out["events"]]
        assert any("no RTP for 1.5 s" in e and "resuming" in e for e in events), events
        second = node.offers("Download")[-1]
        resumed_at = datetime.fromtimestamp(second.start, UTC)
        assert start + timedelta(seconds=2) <= resumed_at < start + timedelta(seconds=6)
        mp4 = await fetch(api, body_out, tmp_path / "resumed.mp4")
        assert abs(float(ffprobe(mp4)["format"]["duration"]) - 6.0) <= 0.1
        assert set(mp4_steps(mp4)) == {3600}  # no frame twice, none missing at the seam

        # No resumes left: the stall is the job's end, and it says so.
        services.settings.recording.download_retries = 0
        body["end"] = (start + timedelta(seconds=20)).isoformat()
        job = (await api.post("/api/downloads", json=body)).json()
        stream = await until(streaming_past_2s, what="the second download to stream")
        stream.streamer.pause()
        failed = await finished(api, job["id"])
        assert failed["state"] == "failed"
        assert failed["error"].startswith("device stalled: no RTP for 1.5 s (reached ")
        assert failed["file_url"] == ""
        r = await api.get(f"/api/downloads/{job['id']}/file")
        assert r.status_code == 409


async def test_a_restart_resumes_the_job_from_where_its_parts_reached(node, tmp_path: Path) -> None:
    services = node.services
    start = hour_ago()
    end = start + timedelta(seconds=12)
    async with node.client() as api:
        payload = {"channel_id": node.channel, "start": start.isoformat(), "end": end.isoformat()}
        job = (await api.post("/api/downloads", json={**payload, "speed": 2})).json()

        async def reached_3s() -> bool:
            body = (await api.get(f"/api/downloads/{job['id']}")).json()
            return bool(body["reached"]) and datetime.fromisoformat(
                body["reached"]
            ) >= start + timedelta(seconds=3)

        await until(reached_3s, what="three seconds on disk")
        await services.downloads.stop()  # the node stops mid-download
        with services.db.session() as s:
            row = s.get(DownloadJob, job["id"])
            assert row.state is DownloadState.running  # not failed: it is to be resumed
            assert row.parts[0]["closed"] is True  # a clean stop closed the part's file
            row.parts = [{**row.parts[0], "closed": False}]  # as after a crash: never closed
            part = (
                services.settings.server.data_dir / "downloads" / job["id"] / row.parts[0]["file"]
            )
        with part.open("ab") as f:  # the crash tore the write of a frame
            f.write(b"\x47\x41\x00\x10" + b"\x00\x00\x01\xe0" + b"\x00" * 180 + b"\x47\x01")

        again = Downloads(services)  # the next start of the node
        await again.start()
        body = await finished(api, job["id"])
        assert body["state"] == "done", body
        events = [e["event"] for e in body["events"]]
        assert any(e.startswith("the node stopped while this job ran (reached ") for e in events)
        resumed = next(e for e in events if e.startswith("resuming from "))
        second = node.offers("Download")[-1]
        resumed_at = datetime.fromtimestamp(second.start, UTC)
        assert resumed == f"resuming from {resumed_at.isoformat()} (part 2)"
        assert start + timedelta(seconds=3) <= resumed_at < end
        assert body["attempts"] == 2
        mp4 = await fetch(api, body, tmp_path / "restarted.mp4")
        assert abs(float(ffprobe(mp4)["format"]["duration"]) - 12.0) <= 0.1
        assert set(mp4_steps(mp4)) == {3600}  # the seam: no frame twice, none missing


async def test_cancel_expiry_scope_and_bad_requests(node) -> None:
    services = node.services
    _, other_token = seed(services, ["34010000001320000099"], org_name="Plant B")
    start = hour_ago()
    body = {
        "channel_id": node.channel,
        "start": start.isoformat(),
        "end": (start + timedelta(seconds=60)).isoformat(),
        "speed": 1,
    }
    async with node.client() as api, node.client(other_token) as other:
        too_long = {**body, "end": (start + timedelta(hours=5)).isoformat()}
        r = await api.post("/api/downloads", json=too_long)
        assert r.status_code == 422 and "longer than 14400 s" in r.text
        for bad in ({**body, "end": body["start"]}, {**body, "speed": 0}, {**body, "source": "x"}):
            assert (await api.post("/api/downloads", json=bad)).status_code == 422
        assert (await other.post("/api/downloads", json=body)).status_code == 404

        job = (await api.post("/api/downloads", json=body)).json()
        await until(lambda: node.nvr.media.streams, what="the download to start")
        assert (await other.get(f"/api/downloads/{job['id']}")).status_code == 404
        assert (await other.get("/api/downloads")).json() == []
        assert (await other.post(f"/api/downloads/{job['id']}/cancel")).status_code == 404
        assert (await api.get(f"/api/downloads/{job['id']}/file")).status_code == 409
        r = await api.post(f"/api/downloads/{job['id']}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "cancelled"
        await until(lambda: not node.nvr.media.streams, what="the device to get a BYE")
        assert not (services.settings.server.data_dir / "downloads" / job["id"]).exists()
        assert (await api.post(f"/api/downloads/{job['id']}/cancel")).status_code == 409

        # A finished job's MP4 is removed after download_ttl_hours; the job says so.
        short = {**body, "end": (start + timedelta(seconds=2)).isoformat(), "speed": 8}
        job = (await api.post("/api/downloads", json=short)).json()
        done = await finished(api, job["id"])
        assert done["state"] == "done"
        with services.db.session() as s:
            key = s.get(DownloadJob, job["id"]).object_key
        assert key.startswith(f"downloads/{DEVICE}/{node.channel}/") and services.objects.exists(
            key
        )
        later = datetime.now(UTC) + timedelta(hours=73)
        assert await services.downloads.sweep(later) == 1
        assert not services.objects.exists(key)
        r = await api.get(f"/api/downloads/{job['id']}")
        assert r.json()["state"] == "expired" and r.json()["file_url"] == ""
        assert (await api.get(f"/api/downloads/{job['id']}/file")).status_code == 410
        assert (await api.delete(f"/api/downloads/{job['id']}")).status_code == 204
        assert (await api.get(f"/api/downloads/{job['id']}")).status_code == 404


async def test_a_range_of_our_own_recording_is_an_export_job(node, tmp_path: Path) -> None:
    """No NVR involved: the recorded segments are remuxed into the MP4."""
    from storage.models import RecordingSegment

    services = node.services
    units = encoded_units(profile="high")
    data = ts_segment(units, 250)  # 10 s at 25 fps
    start = hour_ago()
    key = f"recordings/test/{node.channel}/seg.ts"
    services.objects.put(key, data, "video/mp2t")
    with services.db.session() as s:
        s.add(
            RecordingSegment(
                device_id=DEVICE,
                channel_id=node.channel,
                start=start,
                end=start + timedelta(seconds=10),
                object_key=key,
                size=len(data),
                keyframes=[[0.0, 0]],
            )
        )
    invites = len(node.nvr.state.invites)
    async with node.client() as api:
        r = await api.post(
            "/api/downloads",
            json={
                "channel_id": node.channel,
                "source": "recording",
                "start": start.isoformat(),
                "end": (start + timedelta(seconds=6)).isoformat(),
            },
        )
        assert r.status_code == 202, r.text
        body = await finished(api, r.json()["id"])
        assert body["state"] == "done" and body["source"] == "recording", body
        mp4 = await fetch(api, body, tmp_path / "export.mp4")
        probe = ffprobe(mp4)
        assert abs(float(probe["format"]["duration"]) - 6.0) <= 0.1
        assert probe["streams"][0]["width"] == 320
        assert len(node.nvr.state.invites) == invites  # the device was not asked

        # Nothing recorded in the range: failed, and why.
        r = await api.post(
            "/api/downloads",
            json={
                "channel_id": node.channel,
                "source": "recording",
                "start": (start - timedelta(minutes=10)).isoformat(),
                "end": (start - timedelta(minutes=9)).isoformat(),
            },
        )
        failed = await finished(api, r.json()["id"])
        assert (
            failed["state"] == "failed" and "no recording in the requested range" in failed["error"]
        )


async def test_the_end_of_a_playback_waits_for_its_last_packets() -> None:
    """MediaStatus 121 (SIP over UDP) may overtake the media's last packets over TCP: the
    hub keeps receiving until they have stopped coming, within a bound."""
    from sip.media_api import PlayMode
    from vms.media.hub import DRAIN_MAX_S, DRAIN_QUIET_S, StreamHub
    from vms.media.stream import Stream, StreamKey

    stream = Stream(StreamKey("34020000001310000001", PlayMode.download))
    stream.ended_by_device = True

    async def packets(seconds: float) -> None:
        until_t = time.monotonic() + seconds
        while time.monotonic() < until_t:
            stream.stats.last_packet_at = time.monotonic()
            await asyncio.sleep(0.02)

    feeder = asyncio.create_task(packets(0.8))
    began = time.monotonic()
    await StreamHub._drain(stream)
    waited = time.monotonic() - began
    await feeder
    assert 0.8 + DRAIN_QUIET_S * 0.9 <= waited < DRAIN_MAX_S + 0.5
    began = time.monotonic()
    await StreamHub._drain(stream)  # nothing comes any more: only the quiet time
    assert time.monotonic() - began < DRAIN_QUIET_S + 0.5


async def test_rows_round_trip_and_recover(db_url: str) -> None:
    """The job rows on SQLite and PostgreSQL: claim in order, progress, a restart's recovery."""
    db = Database(db_url)
    db.open()
    try:
        rows = JobRows(db)
        start = hour_ago()
        made = []
        for i in range(3):
            made.append(
                await rows.insert(
                    DownloadJob(
                        channel_id="34020000001310000001",
                        source=DownloadSource.device,
                        start=start,
                        end=start + timedelta(minutes=1),
                        created_at=start + timedelta(seconds=i),
                    )
                )
            )
        claimed = await rows.claim(2, set())
        assert [c.id for c in claimed] == [made[0].id, made[1].id]
        reached = start + timedelta(seconds=30)
        await rows.progress(made[0].id, received=1000, gaps=1, reached=reached, file_size=5)
        await rows.save_parts(made[0].id, [{"file": "part-1.ts", "from": "x", "until": None}], True)
        assert await rows.recover() == 2
        with db.session() as s:
            first = s.get(DownloadJob, made[0].id)
            assert first.state is DownloadState.queued and first.reached == reached
            assert (first.bytes_received, first.gaps, first.file_size, first.attempts) == (
                1000,
                1,
                5,
                1,
            )
            assert first.parts[0]["file"] == "part-1.ts"
            assert "reached " + reached.isoformat() in first.events[-1]["event"]
            states = sorted(r.state.value for r in s.scalars(select(DownloadJob)))
        assert states == ["queued", "queued", "queued"]
        assert await rows.cancel_queued(made[2].id) and not await rows.cancel_queued(made[2].id)
    finally:
        db.close()
