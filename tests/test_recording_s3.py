"""Recording onto an S3-compatible store (moto on loopback): segments uploaded, the segment
URL redirects to a presigned URL that honours Range, export and retention work on S3."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from storage.models import RecordingSegment
from storage.objects import S3ObjectStore
from vms.recording.recorder import Recorder
from vms.services import Services

from .recording_support import camera, decode_md5s, encode_clip, seed, start_hub
from .s3server import S3Server

CH = "34010000001320000051"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


async def test_recording_on_s3(services: Services, s3: S3Server) -> None:
    bucket = f"rec-{uuid.uuid4().hex[:16]}"
    services.objects = S3ObjectStore(s3.endpoint, s3.access_key, s3.secret_key, bucket)
    services.objects.check()
    services.settings.recording.segment_s = 2
    hub = await start_hub(services)
    org_id, token = seed(services, [CH])
    cam = camera(org_id, CH)
    clip = encode_clip()
    wall0 = math.floor(time.time()) - 60.0
    recorder = Recorder(services)
    await recorder.start()
    try:
        await recorder.refresh()
        for i, unit in enumerate(clip.access_units(CH, wall0)):
            hub.publish(cam, unit)
            if i % 32 == 0:
                await asyncio.sleep(0)
        await asyncio.wait_for(recorder.flush(cam), 30)
    finally:
        await recorder.stop()
        await hub.stop()
    with services.db.session() as s:
        rows = list(s.scalars(select(RecordingSegment).order_by(RecordingSegment.start)))
    assert len(rows) == 5 and all(services.objects.exists(r.object_key) for r in rows)

    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)),
        base_url="http://test",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    async with api:
        r = await api.get(f"/api/recordings/segment/{rows[1].id}.ts")
        assert r.status_code == 307
        presigned = r.headers["location"]
        async with httpx.AsyncClient(timeout=10) as plain:
            whole = await plain.get(presigned)
            part = await plain.get(presigned, headers={"Range": "bytes=188-375"})
        assert whole.status_code == 200 and len(whole.content) == rows[1].size
        assert part.status_code == 206 and part.content == whole.content[188:376]
        assert decode_md5s(whole.content, "mpegts") == clip.checksums[50:100]

        start = datetime.fromtimestamp(wall0 + 2.5, UTC)
        r = await api.get(
            f"/api/recordings/{CH}/export.mp4",
            params={"start": start.isoformat(), "end": (start + timedelta(seconds=3)).isoformat()},
        )
        assert r.status_code == 200, r.text
        assert decode_md5s(r.content) == clip.checksums[50:138]

    now = datetime.fromtimestamp(wall0 + 3600 + 5, UTC)
    services.settings.recording.retention_hours = 1  # the first 2 segments end before now-1h
    result = await Recorder(services).run_retention(now=now)
    assert result.expired == 2
    assert [services.objects.exists(r.object_key) for r in rows] == [False] * 2 + [True] * 3
