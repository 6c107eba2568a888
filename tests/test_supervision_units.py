"""Pure parts of offline supervision: spans, local days, report periods and due times,
the rate formula, CSV and HTML rendering."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from vms.supervision.periods import Period, PeriodError, day_bounds, latest_due, local_day
from vms.supervision.rates import aggregate
from vms.supervision.render import to_csv, to_html
from vms.supervision.schemas import (
    EnterpriseRow,
    OfflineSubject,
    OverdueAlarm,
    ReportBody,
    ReportLimits,
)
from vms.supervision.spans import clip, offline_spans, totals, union

from .supervision_support import TZ, local

H = 3600.0


def test_offline_spans_follow_the_changes() -> None:
    start, end = local(2024, 3, 4), local(2024, 3, 5)
    changes = [(local(2024, 3, 4, 8), True), (local(2024, 3, 4, 22), False)]
    spans = offline_spans(start, end, False, changes)
    assert spans == [(start, local(2024, 3, 4, 8)), (local(2024, 3, 4, 22), end)]
    assert totals(spans) == (10 * H, 8 * H)


def test_repeated_states_and_changes_outside_the_window_are_ignored() -> None:
    start, end = local(2024, 3, 4), local(2024, 3, 5)
    changes = [
        (local(2024, 3, 4, 1), True),  # already online
        (local(2024, 3, 4, 2), False),
        (local(2024, 3, 4, 3), False),  # duplicate offline
        (local(2024, 3, 4, 5), True),
        (local(2024, 3, 6), False),  # after the window
    ]
    assert totals(offline_spans(start, end, True, changes)) == (3 * H, 3 * H)


def test_a_stale_online_state_counts_as_offline_after_last_heard() -> None:
    start, end = local(2024, 3, 4), local(2024, 3, 5)
    spans = offline_spans(start, end, True, [], online_until=local(2024, 3, 4, 20))
    assert totals(spans) == (4 * H, 4 * H)
    assert offline_spans(start, end, True, [], online_until=local(2024, 3, 6)) == []


def test_union_clip_and_totals() -> None:
    a = [
        (local(2024, 3, 4, 1), local(2024, 3, 4, 3)),
        (local(2024, 3, 4, 10), local(2024, 3, 4, 11)),
    ]
    b = [
        (local(2024, 3, 4, 2), local(2024, 3, 4, 5)),
        (local(2024, 3, 4, 11), local(2024, 3, 4, 12)),
    ]
    merged = union(a, b)
    assert merged == [
        (local(2024, 3, 4, 1), local(2024, 3, 4, 5)),
        (local(2024, 3, 4, 10), local(2024, 3, 4, 12)),  # touching spans become one
    ]
    assert totals(clip(merged, local(2024, 3, 4, 4), local(2024, 3, 4, 11))) == (2 * H, H)


def test_shanghai_days_are_86400_seconds_from_local_midnight() -> None:
    for day in (date(2024, 3, 10), date(2024, 3, 31), date(2024, 11, 3)):
        start, end = day_bounds(day, TZ)
        assert (end - start).total_seconds() == 86400
        assert start == datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC)
        assert start.hour == 16  # 00:00 +08:00
    assert local_day(datetime(2024, 3, 4, 16, 0, tzinfo=UTC), TZ) == date(2024, 3, 5)
    assert local_day(datetime(2024, 3, 4, 15, 59, tzinfo=UTC), TZ) == date(2024, 3, 4)


def test_a_zone_with_dst_gets_its_short_day() -> None:
    start, end = day_bounds(date(2024, 3, 31), ZoneInfo("Europe/Berlin"))
    assert (end - start).total_seconds() == 23 * 3600


def test_weekly_due_on_monday_at_report_time() -> None:
    at = time(8, 0)
    sunday = local(2024, 3, 10, 23, 59)
    before = local(2024, 3, 11, 7, 59)
    due = local(2024, 3, 11, 8, 0)
    assert latest_due("weekly", sunday, TZ, at) == Period.of("weekly", date(2024, 2, 26))
    assert latest_due("weekly", before, TZ, at) == Period.of("weekly", date(2024, 2, 26))
    week = latest_due("weekly", due, TZ, at)
    assert (week.start, week.end) == (date(2024, 3, 4), date(2024, 3, 11))
    assert latest_due("weekly", local(2024, 3, 14, 3), TZ, at) == week  # later in the week
    assert week.due_at(TZ, at) == due.astimezone(UTC)
    assert len(week.days) == 7


def test_monthly_due_on_the_first_at_report_time() -> None:
    at = time(8, 0)
    assert latest_due("monthly", local(2024, 4, 1, 7, 59), TZ, at).start == date(2024, 2, 1)
    march = latest_due("monthly", local(2024, 4, 1, 8, 0), TZ, at)
    assert (march.start, march.end, len(march.days)) == (date(2024, 3, 1), date(2024, 4, 1), 31)
    assert latest_due("monthly", local(2024, 4, 30, 23), TZ, at) == march
    january = latest_due("monthly", local(2024, 2, 1, 9), TZ, at)
    december = latest_due("monthly", local(2024, 1, 1, 9), TZ, at)
    assert (january.start, january.end) == (date(2024, 1, 1), date(2024, 2, 1))
    assert (december.start, december.end) == (date(2023, 12, 1), date(2024, 1, 1))
    assert len(Period.of("monthly", date(2024, 2, 1)).days) == 29  # leap year


def test_periods_must_start_where_their_kind_starts() -> None:
    with pytest.raises(PeriodError, match="Monday"):
        Period.of("weekly", date(2024, 3, 5))
    with pytest.raises(PeriodError, match="1st"):
        Period.of("monthly", date(2024, 3, 2))
    with pytest.raises(PeriodError, match="unknown"):
        Period.of("daily", date(2024, 3, 4))


def test_rate_is_the_mean_of_daily_rates() -> None:
    d1, d2 = date(2024, 3, 4), date(2024, 3, 5)
    rows = [
        # day 1: 2 sensors + 1 camera watched all day, 10 % of the sum offline
        (d1, "sensor", "1", 7, 86400.0 * 0.3, 86400.0 * 0.3, 86400.0),
        (d1, "sensor", "2", 7, 0.0, 0.0, 86400.0),
        (d1, "camera", "c1", 7, 0.0, 0.0, 86400.0),
        # day 2: sensor 2 suspended (monitored 0), the others fully offline
        (d2, "sensor", "1", 7, 86400.0, 86400.0, 86400.0),
        (d2, "sensor", "2", 7, 0.0, 0.0, 0.0),
        (d2, "camera", "c1", 7, 86400.0, 86400.0, 86400.0),
        (d1, "sensor", "9", None, 86400.0, 86400.0, 86400.0),  # no organisation: ignored
    ]
    f = aggregate(rows)[7]
    assert f.days == 2
    assert f.offline_rate == pytest.approx((0.1 + 1.0) / 2)
    assert f.data_rate == pytest.approx((0.15 + 1.0) / 2)
    assert f.video_rate == pytest.approx(0.5)
    assert f.count("sensor") == 2 and f.count("camera") == 1
    s1 = f.subjects[("sensor", "1")]
    assert (s1.offline_s, s1.longest_offline_s, s1.days) == (86400 * 1.3, 86400.0, 2)
    assert None not in aggregate(rows)


def test_an_organisation_with_nothing_monitored_has_no_rate() -> None:
    f = aggregate([(date(2024, 3, 4), "sensor", "1", 3, 0.0, 0.0, 0.0)])[3]
    assert f.offline_rate is None and f.days == 0 and f.count("sensor") == 0


def _body() -> ReportBody:
    return ReportBody(
        kind="weekly",
        period_start=date(2024, 3, 4),
        period_end=date(2024, 3, 11),
        timezone="Asia/Shanghai",
        generated_at=datetime(2024, 3, 11, 0, 0, tzinfo=UTC),
        limits=ReportLimits(
            offline_rate_limit=0.05,
            interview_days=2,
            area_interview_days=5,
            overdue_alarm_hours=24,
            frequent_warnings=10,
            frequent_major_warnings=3,
            onsite_deadline_hours={"yellow": 24, "orange": 12, "red": 2},
        ),
        enterprises=[
            EnterpriseRow(
                org_id=5,
                name="示例<化工>",
                code="370102001",
                org_path="/1/2/3/5/",
                area_name="历下区",
                sensors=2,
                cameras=2,
                days=7,
                offline_rate=0.2143,
                warning_notice=True,
                interview=True,
                offline_subjects=[
                    OfflineSubject(
                        subject="camera",
                        subject_id="c1",
                        name="东门",
                        offline_s=259200,
                        longest_offline_s=86400,
                        offline_days=3.0,
                    )
                ],  # fmt: skip
            )
        ],
        overdue_alarms=[
            OverdueAlarm(
                source="sensor",
                ref="w-1",
                org_id=5,
                org_name="示例<化工>",
                what="GT-101",
                level="red",
                raised_at=datetime(2024, 3, 9, tzinfo=UTC),
                open_hours=48.0,
                active=True,
                handling="new",
            )
        ],  # fmt: skip
    )


def test_csv_has_bilingual_headers_and_percentages() -> None:
    text = to_csv(_body())
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert len(rows) == 1
    row = rows[0]
    assert row["企业 enterprise"] == "示例<化工>"
    assert row["日均离线率 daily-average offline rate (%)"] == "21.43"
    assert row["预警通知 warning notice"] == "是 yes" and row["约谈 interview"] == "是 yes"
    assert row["离线超限 offline over limit"] == "东门 (3.00 d)"
    assert row["区域约谈 area interview"] == ""  # weekly reports have none
    overdue = list(csv.DictReader(io.StringIO(to_csv(_body(), "overdue").lstrip("\ufeff"))))
    assert overdue[0]["编号 ref"] == "w-1" and overdue[0]["已持续小时 open hours"] == "48.0"


def test_printable_page_escapes_and_has_print_css() -> None:
    html = to_html(_body(), "历下区")
    assert "@media print" in html and "@page" in html
    assert "示例&lt;化工&gt;" in html and "示例<化工>" not in html
    assert "2024-03-04 – 2024-03-10" in html  # the last day, not the exclusive end
    assert "周报 Weekly report" in html and "历下区" in html
    assert html.count('data-org="5"') == 1
    assert "GT-101" in html


def test_day_bounds_cover_a_range_without_gaps() -> None:
    day = date(2024, 2, 26)
    for _ in range(40):
        assert day_bounds(day, TZ)[1] == day_bounds(day + timedelta(days=1), TZ)[0]
        day += timedelta(days=1)
