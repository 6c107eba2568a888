"""The weekly and monthly jobs on simulated time, on SQLite and PostgreSQL: when they fire
(Monday / the 1st at report_time, once, across a restart), their periods, warning notices
to the right contacts, interview lists, key enforcement targets and overdue alarms."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import Alarm, HandlingState, Profile
from storage.sensor_models import Notification, SensorWarning, SupervisionReport, WarningLevel
from vms.supervision.overdue import overdue_alarms
from vms.supervision.reports import (
    FREQUENT_MAJOR,
    FREQUENT_WARNINGS,
    NOTICE_KIND,
    OVERDUE_MAJOR,
    OVERDUE_WARNINGS,
)
from vms.supervision.schemas import ReportBody
from vms.supervision.service import REPORT_EVENT, Supervision

from .supervision_support import (
    Tree,
    all_online_since,
    device_events,
    heard,
    local,
    make_settings,
    open_db,
    seed_tree,
    sensor_events,
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def rig(tmp_path: Path, db_url: str) -> Iterator[tuple[Database, Tree, Path, str]]:
    settings = make_settings(tmp_path, db_url)
    db = open_db(settings)
    tree = seed_tree(db)
    try:
        yield db, tree, tmp_path, db_url
    finally:
        db.close()


def supervision(tmp_path: Path, db_url: str, db: Database, **cfg: object) -> Supervision:
    return Supervision(make_settings(tmp_path, db_url, **cfg), db, clock=Clock(local(2024, 1, 1)))


def reports(db: Database) -> list[tuple[str, date, date]]:
    with db.session() as s:
        return [
            (r.kind, r.period_start, r.period_end)
            for r in s.scalars(select(SupervisionReport).order_by(SupervisionReport.id))
        ]


def body(db: Database, kind: str, start: date) -> ReportBody:
    with db.session() as s:
        r = s.scalar(
            select(SupervisionReport).where(
                SupervisionReport.kind == kind, SupervisionReport.period_start == start
            )
        )
        assert r is not None, (kind, start)
        return ReportBody.model_validate(r.body)


def week_history(db: Database, tree: Tree) -> None:
    """Week 2024-03-04..10: e1's NVR offline 3 days (both cameras), everything else online."""
    all_online_since(db, tree, local(2024, 2, 1))
    device_events(
        db, tree.devices["e1"], ("offline", local(2024, 3, 5)), ("online", local(2024, 3, 8))
    )


async def run_at(sup: Supervision, at: datetime) -> list[tuple[str, date]]:
    made = await sup.run_due(at)
    return [(m.period.kind, m.period.start) for m in made if m.made]


async def test_weekly_fires_on_monday_at_report_time_once(
    rig: tuple[Database, Tree, Path, str],
) -> None:
    db, tree, tmp_path, db_url = rig
    week_history(db, tree)
    sup = supervision(tmp_path, db_url, db)
    heard(db, tree, local(2024, 3, 4, 8))
    # the first run makes the newest reports already due (a deployment's first start)
    assert await run_at(sup, local(2024, 3, 4, 8)) == [
        ("weekly", date(2024, 2, 26)),
        ("monthly", date(2024, 2, 1)),
    ]
    for at in (local(2024, 3, 10, 12), local(2024, 3, 10, 23, 59), local(2024, 3, 11, 7, 59)):
        heard(db, tree, at)
        assert await run_at(sup, at) == [], at  # Sunday, and Monday before 08:00: nothing
    heard(db, tree, local(2024, 3, 11, 8))
    assert await run_at(sup, local(2024, 3, 11, 8)) == [("weekly", date(2024, 3, 4))]
    assert await run_at(sup, local(2024, 3, 11, 8, 5)) == []  # once
    restarted = supervision(tmp_path, db_url, db)
    assert await run_at(restarted, local(2024, 3, 11, 9)) == []  # once across a restart too
    assert reports(db)[-1] == ("weekly", date(2024, 3, 4), date(2024, 3, 11))
    assert len(reports(db)) == 3


async def test_a_restart_after_the_due_time_makes_the_missed_report(
    rig: tuple[Database, Tree, Path, str],
) -> None:
    db, tree, tmp_path, db_url = rig
    week_history(db, tree)
    heard(db, tree, local(2024, 3, 13, 15))
    first = supervision(tmp_path, db_url, db)
    await first.run_due(local(2024, 3, 10, 9))  # ran on Sunday, then the node was down
    assert ("weekly", date(2024, 3, 4), date(2024, 3, 11)) not in reports(db)
    restarted = supervision(tmp_path, db_url, db)
    async with restarted.events.subscribe() as queue:
        made = await run_at(restarted, local(2024, 3, 13, 15))  # Wednesday
        event = queue.get_nowait()
    assert made == [("weekly", date(2024, 3, 4))]
    assert event.kind == REPORT_EVENT and event.data["period_start"] == "2024-03-04"
    # figures for the days the node was down came from the event histories
    row = next(r for r in body(db, "weekly", date(2024, 3, 4)).enterprises if r.org_id == tree.e1)
    assert row.days == 7 and row.interview


async def test_monthly_fires_on_the_first_with_the_previous_month(
    rig: tuple[Database, Tree, Path, str],
) -> None:
    db, tree, tmp_path, db_url = rig
    all_online_since(db, tree, local(2024, 2, 1))
    sup = supervision(tmp_path, db_url, db)
    heard(db, tree, local(2024, 3, 31, 12))
    await sup.run_due(local(2024, 3, 31, 12))
    assert ("monthly", date(2024, 3, 1), date(2024, 4, 1)) not in reports(db)
    heard(db, tree, local(2024, 4, 1, 7, 59))
    assert await run_at(sup, local(2024, 4, 1, 7, 59)) == []
    heard(db, tree, local(2024, 4, 1, 8))
    # 2024-04-01 is a Monday: the weekly report of 03-25 falls due at the same time
    assert await run_at(sup, local(2024, 4, 1, 8)) == [
        ("weekly", date(2024, 3, 25)),
        ("monthly", date(2024, 3, 1)),
    ]
    assert await run_at(sup, local(2024, 4, 1, 10)) == []
    assert ("monthly", date(2024, 3, 1), date(2024, 4, 1)) in reports(db)
    march = body(db, "monthly", date(2024, 3, 1))
    assert march.kind == "monthly" and march.period_end == date(2024, 4, 1)
    assert all(r.offline_rate == 0 and r.days == 31 for r in march.enterprises)


async def test_rate_over_the_limit_queues_notices_to_the_right_contacts(
    rig: tuple[Database, Tree, Path, str],
) -> None:
    db, tree, tmp_path, db_url = rig
    week_history(db, tree)
    sup = supervision(tmp_path, db_url, db)
    heard(db, tree, local(2024, 3, 11, 8))
    await sup.run_due(local(2024, 3, 11, 8))
    week = body(db, "weekly", date(2024, 3, 4))
    rows = {r.org_id: r for r in week.enterprises}
    assert set(rows) == {tree.e1, tree.e2, tree.e3}
    e1 = rows[tree.e1]
    # 2 of e1's 4 subjects offline 3 of 7 days: mean daily rate = (2 × 3 days) / (4 × 7 days)
    assert e1.offline_rate == pytest.approx(6 / 28, abs=1e-6)
    assert e1.video_rate == pytest.approx(3 / 7, abs=1e-6) and e1.data_rate == 0
    assert (e1.sensors, e1.cameras, e1.days) == (2, 2, 7)
    assert e1.warning_notice and not rows[tree.e2].warning_notice
    assert not rows[tree.e3].warning_notice and rows[tree.e3].offline_rate == 0
    assert e1.area_id == tree.county_a and e1.area_name == "历下区"
    with db.session() as s:
        notes = s.scalars(select(Notification).order_by(Notification.id)).all()
        sent = sorted((n.channel, n.target) for n in notes)
        assert {n.payload["kind"] for n in notes} == {NOTICE_KIND}
        assert {n.payload["org_id"] for n in notes} == {tree.e1}
        assert {n.org_id for n in notes} == {tree.e1}
        assert all("预警通知" in n.subject and "示例化工" in n.subject for n in notes)
        assert "21.43%" in notes[0].body
    # safety department + HQ of e1 and the district industry regulator; not the emergency
    # bureau, not the city, not the other county's regulator
    assert sent == [
        ("email", "reg@lixia.gov.cn"),
        ("email", "safety@e1.cn"),
        ("sms", "13800000001"),
    ]
    assert e1.notices_queued == 3
    # a second run (and a second node) writes nothing more
    await sup.run_due(local(2024, 3, 11, 9))
    await supervision(tmp_path, db_url, db).run_due(local(2024, 3, 11, 10))
    with db.session() as s:
        assert len(s.scalars(select(Notification.id)).all()) == 3


async def test_interview_lists_at_two_and_five_days(
    rig: tuple[Database, Tree, Path, str],
) -> None:
    db, tree, tmp_path, db_url = rig
    week_history(db, tree)  # e1: both cameras 3 days offline in the week of 03-04
    # e3: LT-301 offline 1.5 days in that week, then 6 days straight in March
    sensor_events(
        db,
        tree.sensors["LT-301"],
        ("offline", local(2024, 3, 6)),
        ("online", local(2024, 3, 7, 12)),
        ("offline", local(2024, 3, 18)),
        ("online", local(2024, 3, 24)),
    )
    # e2: PT-201 offline 1 day + 1.5 days in separate stretches (cumulative 2.5 > 2)
    sensor_events(
        db,
        tree.sensors["PT-201"],
        ("offline", local(2024, 3, 4)),
        ("online", local(2024, 3, 5)),
        ("offline", local(2024, 3, 8)),
        ("online", local(2024, 3, 9, 12)),
    )
    sup = supervision(tmp_path, db_url, db)
    heard(db, tree, local(2024, 4, 1, 8))
    await sup.run_due(local(2024, 3, 11, 8))
    await sup.run_due(local(2024, 4, 1, 8))
    week = {r.org_id: r for r in body(db, "weekly", date(2024, 3, 4)).enterprises}
    assert week[tree.e1].interview and not week[tree.e3].interview  # 3 days vs 1.5 days
    assert week[tree.e2].interview  # cumulative: 2.5 days in two stretches
    cams = [(s.subject, s.subject_id, s.offline_days) for s in week[tree.e1].offline_subjects]
    assert cams == [("camera", c, 3.0) for c in sorted(tree.cameras["e1"])]
    assert week[tree.e1].offline_subjects[0].name.startswith("e1 cam")
    assert not any(r.area_interview for r in week.values())  # monthly only
    month = body(db, "monthly", date(2024, 3, 1))
    rows = {r.org_id: r for r in month.enterprises}
    assert rows[tree.e3].interview and rows[tree.e3].area_interview  # 7.5 days in March
    assert rows[tree.e1].interview and not rows[tree.e1].area_interview  # 3 days
    lt = rows[tree.e3].offline_subjects[0]
    assert (lt.subject, lt.offline_days) == ("sensor", 7.5)
    assert lt.longest_offline_s == 86400
    assert [(a.org_id, a.name, a.enterprises) for a in month.areas] == [
        (tree.county_b, "市中区", [tree.e3])
    ]


async def test_the_interview_limit_is_a_setting(rig: tuple[Database, Tree, Path, str]) -> None:
    db, tree, tmp_path, db_url = rig
    week_history(db, tree)
    heard(db, tree, local(2024, 3, 11, 8))
    sup = supervision(tmp_path, db_url, db, interview_days=4, offline_rate_limit=0.5)
    await sup.run_due(local(2024, 3, 11, 8))
    week = {r.org_id: r for r in body(db, "weekly", date(2024, 3, 4)).enterprises}
    assert not week[tree.e1].interview and not week[tree.e1].warning_notice
    assert body(db, "weekly", date(2024, 3, 4)).limits.interview_days == 4


def _warning(
    org_id: int, level: WarningLevel, raised: datetime, hours: float | None
) -> SensorWarning:
    closed = raised + timedelta(hours=hours) if hours is not None else None
    return SensorWarning(
        org_id=org_id,
        level=level,
        peak_level=level,
        raised_at=raised,
        level_since=raised,
        active=closed is None,
        cleared_at=closed,
        closed_at=closed,
        handling=HandlingState.closed if closed else HandlingState.new,
    )


async def test_monthly_key_targets_for_overdue_or_frequent_warnings(
    rig: tuple[Database, Tree, Path, str],
) -> None:
    db, tree, tmp_path, db_url = rig
    all_online_since(db, tree, local(2024, 2, 1))
    r, o, y, b = WarningLevel.red, WarningLevel.orange, WarningLevel.yellow, WarningLevel.blue
    with db.session() as s:
        s.add_all(
            [
                _warning(tree.e1, r, local(2024, 3, 20, 10), 3),  # red: 3 h > 2 h
                _warning(tree.e1, y, local(2024, 3, 21, 10), 1),
                *[_warning(tree.e1, b, local(2024, 3, 22, h), None) for h in range(12)],
                *[_warning(tree.e2, o, local(2024, 3, 10 + i), 1) for i in range(3)],  # frequent
                _warning(tree.e3, y, local(2024, 3, 30, 9), None),  # open 47 h at report
                _warning(tree.e3, r, local(2024, 2, 28), 5),  # February: not this report's
            ]
        )
    sup = supervision(tmp_path, db_url, db)
    heard(db, tree, local(2024, 4, 1, 8))
    await sup.run_due(local(2024, 4, 1, 8))
    rows = {x.org_id: x for x in body(db, "monthly", date(2024, 3, 1)).enterprises}
    e1, e2, e3 = rows[tree.e1], rows[tree.e2], rows[tree.e3]
    assert e1.warnings is not None and e1.warnings.total == 2  # blue excluded
    assert (e1.warnings.major, e1.warnings.overdue, e1.warnings.overdue_major) == (1, 1, 1)
    assert e1.key_target and e1.key_target_reasons == [OVERDUE_WARNINGS, OVERDUE_MAJOR]
    assert e2.key_target and e2.key_target_reasons == [FREQUENT_MAJOR]
    assert e3.key_target_reasons == [OVERDUE_WARNINGS]  # still open after its 24 h
    # the frequent-warnings count is a setting
    with db.session() as s:
        s.execute(SupervisionReport.__table__.delete())
    sup = supervision(tmp_path, db_url, db, frequent_warnings=2, frequent_major_warnings=5)
    await sup.run_due(local(2024, 4, 1, 8))
    rows = {x.org_id: x for x in body(db, "monthly", date(2024, 3, 1)).enterprises}
    assert rows[tree.e1].key_target_reasons == [OVERDUE_WARNINGS, FREQUENT_WARNINGS, OVERDUE_MAJOR]
    assert rows[tree.e2].key_target_reasons == [FREQUENT_WARNINGS]


async def test_overdue_alarms_are_listed(rig: tuple[Database, Tree, Path, str]) -> None:
    db, tree, tmp_path, db_url = rig
    all_online_since(db, tree, local(2024, 2, 1))
    now = local(2024, 3, 11, 8)
    cam = tree.cameras["e1"][0]

    def alarm(raised: datetime, **kw: object) -> Alarm:
        return Alarm(
            channel_pk=tree.channel_pks[cam],
            org_id=tree.e1,
            profile=Profile.enterprise,
            alarm_type="9",
            rule="no_helmet",
            video_code=cam,
            raised_at=raised,
            **kw,
        )

    with db.session() as s:
        old_active = alarm(now - timedelta(hours=30))
        old_unclosed = alarm(
            now - timedelta(hours=48), active=False, cleared_at=now - timedelta(hours=47)
        )
        closed = alarm(
            now - timedelta(hours=72),
            active=False,
            handling=HandlingState.closed,
            closed_at=now - timedelta(hours=70),
        )
        recent = alarm(now - timedelta(hours=2))
        open_warning = _warning(tree.e3, WarningLevel.orange, now - timedelta(hours=25), None)
        done_warning = _warning(tree.e3, WarningLevel.orange, now - timedelta(hours=40), 2)
        s.add_all([old_active, old_unclosed, closed, recent, open_warning, done_warning])
    with db.session() as s:
        listed = overdue_alarms(s, now, 24)
        assert [(a.source, a.ref) for a in listed] == [
            ("video", old_unclosed.alarm_id),
            ("video", old_active.alarm_id),
            ("sensor", open_warning.warning_id),
        ]
        assert listed[1].active and listed[1].open_hours == 30 and listed[1].org_name == "示例化工"
        assert cam in listed[1].what and not listed[0].active
        assert listed[2].level == "orange" and listed[2].what.startswith("?")  # no sensor
        org_path = listed[2].org_path
        assert [a.source for a in overdue_alarms(s, now, 24, org_path)] == ["sensor"]
        assert len(overdue_alarms(s, now, 100)) == 0
    sup = supervision(tmp_path, db_url, db)
    heard(db, tree, now)
    await sup.run_due(now)
    week = body(db, "weekly", date(2024, 3, 4))
    assert [a.ref for a in week.overdue_alarms] == [a.ref for a in listed]
    rows = {r.org_id: r for r in week.enterprises}
    assert (rows[tree.e1].overdue_alarms, rows[tree.e3].overdue_alarms) == (2, 1)
