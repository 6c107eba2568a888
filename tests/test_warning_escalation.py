"""The escalation table of spec/sensors.md §4, cell by cell, on a simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage.sensor_models import Duty, Sensor, WarningLevel
from vms.warning.escalation import due_actions, next_notice_at, onsite_due_at
from vms.warning.table import ENTERPRISE, ESCALATION, as_rows, rule

from .warning_support import EMAILS, PHONES, Rig, duties_of, engine_rig, targets

H = 3600.0
GAS = {
    "kind": "gas_combustible",
    "unit": "%LEL",
    "range_max": 100.0,
    "thresholds": {"h": 25.0, "hh": 50.0},
}
# one sensor per level, and a reading that puts it there
LEVEL_SENSORS: dict[str, tuple[dict[str, Any], float]] = {
    "blue": ({"tag": "PT-B", "thresholds": {"h": 6.0}, "levels": {"h": "blue"}}, 7.0),
    "yellow": ({"tag": "PT-Y"}, 7.0),
    "orange": ({"tag": "PT-O"}, 9.0),
    "red": ({"tag": "GAS-R", **GAS}, 60.0),
}
PUSH = {
    "blue": [],
    "yellow": ["hq", "safety_dept"],
    "orange": ["hq", "industry_regulator", "safety_dept"],
    "red": ["emergency_bureau", "hq", "industry_regulator", "safety_dept"],
}
TIMERS = {  # notice after, repeat, notice to, on-site after, on-site to (the tracker)
    "yellow": (1 * H, 1 * H, ["hq", "safety_dept"], 24 * H, ["safety_dept"]),
    "orange": (1 * H, 1 * H, ["industry_regulator"], 12 * H, ["industry_regulator"]),
    "red": (0.5 * H, 0.5 * H, ["industry_dept"], 2 * H, ["industry_regulator"]),
}


def test_the_table_cell_by_cell() -> None:
    blue, yellow, orange, red = (ESCALATION[WarningLevel(x)] for x in LEVEL_SENSORS)
    # pushed immediately to
    assert blue.push == ()
    assert yellow.push == (Duty.safety_dept, Duty.hq)
    assert orange.push == (Duty.industry_regulator, Duty.safety_dept, Duty.hq)
    assert red.push == (Duty.emergency_bureau, Duty.industry_regulator, Duty.safety_dept, Duty.hq)
    assert red.relay_to == (Duty.monitoring_center,)
    assert blue.relay_to == yellow.relay_to == orange.relay_to == ()
    # tracked by
    assert blue.tracker == ENTERPRISE
    assert yellow.tracker == "safety_dept"
    assert orange.tracker == red.tracker == "industry_regulator"
    # not downgraded after → automatic notice, to whom
    assert blue.notice_after_s is None and blue.notice_to == ()
    assert yellow.notice_after_s == 3600 and yellow.notice_to == (Duty.safety_dept, Duty.hq)
    assert orange.notice_after_s == 3600 and orange.notice_to == (Duty.industry_regulator,)
    assert red.notice_after_s == 1800 and red.notice_to == (Duty.industry_dept,)
    # repeat until downgraded
    assert blue.repeat_s is None
    assert yellow.repeat_s == orange.repeat_s == 3600 and red.repeat_s == 1800
    # on-site verification, by the tracker
    assert blue.onsite_after_s is None and blue.onsite_to == ()
    assert yellow.onsite_after_s == 24 * 3600 and yellow.onsite_to == (Duty.safety_dept,)
    assert orange.onsite_after_s == 12 * 3600 and orange.onsite_to == (Duty.industry_regulator,)
    assert red.onsite_after_s == 2 * 3600 and red.onsite_to == (Duty.industry_regulator,)
    assert [r["level"] for r in as_rows()] == ["blue", "yellow", "orange", "red"]


@pytest.mark.parametrize("level", ["yellow", "orange", "red"])
def test_due_actions_on_the_boundaries(level: str) -> None:
    r = rule(level)
    since = datetime(2026, 12, 7, tzinfo=UTC)
    after, repeat, _, onsite, _ = TIMERS[level]

    def at(s: float) -> datetime:
        return since + timedelta(seconds=s)

    assert due_actions(r, since, 0, None, at(after - 1)) == []
    (first,) = due_actions(r, since, 0, None, at(after))
    assert (first.kind, first.at, first.index, first.missed) == ("notice", at(after), 1, 0)
    assert due_actions(r, since, 1, None, at(after + repeat - 1)) == []
    (second,) = due_actions(r, since, 1, None, at(after + repeat))
    assert second.index == 2 and second.at == at(after + repeat)
    late = due_actions(r, since, 1, None, at(after + 4 * repeat + 5))
    notices = [(d.index, d.missed) for d in late if d.kind == "notice"]
    assert notices == [(5, 3)]  # only the latest slot; 3 were missed
    kinds = [d.kind for d in due_actions(r, since, 99, None, at(onsite))]
    assert kinds == ["onsite"]
    assert due_actions(r, since, 99, at(onsite), at(onsite + 10)) == []  # once per clock
    assert due_actions(r, since, 99, since - timedelta(1), at(onsite)) != []  # an older clock
    assert next_notice_at(r, since, 2) == at(after + 2 * repeat)
    assert onsite_due_at(r, since, None) == at(onsite)
    assert due_actions(rule("blue"), since, 0, None, at(1e9)) == []


async def _open_each_level(rig: Rig, pks: list[int]) -> dict[str, Any]:
    by_level = {}
    for pk, (level, (_spec, value)) in zip(pks, LEVEL_SENSORS.items(), strict=True):
        await rig.feed(pk, value)
        by_level[level] = pk
    return by_level


async def test_first_push_per_level(tmp_path: Path, db_url: str) -> None:
    specs = [dict(spec) for spec, _ in LEVEL_SENSORS.values()]
    async with engine_rig(tmp_path, db_url, specs) as (rig, pks):
        async with rig.events.subscribe() as bus:
            await _open_each_level(rig, pks)
            events = []
            while not bus.empty():
                events.append(bus.get_nowait())
        warnings = {w.level.value: w for w in rig.warnings()}
        assert sorted(warnings) == ["blue", "orange", "red", "yellow"]
        notices = rig.notifications()
        for level, w in warnings.items():
            opened = [e for e in w.events if e.kind == "opened"]
            assert len(opened) == 1
            assert duties_of(opened[0].recipients) == sorted([ENTERPRISE, *PUSH[level]])
            mine = [n for n in notices if n.warning_pk == w.id and n.payload["event"] == "opened"]
            assert targets(mine) == sorted(EMAILS[Duty(d)] for d in PUSH[level])
            assert targets(mine, "sms") == sorted(
                PHONES[Duty(d)] for d in PUSH[level] if Duty(d) in PHONES
            )
            assert all(n.org_id == rig.tree.enterprise_id for n in mine)
            assert w.level_since == w.raised_at and w.notice_count == 0
        assert [n for n in notices if n.warning_pk == warnings["blue"].id] == []
        # red only: relayed at once to the city-level monitoring system
        red = warnings["red"]
        assert red.relayed_at == red.raised_at
        (relay,) = [e for e in red.events if e.kind == "relayed"]
        assert duties_of(relay.recipients) == ["monitoring_center"]
        relayed = [n for n in notices if n.warning_pk == red.id and n.payload["event"] == "relayed"]
        assert targets(relayed) == [EMAILS[Duty.monitoring_center]]
        assert all(w.relayed_at is None for lv, w in warnings.items() if lv != "red")
        # the UI push: one bus event per warning, scoped to the enterprise, with recipients
        opened_events = [e for e in events if e.kind == "warning.opened"]
        assert sorted(e.data["level"] for e in opened_events) == sorted(warnings)
        ent_path = opened_events[0].data["org_path"]
        assert all(e.data["org_path"] == ent_path for e in opened_events)
        blue_event = next(e for e in opened_events if e.data["level"] == "blue")
        assert duties_of(blue_event.data["recipients"]) == [ENTERPRISE]
        assert blue_event.data["tracker"] == ENTERPRISE
        assert [e.data["level"] for e in events if e.kind == "warning.notice"] == ["red"]
        # blue has no timers at all
        assert [f for f in await rig.tick(100 * 24 * H) if f["level"] == "blue"] == []


@pytest.mark.parametrize("level", ["yellow", "orange", "red"])
async def test_timers_fire_on_time_and_only_once(tmp_path: Path, db_url: str, level: str) -> None:
    spec, value = LEVEL_SENSORS[level]
    after, repeat, notice_to, onsite, onsite_to = TIMERS[level]
    async with engine_rig(tmp_path, db_url, [dict(spec)]) as (rig, (pk,)):
        t0 = rig.clock.t
        await rig.feed(pk, value)
        end = onsite + 2 * repeat
        expected = [("notice", after + k * repeat) for k in range(int((end - after) // repeat) + 1)]
        expected.append(("onsite", onsite))
        checkpoints = {x for _, due in expected for x in (due - 1, due, due + 1)}
        checkpoints |= {k * 1800.0 for k in range(int(end // 1800) + 1)}
        fired = []
        for offset in sorted(checkpoints):
            rig.clock.t = t0 + offset
            for f in await rig.escalator.tick(rig.clock.t):
                fired.append((f["kind"], offset))
        assert sorted(fired) == sorted(expected)
        (w,) = rig.warnings()
        notices = [e for e in w.events if e.kind == "notice"]
        assert [e.detail["index"] for e in notices] == list(range(1, len(notices) + 1))
        assert all(duties_of(e.recipients) == notice_to for e in notices)
        (visit,) = [e for e in w.events if e.kind == "onsite"]
        assert duties_of(visit.recipients) == onsite_to
        rows = rig.notifications()
        first = [
            n for n in rows if n.payload["event"] == "notice" and n.payload["warning"]["index"] == 1
        ]
        assert targets(first) == sorted(EMAILS[Duty(d)] for d in notice_to)
        onsite_rows = [n for n in rows if n.payload["event"] == "onsite"]
        assert targets(onsite_rows) == sorted(EMAILS[Duty(d)] for d in onsite_to)
        assert w.notice_count == len(notices) and w.onsite_at is not None


async def test_escalation_restarts_the_clock(tmp_path: Path, db_url: str) -> None:
    """yellow (rate) → orange (h) → red (hh): each level's clock starts when it is reached."""
    gas = {**GAS, "thresholds": {"h": 25.0, "hh": 50.0, "rate": 5.0}, "levels": {"rate": "yellow"}}
    async with engine_rig(tmp_path, db_url, [{"tag": "GAS-1", **gas}]) as (rig, (pk,)):
        await rig.feed(pk, 0.0)
        await rig.feed(pk, 2.0, advance_s=10)  # 12 %LEL/min: the rate is yellow here
        y = rig.clock.t
        (w,) = rig.warnings()
        assert (w.level, w.cause) == (WarningLevel.yellow, "rate")
        assert await rig.tick(1799) == []
        await rig.feed(pk, 30.0, advance_s=1)  # h → orange, 30 min into yellow
        o = rig.clock.t
        (w,) = rig.warnings()
        assert w.level is WarningLevel.orange and w.level_since.timestamp() == o
        escalated = [e for e in w.events if e.kind == "escalated"]
        assert duties_of(escalated[0].recipients) == sorted([ENTERPRISE, *PUSH["orange"]])
        rig.clock.t = y + H
        assert await rig.tick() == []  # the yellow clock stopped at the escalation
        rig.clock.t = o + H - 1
        assert await rig.tick() == []
        rig.clock.t = o + H
        assert [f["kind"] for f in await rig.tick()] == ["notice"]
        await rig.feed(pk, 60.0, advance_s=60)  # hh → red
        r = rig.clock.t
        (w,) = rig.warnings()
        assert w.level is WarningLevel.red and w.peak_level is WarningLevel.red
        assert w.relayed_at is not None and w.relayed_at.timestamp() == r
        assert w.escalated_at is not None and w.escalated_at.timestamp() == r
        assert w.notice_count == 0
        fired = []
        for offset in (1799, 1800, 3600, 5400, 7199, 7200, 7300):
            rig.clock.t = r + offset
            fired += [(f["kind"], offset, f["level"]) for f in await rig.tick()]
        assert fired == [
            ("notice", 1800, "red"),
            ("notice", 3600, "red"),
            ("notice", 5400, "red"),
            ("notice", 7200, "red"),
            ("onsite", 7200, "red"),
        ]
        (w,) = rig.warnings()
        kinds = [e.kind for e in w.events]
        assert kinds[:4] == ["opened", "escalated", "notice", "escalated"]
        assert kinds.count("relayed") == 1


async def test_downgrade_and_clear_stop_the_clock(tmp_path: Path, db_url: str) -> None:
    async with engine_rig(tmp_path, db_url, [{"tag": "GAS-2", **GAS}]) as (rig, (pk,)):
        t0 = rig.clock.t
        await rig.feed(pk, 60.0)  # red
        await rig.feed(pk, 30.0, advance_s=600)  # orange level: the hold starts
        (w,) = rig.warnings()
        assert w.level is WarningLevel.red  # not yet: 30 s hold
        await rig.feed(pk, 30.0, advance_s=29)
        assert rig.warnings()[0].level is WarningLevel.red
        await rig.feed(pk, 30.0, advance_s=1)  # held 30 s → downgraded now
        d = rig.clock.t
        (w,) = rig.warnings()
        assert w.level is WarningLevel.orange and w.level_since.timestamp() == d
        assert w.peak_level is WarningLevel.red and rig.point(pk).level == "orange"
        rig.clock.t = t0 + 1800
        assert await rig.tick() == []  # red's first notice would have been due here
        rig.clock.t = d + H - 1
        assert await rig.tick() == []
        rig.clock.t = d + H
        assert [(f["kind"], f["level"]) for f in await rig.tick()] == [("notice", "orange")]
        await rig.feed(pk, 10.0, advance_s=10)  # normal: clearing needs the hold too
        await rig.feed(pk, 10.0, advance_s=30)
        (w,) = rig.warnings()
        assert not w.active and w.cleared_at is not None and w.closed_at is None
        assert rig.point(pk).level == ""
        for offset in (2 * H, 12 * H, 48 * H):
            rig.clock.t = d + offset
            assert await rig.tick() == []
        assert [e.kind for e in w.events] == [
            "opened",
            "relayed",
            "downgraded",
            "notice",
            "cleared",
        ]


async def test_nothing_fires_twice_across_a_restart(tmp_path: Path, db_url: str) -> None:
    async with engine_rig(tmp_path, db_url, [{"tag": "PT-R"}]) as (rig, (pk,)):
        t0 = rig.clock.t
        await rig.feed(pk, 7.0)  # yellow
        rig.clock.t = t0 + H
        assert len(await rig.tick()) == 1
        await rig.restart()
        assert rig.point(pk).level == "yellow"
        for offset in (H, H + 60, 2 * H - 1):
            rig.clock.t = t0 + offset
            assert await rig.tick() == []
        rig.clock.t = t0 + 2 * H
        assert [f["index"] for f in await rig.tick()] == [2]
        # the episode continues after the restart: no duplicate, the same warning escalates
        await rig.feed(pk, 7.2)
        await rig.feed(pk, 9.0, advance_s=10)
        (w,) = rig.warnings()
        assert w.level is WarningLevel.orange
        o = rig.clock.t
        # the node is down for 3 h: only the latest slot is sent, the skipped ones are noted
        rig.clock.t = o + 4 * H + 5
        (late,) = await rig.tick()
        assert (late["index"], late["kind"]) == (4, "notice")
        await rig.restart()
        rig.clock.t = o + 4 * H + 10
        assert await rig.tick() == []
        rig.clock.t = o + 12 * H
        kinds = sorted(f["kind"] for f in await rig.tick())
        assert kinds == ["notice", "onsite"]
        await rig.restart()
        assert await rig.tick(1) == []
        (w,) = rig.warnings()
        notes = [e for e in w.events if e.kind == "notice"]
        assert "3 earlier notice(s) missed" in notes[-2].note
        assert len(rig.warnings()) == 1


async def test_a_disabled_point_suspends_its_timers(tmp_path: Path, db_url: str) -> None:
    async with engine_rig(tmp_path, db_url, [{"tag": "PT-D"}]) as (rig, (pk,)):
        t0 = rig.clock.t
        await rig.feed(pk, 7.0)
        with rig.db.session() as s:
            s.get(Sensor, pk).enabled = False
        rig.clock.t = t0 + 2 * H
        assert await rig.tick() == []
        with rig.db.session() as s:
            s.get(Sensor, pk).enabled = True
        assert [f["index"] for f in await rig.tick()] == [2]
