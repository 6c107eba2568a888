"""Recording schedules: weekly windows in local time (midnight, DST), validation, and the
recorder stopping and resuming a channel at window edges."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from api.app import create_app
from storage.models import Channel, RecordingSegment
from vms.media.hub import StreamHub
from vms.recording.index import SCHEDULE_REASON, holes, merge_ranges, rows_between
from vms.recording.recorder import Recorder
from vms.recording.schedule import Schedule, clock_seconds, resolve, validate
from vms.services import Services

from .recording_support import camera, encode_clip, seed, start_hub

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
CH = "34010000001320000031"
CAM = camera(1, CH)  # seed's first organisation: each test's database is new
WEEKDAYS = [{"days": [1, 2, 3, 4, 5], "start": "08:00", "end": "18:00"}]


def at(tz: ZoneInfo, *fields: int) -> datetime:
    """A local wall-clock time (first occurrence) as an aware UTC instant."""
    return datetime(*fields, tzinfo=tz).astimezone(UTC)


def sched(raw: list[dict[str, Any]], tz: ZoneInfo = SHANGHAI) -> Schedule:
    return Schedule.parse(raw, tz)


def test_weekday_office_hours_in_shanghai() -> None:
    s = sched(WEEKDAYS)
    wed = (2026, 11, 25)  # a Wednesday
    assert not s.active(at(SHANGHAI, *wed, 7, 59, 59))
    assert s.next_change(at(SHANGHAI, *wed, 7, 59, 59)) == at(SHANGHAI, *wed, 8, 0)
    assert s.active(at(SHANGHAI, *wed, 8, 0))  # start inclusive
    assert s.next_change(at(SHANGHAI, *wed, 8, 0)) == at(SHANGHAI, *wed, 18, 0)
    assert not s.active(at(SHANGHAI, *wed, 18, 0))  # end exclusive
    assert at(SHANGHAI, *wed, 8, 0) == datetime(2026, 11, 25, 0, 0, tzinfo=UTC)  # UTC+8
    friday_close = at(SHANGHAI, 2026, 11, 27, 18, 0)
    assert s.next_change(friday_close) == at(SHANGHAI, 2026, 11, 30, 8, 0)  # Monday
    assert not s.active(at(SHANGHAI, 2026, 11, 28, 12, 0))  # Saturday


def test_window_across_midnight_belongs_to_its_start_day() -> None:
    s = sched([{"days": [5], "start": "22:00", "end": "06:00"}])  # Friday night
    assert not s.active(at(SHANGHAI, 2026, 11, 26, 23, 0))  # Thursday night
    assert s.active(at(SHANGHAI, 2026, 11, 27, 22, 0))
    assert s.active(at(SHANGHAI, 2026, 11, 28, 5, 59, 59))  # Saturday morning
    assert s.next_change(at(SHANGHAI, 2026, 11, 28, 1, 0)) == at(SHANGHAI, 2026, 11, 28, 6, 0)
    assert not s.active(at(SHANGHAI, 2026, 11, 28, 23, 0))  # Saturday night
    assert s.next_change(at(SHANGHAI, 2026, 11, 28, 6, 0)) == at(SHANGHAI, 2026, 12, 4, 22, 0)
    nightly = sched([{"days": [1, 2, 3, 4, 5, 6, 7], "start": "22:00", "end": "00:00"}])
    assert nightly.next_change(at(SHANGHAI, 2026, 11, 25, 23, 0)) == at(
        SHANGHAI, 2026, 11, 26, 0, 0
    )


def test_adjacent_windows_merge_and_always_never_changes() -> None:
    s = sched(
        [
            {"days": [1], "start": "00:00", "end": "24:00"},
            {"days": [2], "start": "00:00", "end": "12:00:30"},
        ]
    )
    monday = at(SHANGHAI, 2026, 11, 23, 10, 0)
    assert s.active(monday)
    assert s.next_change(monday) == at(SHANGHAI, 2026, 11, 24, 12, 0, 30)  # not Monday 24:00
    for always in (sched([]), Schedule.parse(None, SHANGHAI)):
        assert always.active(monday) and always.next_change(monday) is None
    full = sched([{"days": [1, 2, 3, 4, 5, 6, 7], "start": "00:00", "end": "24:00"}])
    assert full.active(monday) and full.next_change(monday) is None


def test_berlin_spring_forward() -> None:
    # 2026-03-29, Sunday: 02:00 CET jumps to 03:00 CEST at 01:00 UTC
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert resolve(datetime(2026, 3, 29).date(), clock_seconds("02:30"), BERLIN) == jump
    s = sched([{"days": [7], "start": "02:30", "end": "04:00"}], BERLIN)
    assert s.next_change(jump - timedelta(minutes=1)) == jump  # starts when the clock jumps
    assert s.active(jump)
    assert s.next_change(jump) == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)  # 04:00 CEST
    night = sched([{"days": [7], "start": "01:00", "end": "03:00"}], BERLIN)
    start = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # 01:00 CET
    assert night.next_change(start - timedelta(seconds=1)) == start
    assert night.next_change(start) == jump  # 03:00 CEST: one real hour
    # the window of an ordinary Sunday, a week later, is two real hours again
    later = datetime(2026, 4, 4, 23, 0, tzinfo=UTC)  # 01:00 CEST
    assert night.next_change(later - timedelta(seconds=1)) == later
    assert night.next_change(later) == later + timedelta(hours=2)


def test_berlin_fall_back() -> None:
    # 2026-10-25, Sunday: 03:00 CEST goes back to 02:00 CET at 01:00 UTC
    s = sched([{"days": [6], "start": "22:00", "end": "02:30"}], BERLIN)
    first_0230 = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert s.next_change(datetime(2026, 10, 24, 23, 0, tzinfo=UTC)) == first_0230
    assert not s.active(datetime(2026, 10, 25, 1, 15, tzinfo=UTC))  # 02:15 CET, second pass
    long_night = sched([{"days": [7], "start": "01:00", "end": "04:00"}], BERLIN)
    opens = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # 01:00 CEST
    assert long_night.next_change(opens - timedelta(seconds=1)) == opens
    assert long_night.next_change(opens) == opens + timedelta(hours=4)  # 04:00 CET


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ([{"days": [1], "start": "25:00", "end": "26:00"}], "out of range"),
        ([{"days": [1], "start": "8:00", "end": "18:00"}], "HH:MM"),
        ([{"days": [1], "start": "08:60", "end": "18:00"}], "out of range"),
        ([{"days": [1], "start": "24:00", "end": "06:00"}], "only valid as an end"),
        ([{"days": [1], "start": "08:00", "end": "08:00"}], "start and end are equal"),
        ([{"days": [0], "start": "08:00", "end": "18:00"}], "greater than or equal to 1"),
        ([{"days": [8], "start": "08:00", "end": "18:00"}], "less than or equal to 7"),
        ([{"days": [], "start": "08:00", "end": "18:00"}], "at least 1"),
        ([{"days": [1], "start": "08:00", "end": "18:00", "x": 1}], "Extra inputs"),
        ([{"days": [1], "start": "08:00"}], "Field required"),
        ({"days": [1]}, "valid list"),
    ],
)
def test_bad_schedules_are_rejected(raw: Any, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate(raw)
    assert needle in str(info.value)


def test_validate_normalises_days() -> None:
    assert clock_seconds("24:00", allow_24=True) == 86400 and clock_seconds("00:00:01") == 1
    assert validate([{"days": [3, 1, 3], "start": "08:00", "end": "24:00"}]) == [
        {"days": [1, 3], "start": "08:00", "end": "24:00"}
    ]
    assert validate(None) == []


# --- the recorder ---------------------------------------------------------------------------


def set_schedule(services: Services, raw: list[dict[str, Any]]) -> None:
    with services.db.session() as s:
        channel = s.scalars(select(Channel).where(Channel.channel_id == CH)).one()
        channel.record_schedule = raw


def consumers(hub: StreamHub) -> list[str]:
    stats = hub.stats(CAM)
    return [] if stats is None else [c["name"] for c in stats["consumers"]]


async def publish(hub: StreamHub, units: list[Any]) -> None:
    for i, unit in enumerate(units):
        hub.publish(CAM, unit)
        if i % 32 == 0:
            await asyncio.sleep(0)


async def test_recorder_stops_and_resumes_by_schedule(services: Services) -> None:
    """Fake clock: recording closes at 18:00 and resumes at 08:00; the night is "schedule"."""
    services.settings.recording.segment_s = 2
    services.settings.server.timezone = "Asia/Shanghai"
    hub = await start_hub(services)
    seed(services, [CH])
    set_schedule(services, WEEKDAYS)
    clip = encode_clip()
    now = [at(SHANGHAI, 2026, 11, 25, 17, 59, 50)]  # Wednesday, inside the window
    recorder = Recorder(services)
    recorder.clock = lambda: now[0]
    try:
        await recorder.start()
        await recorder.refresh()
        assert CAM in recorder.channels and "recorder" in consumers(hub)
        assert recorder.next_change == at(SHANGHAI, 2026, 11, 25, 18, 0)
        wall0 = now[0].timestamp()
        await publish(hub, clip.access_units(CH, wall0)[:125])  # 17:59:50 - 17:59:55
        for _ in range(200):  # let the pump hand everything to the writer
            if recorder.channels[CAM].stats()["queued"] == 0 and not any(
                c["pending"] for c in hub.stats(CAM)["consumers"]
            ):
                break
            await asyncio.sleep(0.01)

        now[0] = at(SHANGHAI, 2026, 11, 25, 18, 0)  # the window closes
        await recorder.refresh()
        assert CAM not in recorder.channels and "recorder" not in consumers(hub)
        assert recorder.next_change == at(SHANGHAI, 2026, 11, 26, 8, 0)
        with services.db.session() as s:
            rows = rows_between(s, CAM, now[0] - timedelta(hours=1), now[0] + timedelta(days=1))
        segments = [r for r in rows if not r.is_gap]
        assert segments and segments[-1].end.timestamp() == pytest.approx(wall0 + 5, abs=0.05)
        gaps = [(r.reason, r.start, r.end) for r in rows if r.is_gap]
        assert gaps == [(SCHEDULE_REASON, now[0], at(SHANGHAI, 2026, 11, 26, 8, 0))]

        await publish(hub, clip.access_units(CH, wall0 + 600)[125:175])  # off: not recorded
        await recorder.refresh()  # still outside: nothing new, no second gap row
        await asyncio.sleep(0.1)

        now[0] = at(SHANGHAI, 2026, 11, 26, 8, 0)  # Thursday morning: the window opens
        await recorder.refresh()
        assert CAM in recorder.channels and "recorder" in consumers(hub)
        wall1 = now[0].timestamp() - 5  # unit 125 (a keyframe at 5 s) at 08:00:00
        await publish(hub, clip.access_units(CH, wall1)[125:])
        await asyncio.wait_for(recorder.flush(CAM), 20)

        start, end = at(SHANGHAI, 2026, 11, 25, 17, 0), at(SHANGHAI, 2026, 11, 26, 9, 0)
        with services.db.session() as s:
            rows = rows_between(s, CAM, start, end)
        ranges = merge_ranges(rows, start, end)
        assert [(r.start.timestamp(), r.end.timestamp()) for r in ranges] == [
            pytest.approx((wall0, wall0 + 5), abs=0.05),
            pytest.approx((wall1 + 5, wall1 + 10), abs=0.05),
        ]
        night = [h for h in holes(ranges, rows, start, end) if ranges[0].end <= h.start < end]
        assert night[0].reason == SCHEDULE_REASON and night[0].end == ranges[1].start
        assert sum(1 for r in rows if r.is_gap) == 1
    finally:
        await recorder.stop()
        await hub.stop()


async def test_recorder_wakes_at_window_edges_and_trims_gap(services: Services) -> None:
    """Real clock, a 2 s window a moment from now: recording starts and stops at its edges
    with the periodic refresh far away; editing the schedule trims the "schedule" gap."""
    services.settings.recording.refresh_s = 60
    services.settings.server.timezone = "Europe/Berlin"
    hub = await start_hub(services)
    seed(services, [CH])
    local = datetime.now(BERLIN)
    opens = local.replace(microsecond=0) + timedelta(seconds=2)
    closes = opens + timedelta(seconds=2)
    # just before midnight this is a window across it, which belongs to its start day
    window = {"days": [opens.isoweekday()], "start": f"{opens:%H:%M:%S}", "end": f"{closes:%T}"}
    set_schedule(services, [window])
    recorder = Recorder(services)
    try:
        await recorder.start()
        await recorder.refresh()
        assert CAM not in recorder.channels
        for _ in range(100):  # bounded: 5 s
            if CAM in recorder.channels:
                break
            await asyncio.sleep(0.05)
        assert CAM in recorder.channels and datetime.now(UTC) >= opens
        for _ in range(100):
            if CAM not in recorder.channels:
                break
            await asyncio.sleep(0.05)
        assert CAM not in recorder.channels and datetime.now(UTC) >= closes
        assert "recorder" not in consumers(hub)

        # the refresh that stopped the channel indexes the new off-window gap right after
        for _ in range(100):
            with services.db.session() as s:
                gap = s.scalars(
                    select(RecordingSegment)
                    .where(RecordingSegment.is_gap)
                    .order_by(RecordingSegment.id)
                ).all()
            if len(gap) == 2:
                break
            await asyncio.sleep(0.05)
        assert [g.reason for g in gap] == [SCHEDULE_REASON, SCHEDULE_REASON]
        assert gap[-1].end - gap[-1].start > timedelta(days=6)  # until next week's window
        set_schedule(services, [])  # recording around the clock from now on
        services.events.publish("channel.updated", channel_id=CH)
        for _ in range(100):
            if CAM in recorder.channels:
                break
            await asyncio.sleep(0.05)
        assert CAM in recorder.channels
        with services.db.session() as s:
            trimmed = s.get(RecordingSegment, gap[-1].id)
            assert trimmed is not None
            assert trimmed.end - trimmed.start < timedelta(seconds=30)
    finally:
        await recorder.stop()
        await hub.stop()


async def test_schedule_set_through_the_api(services: Services) -> None:
    """PATCH validates (422 naming the problem), stores normalised JSON, publishes the event."""
    _, token = seed(services, [CH])
    with services.db.session() as s:
        device_id = (
            s.scalars(select(Channel).where(Channel.channel_id == CH)).one().device.device_id
        )
    path = f"/api/devices/{device_id}/channels/{CH}"
    app = create_app(services)
    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ) as api,
        services.events.subscribe() as events,
    ):
        body = {"record_schedule": [{"days": [5, 1], "start": "22:00", "end": "06:00"}]}
        resp = await api.patch(path, json=body)
        assert resp.status_code == 200, resp.text
        stored = [{"days": [1, 5], "start": "22:00", "end": "06:00"}]
        assert resp.json()["record_schedule"] == stored
        event = await asyncio.wait_for(events.get(), 5)
        assert event.kind == "channel.updated"
        assert event.data == {
            "device_id": device_id,
            "channel_id": CH,
            "fields": ["record_schedule"],
        }
        for bad, needle in (
            ([{"days": [1], "start": "08:00", "end": "25:00"}], "out of range"),
            ([{"days": [9], "start": "08:00", "end": "18:00"}], "less than or equal to 7"),
            ("08:00-18:00", "valid list"),
        ):
            resp = await api.patch(path, json={"record_schedule": bad})
            assert resp.status_code == 422 and needle in resp.text, resp.text
        assert events.empty()  # nothing changed, nothing announced
        with services.db.session() as s:
            channel = s.scalars(select(Channel).where(Channel.channel_id == CH)).one()
            assert channel.record_schedule == stored
        resp = await api.patch(path, json={"record_schedule": None})
        assert resp.status_code == 200 and resp.json()["record_schedule"] == []
        listed = (await api.get(f"/api/devices/{device_id}/channels")).json()
        assert listed[0]["record_schedule"] == []
