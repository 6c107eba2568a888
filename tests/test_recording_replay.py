"""End to end at the recording level: real H.264 units through a hub Subscription into the
recorder, segments in the object store and the DB, replay through the HTTP API."""

from __future__ import annotations

import asyncio
import io
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import av
import httpx
import pytest
from sqlalchemy import select

from storage.models import Channel, Device, RecordingSegment
from vms.media.frames import Gap
from vms.media.hub import StreamHub
from vms.recording.recorder import Recorder
from vms.services import Services

from .recording_support import Clip, camera, client, decode_md5s, encode_clip, seed, start_hub

CH = "34010000001320000001"
OTHER = "34010000001320000099"
CAM = camera(1, CH)  # seed's first organisation: each test's database is new


def at(wall0: float, seconds: float) -> str:
    return datetime.fromtimestamp(wall0 + seconds, UTC).isoformat()


async def feed(hub: StreamHub, units: list, batch: int = 32) -> None:
    for i, unit in enumerate(units):
        hub.publish(CAM, unit)
        if i % batch == 0:
            await asyncio.sleep(0)


@pytest.fixture
async def recording(services: Services) -> AsyncIterator[tuple[Services, Recorder, StreamHub]]:
    services.settings.recording.segment_s = 2
    hub = await start_hub(services)
    recorder = Recorder(services)
    await recorder.start()
    try:
        yield services, recorder, hub
    finally:
        await asyncio.wait_for(recorder.stop(), 20)
        await asyncio.wait_for(hub.stop(), 20)


async def record(recorder: Recorder, hub: StreamHub, clip: Clip, wall0: float) -> None:
    await recorder.refresh()
    assert CAM in recorder.channels
    await feed(hub, clip.access_units(CH, wall0))
    await asyncio.wait_for(recorder.flush(CAM), 20)


async def fetch_playlist_media(api: httpx.AsyncClient, text: str) -> bytes:
    """Download every playlist entry (honouring EXT-X-BYTERANGE) and concatenate them."""
    out = b""
    byterange: tuple[int, int] | None = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-BYTERANGE:"):
            length, offset = line.split(":", 1)[1].split("@")
            byterange = (int(offset), int(length))
        elif line and not line.startswith("#"):
            headers = {}
            if byterange:
                headers["Range"] = f"bytes={byterange[0]}-{byterange[0] + byterange[1] - 1}"
            r = await api.get(line, headers=headers)
            assert r.status_code == (206 if byterange else 200), r.text
            out += r.content
            byterange = None
    return out


async def test_replay_subrange_matches_source_frames(recording) -> None:
    services, recorder, hub = recording
    _, token = seed(services, [CH])
    clip = encode_clip()
    wall0 = math.floor(time.time()) - 60.0
    await record(recorder, hub, clip, wall0)

    with services.db.session() as s:
        rows = list(s.scalars(select(RecordingSegment).order_by(RecordingSegment.start)))
    assert [r.is_gap for r in rows] == [False] * 5  # 10 s at 2 s per segment, GOP 1 s
    assert rows[0].start == datetime.fromtimestamp(wall0, UTC)
    assert rows[-1].end == datetime.fromtimestamp(wall0 + 10, UTC)
    for r in rows:
        assert services.objects.stat(r.object_key).size == r.size
        assert r.object_key.startswith(f"recordings/{CAM.device_id}/{CH}/")
        assert (r.device_id, r.channel_id) == (CAM.device_id, CH)
        assert [k[0] for k in r.keyframes] == [0.0, 1.0]
    assert not list(recorder.spool.iterdir())  # uploaded and indexed: spool empty

    async with client(services, token) as api:
        r = await api.get(
            f"/api/recordings/{CH}/timeline", params={"start": at(wall0, -5), "end": at(wall0, 20)}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["ranges"]) == 1 and body["gaps"] == []
        assert body["recorded_s"] == pytest.approx(10.0)

        # play from second 3.5 to 7.2: starts at the keyframe of second 3
        params = {"start": at(wall0, 3.5), "end": at(wall0, 7.2), "token": token}
        r = await api.get(f"/api/recordings/{CH}/playlist.m3u8", params=params)
        assert r.status_code == 200 and r.headers["content-type"].startswith(
            "application/vnd.apple.mpegurl"
        )
        text = r.text
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and text.rstrip().endswith("#EXT-X-ENDLIST")
        assert "#EXT-X-START:TIME-OFFSET=0.500,PRECISE=YES" in text
        assert "#EXT-X-DISCONTINUITY" not in text
        stamp = datetime.fromtimestamp(wall0 + 3, UTC).isoformat(timespec="milliseconds")
        assert f"#EXT-X-PROGRAM-DATE-TIME:{stamp.replace('+00:00', 'Z')}" in text
        assert all(f"token={token}" in ln for ln in text.splitlines() if ln.startswith("/api"))
        media = await fetch_playlist_media(api, text)
        assert decode_md5s(media, "mpegts") == clip.checksums[75:200]

        # export [3.5, 7.22] as MP4: frames 75..180, pixel-identical
        r = await api.get(
            f"/api/recordings/{CH}/export.mp4",
            params={"start": at(wall0, 3.5), "end": at(wall0, 7.22), "store": "true"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "video/mp4"
        assert r.headers["x-clip-frames"] == "106"
        with av.open(io.BytesIO(r.content)) as mp4:
            stream = mp4.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
        assert decode_md5s(r.content) == clip.checksums[75:181]
        assert services.objects.get(r.headers["x-object-key"]) == r.content


async def test_gaps_in_timeline_and_playlist(recording) -> None:
    services, recorder, hub = recording
    _, token = seed(services, [CH])
    clip = encode_clip()
    wall0 = math.floor(time.time()) - 60.0
    units = clip.access_units(CH, wall0)
    await recorder.refresh()
    await feed(hub, units[:100])  # 0..4 s
    hub.publish(CAM, Gap(CH, "stream-lost", wall0 + 4))
    await feed(hub, units[150:])  # 6..10 s
    await asyncio.wait_for(recorder.flush(CAM), 20)

    with services.db.session() as s:
        gaps = list(s.scalars(select(RecordingSegment).where(RecordingSegment.is_gap)))
    assert len(gaps) == 1 and gaps[0].reason == "stream-lost"
    assert gaps[0].start == datetime.fromtimestamp(wall0 + 4, UTC)
    assert gaps[0].end == datetime.fromtimestamp(wall0 + 6, UTC)

    async with client(services, token) as api:
        window = {"start": at(wall0, 0), "end": at(wall0, 10)}
        body = (await api.get(f"/api/recordings/{CH}/timeline", params=window)).json()
        assert [(g["reason"]) for g in body["gaps"]] == ["stream-lost"]
        assert len(body["ranges"]) == 2 and body["recorded_s"] == pytest.approx(8.0)
        r = await api.get(
            f"/api/recordings/{CH}/playlist.m3u8",
            params={"start": at(wall0, 1), "end": at(wall0, 9)},
        )
        text = r.text
        assert text.count("#EXT-X-DISCONTINUITY") == 1
        assert text.count("#EXT-X-PROGRAM-DATE-TIME") == 2
        media = await fetch_playlist_media(api, text)
        assert decode_md5s(media, "mpegts") == clip.checksums[25:100] + clip.checksums[150:250]


async def test_range_requests_and_bad_requests(recording) -> None:
    services, recorder, hub = recording
    _, token = seed(services, [CH])
    seed(services, [OTHER], org_name="Someone else")
    clip = encode_clip()
    wall0 = math.floor(time.time()) - 60.0
    await record(recorder, hub, clip, wall0)
    with services.db.session() as s:
        row = s.scalars(select(RecordingSegment).order_by(RecordingSegment.start)).first()
    whole = services.objects.get(row.object_key)
    url = f"/api/recordings/segment/{row.id}.ts"
    window = {"start": at(wall0, 0), "end": at(wall0, 5)}
    async with client(services, token) as api:
        r = await api.get(url)
        assert r.status_code == 200 and r.content == whole
        assert r.headers["accept-ranges"] == "bytes"
        r = await api.get(url, headers={"Range": "bytes=188-375"})
        assert r.status_code == 206 and r.content == whole[188:376]
        assert r.headers["content-range"] == f"bytes 188-375/{len(whole)}"
        r = await api.get(url, headers={"Range": "bytes=-188"})
        assert r.status_code == 206 and r.content == whole[-188:]
        r = await api.get(url, headers={"Range": f"bytes={len(whole)}-"})
        assert r.status_code == 416
        r = await api.get(url, headers={"Range": "bytes=0-1,5-9"})
        assert r.status_code == 416

        bad = {"start": at(wall0, 5), "end": at(wall0, 1)}
        for path in ("timeline", "playlist.m3u8", "export.mp4", "segments"):
            r = await api.get(f"/api/recordings/{CH}/{path}", params=bad)
            assert r.status_code == 422 and "end must be after start" in r.text
            r = await api.get(f"/api/recordings/34010000001329999999/{path}", params=window)
            assert r.status_code == 404 and "not found" in r.text
            r = await api.get(f"/api/recordings/{OTHER}/{path}", params=window)
            assert r.status_code == 404
        r = await api.get(f"/api/recordings/{CH}/timeline", params={"start": "yesterday"})
        assert r.status_code == 422
        later = {"start": at(wall0, 3600), "end": at(wall0, 3700)}
        r = await api.get(f"/api/recordings/{CH}/playlist.m3u8", params=later)
        assert r.status_code == 404 and "no recording" in r.text
        r = await api.get(f"/api/recordings/{CH}/export.mp4", params=later)
        assert r.status_code == 404
        r = await api.get(f"/api/recordings/segment/{row.id + 999}.ts")
        assert r.status_code == 404
        segs = (await api.get(f"/api/recordings/{CH}/segments", params=window)).json()
        assert [s["id"] for s in segs][:1] == [row.id] and segs[0]["url"] == url

    _, other_token = seed(services, ["34010000001320000777"], org_name="Third")
    async with client(services, other_token) as api:
        assert (await api.get(url)).status_code == 404  # another enterprise's segment
    async with client(services, "not-a-token") as api:
        assert (await api.get(url)).status_code == 401


async def test_new_channel_recorded_after_catalog_event(recording) -> None:
    services, recorder, hub = recording
    seed(services, [CH])
    services.events.publish("catalog.updated", device_id="x")
    for _ in range(200):
        if CAM in recorder.channels:
            break
        await asyncio.sleep(0.02)
    assert CAM in recorder.channels
    assert hub.channels() == [CAM]  # the recorder holds the pull up as a viewer
    assert recorder.stats()[CAM]["segments"] == 0
    services.recorder = recorder
    other_org, other = seed(services, ["34010000001320000888"], org_name="Other")
    await recorder.refresh()
    async with client(services, other) as api:
        body = (await api.get("/api/recordings/status")).json()
        assert body["enabled"] and str(CAM) not in body["channels"]  # another enterprise's
        theirs = body["channels"][str(camera(other_org, "34010000001320000888"))]
        assert theirs["channel_id"] == "34010000001320000888"


async def test_which_channels_are_recorded(recording) -> None:
    services, recorder, hub = recording
    # the background refresh may see the channels before they are switched off below: a pull
    # it started must end as soon as the recorder lets go (no BYE grace period here)
    services.settings.media.idle_close_s = 0
    ids = [f"3401000000132000010{n}" for n in range(4)]
    seed(services, ids)
    with services.db.session() as s:
        channels = {c.channel_id: c for c in s.scalars(select(Channel))}
        channels[ids[1]].record_enabled = False
        channels[ids[2]].status = "OFF"
    await recorder.refresh()
    assert sorted(recorder.channels) == [camera(1, ids[0]), camera(1, ids[3])]
    assert sorted(hub.channels()) == [camera(1, ids[0]), camera(1, ids[3])]
    with services.db.session() as s:
        for device in s.scalars(select(Device)):
            device.online = False  # the NVR went offline: its pulls are released
    services.events.publish("device.offline", device_id="x")
    for _ in range(200):
        if not recorder.channels:
            break
        await asyncio.sleep(0.02)
    assert recorder.channels == {}
