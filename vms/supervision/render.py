"""A report as CSV (UTF-8 with BOM, for spreadsheets) and as a printable HTML page.

Both render the report body the caller may see (already scoped): labels in Chinese with
English, rates in per cent.  The HTML is a Jinja2 template with autoescaping and print CSS.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from .schemas import EnterpriseRow, OverdueAlarm, ReportBody

TEMPLATES = Path(__file__).parent / "templates"
_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

REASONS = {
    "overdue_warnings": "预警未及时处置 warnings not handled in time",
    "frequent_warnings": "预警频发 frequent warnings",
    "overdue_major_warnings": "橙/红预警超时 overdue orange/red warnings",
    "frequent_major_warnings": "橙/红预警频发 frequent orange/red warnings",
}
KIND_LABELS = {"weekly": "周报 Weekly report", "monthly": "月报 Monthly report"}

ENTERPRISE_COLUMNS = (
    "企业 enterprise",
    "代码 code",
    "区域 area",
    "监测点 points",
    "摄像机 cameras",
    "统计天数 days",
    "数据离线率 data offline rate (%)",
    "视频离线率 video offline rate (%)",
    "日均离线率 daily-average offline rate (%)",
    "预警通知 warning notice",
    "约谈 interview",
    "区域约谈 area interview",
    "重点执法 key target",
    "原因 reasons",
    "离线超限 offline over limit",
    "超时未销警 overdue alarms",
    "已发通知 notices queued",
)
OVERDUE_COLUMNS = (
    "来源 source",
    "编号 ref",
    "企业 enterprise",
    "内容 what",
    "等级 level",
    "报警时间 raised at",
    "已持续小时 open hours",
    "未消警 active",
    "处置状态 handling",
)


def percent(rate: float | None) -> str:
    return "" if rate is None else f"{rate * 100:.2f}"


def yes(flag: bool) -> str:
    return "是 yes" if flag else ""


def offline_list(row: EnterpriseRow) -> str:
    return "; ".join(
        f"{s.name or s.subject_id} ({s.offline_days:.2f} d)" for s in row.offline_subjects
    )


def enterprise_cells(row: EnterpriseRow, monthly: bool) -> list[str | int]:
    return [
        row.name,
        row.code,
        row.area_name,
        row.sensors,
        row.cameras,
        row.days,
        percent(row.data_rate),
        percent(row.video_rate),
        percent(row.offline_rate),
        yes(row.warning_notice),
        yes(row.interview),
        yes(row.area_interview) if monthly else "",
        yes(row.key_target) if monthly else "",
        "; ".join(REASONS.get(r, r) for r in row.key_target_reasons),
        offline_list(row),
        row.overdue_alarms,
        row.notices_queued,
    ]


def overdue_cells(a: OverdueAlarm) -> list[str | float]:
    return [
        "视频 video" if a.source == "video" else "传感 sensor",
        a.ref,
        a.org_name,
        a.what,
        a.level,
        a.raised_at.isoformat(),
        a.open_hours,
        yes(a.active),
        a.handling,
    ]


def to_csv(body: ReportBody, section: str = "enterprises") -> str:
    buf = io.StringIO()
    buf.write("\ufeff")
    writer = csv.writer(buf)
    if section == "overdue":
        writer.writerow(OVERDUE_COLUMNS)
        writer.writerows(overdue_cells(a) for a in body.overdue_alarms)
    else:
        monthly = body.kind == "monthly"
        writer.writerow(ENTERPRISE_COLUMNS)
        writer.writerows(enterprise_cells(r, monthly) for r in body.enterprises)
    return buf.getvalue()


def to_html(body: ReportBody, title_org: str = "") -> str:
    return _env.get_template("report.html").render(
        body=body,
        kind_label=KIND_LABELS[body.kind],
        last_day=body.period_end - timedelta(days=1),
        title_org=title_org,
        monthly=body.kind == "monthly",
        percent=percent,
        reasons=REASONS,
        enterprise_columns=ENTERPRISE_COLUMNS,
        overdue_columns=OVERDUE_COLUMNS,
        enterprise_cells=enterprise_cells,
        overdue_cells=overdue_cells,
    )
