"""Retention over time-compressed input: 7 h of stream fed in seconds (a tiny keyframe every
10 s of stream time, wall clock derived from PTS), 6 h kept; and the storage quota."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from sip.channel_ref import ChannelRef
from storage.models import RecordingSegment
from vms.media.frames import AccessUnit, Gap
from vms.media.hub import StreamHub
from vms.recording.index import merge_ranges
from vms.recording.recorder import Recorder
from vms.recording.retention import prune
from vms.services import Services

from .recording_support import camera, encode_clip, seed, start_hub

CH_A = "34010000001320000011"
CH_B = "34010000001320000012"
STEP_S = 10


async def feed_hours(
    recorder: Recorder,
    hub: StreamHub,
    cam: ChannelRef,
    base: float,
    count: int,
    lost: range = range(0),
    also_lost: range = range(0),
) -> None:
    """``count`` keyframes ``STEP_S`` apart; the indices in ``lost`` are missing (a hub Gap)."""
    key = encode_clip(frames=1, gop=1, size=(64, 64)).units[0][2]
    for k in range(count):
        if k in lost or k in also_lost:
            if k in (lost.start, also_lost.start):
                hub.publish(cam, Gap(cam.channel_id, "stream-lost", base + k * STEP_S))
            continue
        pts = k * STEP_S * 90000
        unit = AccessUnit(cam.channel_id, pts, True, key, wallclock=base + pts / 90000)
        hub.publish(cam, unit)
        if k % 64 == 0:  # keep pace with the writer thread: the test is not about overload
            rec = recorder.channels[cam]
            while rec.queue.qsize() > 64 or rec.sub.pending() > 64:
                await asyncio.sleep(0.002)


def rows(services: Services, gaps: bool = False) -> list[RecordingSegment]:
    with services.db.session() as s:
        stmt = select(RecordingSegment).where(RecordingSegment.is_gap.is_(gaps))
        return list(s.scalars(stmt.order_by(RecordingSegment.start)))


async def test_six_hours_kept_of_seven_fed(services: Services) -> None:
    cfg = services.settings.recording
    cfg.segment_s, cfg.max_jump_s, cfg.retention_hours = 600, 60, 6
    hub = await start_hub(services)
    cam = camera(seed(services, [CH_A])[0], CH_A)
    now_s = math.floor(time.time())
    base = now_s - 7 * 3600 - 300  # data spans [now - 7h05, now - 5 min)
    recorder = Recorder(services)
    await recorder.start()
    try:
        await recorder.refresh()
        # lost: 1 min after 30 min (outside the window), 1 min at 6h30 (inside it)
        lost, also_lost = range(180, 186), range(2340, 2346)
        await feed_hours(recorder, hub, cam, base, 7 * 360, lost, also_lost)
        await asyncio.wait_for(recorder.flush(cam), 60)
        before = rows(services)
        gaps_before = rows(services, gaps=True)
        assert len(before) >= 40 and len(gaps_before) == 2
        now = datetime.fromtimestamp(now_s, UTC)
        cutoff = now - timedelta(hours=6)
        result = await recorder.run_retention(now=now)
    finally:
        await recorder.stop()
        await hub.stop()

    after = rows(services)
    expected = [r.id for r in before if r.end > cutoff]
    assert [r.id for r in after] == expected  # nothing inside the window was deleted
    assert result.expired == len(before) - len(expected) > 0
    oldest = after[0]
    assert oldest.start <= cutoff < oldest.end  # the window is covered from its first second
    for r in before:
        assert services.objects.exists(r.object_key) == (r.id in expected)
    gaps_after = rows(services, gaps=True)
    assert [g.start for g in gaps_after] == [gaps_before[1].start]  # old gap pruned with the window
    recorded = sum((s.end - s.start).total_seconds() for s in merge_ranges(after, cutoff, now))
    data_end = base + 7 * 3600
    lost_s = (gaps_before[1].end - gaps_before[1].start).total_seconds()
    expected_s = (data_end - cutoff.timestamp()) - lost_s
    assert abs(recorded - expected_s) <= STEP_S  # last keyframe's own duration is counted as 1 s


async def test_quota_removes_oldest_across_channels(services: Services) -> None:
    cfg = services.settings.recording
    cfg.segment_s, cfg.max_jump_s = 60, 60
    hub = await start_hub(services)
    org_id = seed(services, [CH_A, CH_B])[0]
    base = math.floor(time.time()) - 3600
    recorder = Recorder(services)
    await recorder.start()
    try:
        await recorder.refresh()
        await feed_hours(recorder, hub, camera(org_id, CH_A), base, 120)
        await feed_hours(recorder, hub, camera(org_id, CH_B), base + 30, 120)
        await asyncio.wait_for(recorder.flush(), 60)
    finally:
        await recorder.stop()
        await hub.stop()
    before = rows(services)
    assert {r.channel_id for r in before} == {CH_A, CH_B}
    total = sum(r.size for r in before)
    quota = int(total * 0.4)
    now = datetime.fromtimestamp(base + 3600, UTC)
    result = await asyncio.to_thread(prune, services.db, services.objects, now, 24, quota)
    after = rows(services)
    kept = {r.id for r in after}
    deleted = [r for r in before if r.id not in kept]
    assert sum(r.size for r in after) <= quota
    assert result.over_quota == len(deleted) > 0 and result.expired == 0
    assert max(r.start for r in deleted) <= min(r.start for r in after)  # oldest first
    assert sum(r.size for r in after) + deleted[-1].size > quota  # no more than needed
    assert {r.channel_id for r in after} == {CH_A, CH_B}
    assert all(not services.objects.exists(r.object_key) for r in deleted)
    # the settings path: quota_gb drives the same pruning from the component
    cfg.quota_gb = (quota // 2) / 1024**3
    recorder2 = Recorder(services)
    await recorder2.run_retention(now=now)
    assert sum(r.size for r in rows(services)) <= quota // 2
