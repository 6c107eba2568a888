"""Crash safety: torn spool files are truncated or discarded, finished ones indexed, and the
segment index survives a restart; a slow disk becomes a recorded gap, not memory growth."""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import select

from storage.db import Database
from storage.models import RecordingSegment
from storage.objects import LocalObjectStore
from vms.media.hub import StreamHub
from vms.recording import ts
from vms.recording.recorder import Recorder
from vms.services import Services

from .recording_support import camera, decode_md5s, encode_clip, seed, start_hub

CH = "34010000001320000021"


def segment_rows(db: Database) -> list[RecordingSegment]:
    with db.session() as s:
        return list(s.scalars(select(RecordingSegment).order_by(RecordingSegment.start)))


async def record_clip(services: Services) -> tuple[Recorder, StreamHub, float]:
    services.settings.recording.segment_s = 2
    hub = await start_hub(services)
    cam = camera(seed(services, [CH])[0], CH)
    wall0 = math.floor(time.time()) - 600.0
    recorder = Recorder(services)
    await recorder.start()
    await recorder.refresh()
    for i, unit in enumerate(encode_clip().access_units(CH, wall0)):
        hub.publish(cam, unit)
        if i % 32 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(recorder.flush(cam), 20)
    return recorder, hub, wall0


async def test_restart_recovers_spool_and_keeps_index(services: Services) -> None:
    clip = encode_clip()
    recorder, hub, wall0 = await record_clip(services)
    await recorder.stop()
    await hub.stop()
    original = [(r.id, r.object_key, r.size, r.start, r.end) for r in segment_rows(services.db)]
    assert len(original) == 5
    seg2 = services.objects.get(original[1][1])  # frames 50..99
    seg3 = services.objects.get(original[2][1])  # frames 100..149
    spool = recorder.spool
    torn_ms = round((wall0 + 100) * 1000)
    cut = len(seg2) * 3 // 5 + 77  # mid-packet, mid-frame: as a crash leaves it
    slug = camera(1, CH).slug  # <device>_<channel>: the spool names of this version
    (spool / f"{slug}-{torn_ms}.part").write_bytes(seg2[:cut])
    (spool / f"{slug}-{torn_ms + 5000}.part").write_bytes(seg2[:400])  # no whole keyframe
    # closed, upload never happened; named as an older version did (channel only)
    (spool / f"{CH}-{torn_ms + 9000}.ts").write_bytes(seg3)
    # the spool file of a channel no device lists stays where it is (nothing guessed)
    (spool / f"34010000001320009999-{torn_ms}.ts").write_bytes(seg3)
    (spool / "notes.txt").write_text("not ours")

    # restart: a new database handle and object store over the same files
    services.db.close()
    db2 = Database(services.settings.database_url)
    db2.open()
    services2 = Services(services.settings, db2, LocalObjectStore(services.settings.objects_path))
    hub2 = await start_hub(services2)
    recorder2 = Recorder(services2)
    await recorder2.start()
    await recorder2.stop()
    await hub2.stop()
    try:
        rows = segment_rows(db2)
        assert [(r.id, r.object_key, r.size, r.start, r.end) for r in rows[:5]] == original
        assert len(rows) == 7
        torn = next(r for r in rows if r.start == datetime.fromtimestamp(torn_ms / 1000, UTC))
        kept = services2.objects.get(torn.object_key)
        expected_len, scanned = ts.complete_length(seg2[:cut])
        assert len(kept) == torn.size == expected_len and expected_len % ts.TS_PACKET_SIZE == 0
        frames = decode_md5s(kept, "mpegts")
        assert len(frames) == len(scanned.pes) > 0
        assert frames == clip.checksums[50 : 50 + len(frames)]
        assert (torn.end - torn.start).total_seconds() == len(frames) * 0.04
        whole = rows[-1]
        assert services2.objects.get(whole.object_key) == seg3
        assert (whole.end - whole.start).total_seconds() == 2.0
        assert {(r.device_id, r.channel_id) for r in rows} == {(camera(1, CH).device_id, CH)}
        assert whole.object_key.startswith(f"recordings/{camera(1, CH).device_id}/{CH}/")
        left = sorted(p.name for p in spool.iterdir())
        assert left == [f"34010000001320009999-{torn_ms}.ts", "notes.txt"]
    finally:
        db2.close()
        services.db.open(run_migrations=False)  # the fixture closes it again


async def test_slow_disk_drops_to_keyframe_and_records_gap(services: Services) -> None:
    services.settings.recording.segment_s = 2
    services.settings.recording.queue_frames = 16
    hub = await start_hub(services)
    cam = camera(seed(services, [CH])[0], CH)
    clip = encode_clip()
    units = clip.access_units(CH, math.floor(time.time()) - 600.0)
    recorder = Recorder(services)
    await recorder.start()
    try:
        await recorder.refresh()
        rec = recorder.channels[cam]
        disk = threading.Event()
        real = rec.writer.handle

        def stalled(item) -> None:
            disk.wait(10)
            real(item)

        rec.writer.handle = stalled  # the disk stalls while 60 frames arrive
        for unit in units[:60]:
            hub.publish(cam, unit)
            await asyncio.sleep(0.001)  # the pump keeps up with the hub
        assert rec.queue.qsize() <= 16 and rec.dropped > 0  # bounded, not growing
        disk.set()
        for _ in range(500):
            if rec.queue.qsize() == 0:
                break
            await asyncio.sleep(0.01)
        for unit in units[60:]:  # a disk that keeps up again: no further drops
            hub.publish(cam, unit)
            while rec.queue.qsize() > 8 or rec.sub.pending():
                await asyncio.sleep(0.002)
        await asyncio.wait_for(recorder.flush(cam), 20)
    finally:
        await recorder.stop()
        await hub.stop()
    rows = segment_rows(services.db)
    gaps = [r for r in rows if r.is_gap]
    assert [g.reason for g in gaps] == ["disk-slow"]
    media = b"".join(services.objects.get(r.object_key) for r in rows if not r.is_gap)
    frames = decode_md5s(media, "mpegts")
    # what was queued before the stall is kept; recording resumes at the keyframe of second 3
    assert frames[-175:] == clip.checksums[75:]
    assert frames[: len(frames) - 175] == clip.checksums[: len(frames) - 175]


async def test_failed_upload_kept_in_spool_and_retried(services: Services) -> None:
    services.settings.recording.segment_s = 2
    hub = await start_hub(services)
    cam = camera(seed(services, [CH])[0], CH)
    clip = encode_clip()
    real_put = services.objects.put
    failures: list[str] = []

    def flaky_put(key: str, data: bytes, content_type: str | None = None) -> None:
        if not failures:  # the store is down for the first upload
            failures.append(key)
            raise OSError("object store unreachable")
        real_put(key, data, content_type)

    services.objects.put = flaky_put  # type: ignore[method-assign]
    recorder = Recorder(services)
    await recorder.start()
    try:
        await recorder.refresh()
        for unit in clip.access_units(CH, math.floor(time.time()) - 600.0)[:100]:
            hub.publish(cam, unit)
            await asyncio.sleep(0)
        await asyncio.wait_for(recorder.flush(cam), 20)
        assert len(failures) == 1 and len(segment_rows(services.db)) == 1
        left = list(recorder.spool.glob("*.ts"))
        assert len(left) == 1  # nothing lost: the closed segment waits in the spool
        assert await recorder.retry_spool() == {}  # too fresh: may still be uploading
        old = time.time() - 600
        os.utime(left[0], (old, old))
        assert await recorder.retry_spool() == {"indexed": 1}
    finally:
        await recorder.stop()
        await hub.stop()
    rows = segment_rows(services.db)
    assert len(rows) == 2 and not list(recorder.spool.glob("*.ts"))
    media = b"".join(services.objects.get(r.object_key) for r in rows)
    assert decode_md5s(media, "mpegts") == clip.checksums[:100]
