"""The words of warning notices (e-mail subject and body, SMS text), Chinese first.

Recipients are duty officers reading on a phone: the subject alone must say which
enterprise, which point, which level and what happened.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from storage.sensor_models import SensorWarning

from .table import NAMES_ZH

WHAT = {
    "opened": ("新预警", "new warning"),
    "escalated": ("预警升级", "escalated"),
    "relayed": ("红色预警报送", "red warning relayed"),
    "notice": ("未降级提醒", "not downgraded"),
    "onsite": ("请现场核查", "on-site verification requested"),
    "downgraded": ("预警降级", "downgraded"),
    "cleared": ("预警解除", "cleared"),
    "offline": ("测点离线", "point offline"),
    "online": ("测点恢复在线", "point back online"),
    "camera": ("联动摄像机无画面", "linked camera without picture"),
    "acknowledge": ("已核实", "verified"),
    "handle": ("已处置", "handled"),
    "feedback": ("处置反馈", "handling report"),
    "close": ("已销警", "closed"),
    "comment": ("备注", "comment"),
}
CAUSE_ZH = {
    "hh": "高高报",
    "h": "高报",
    "l": "低报",
    "ll": "低低报",
    "rate": "变化速率超限",
    "state": "状态报警",
}


def _local(at: datetime | None, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def _value(w: SensorWarning) -> str:
    unit = (w.detail or {}).get("unit", "")
    if w.value is None:
        return "-"
    text = f"{w.value:g}{(' ' + unit) if unit else ''}"
    if w.threshold is not None and w.cause != "state":
        text += f" (阈值 threshold {w.threshold:g})"
    return text


def compose(
    w: SensorWarning, org_name: str, what: str, tz: ZoneInfo, extra: str = ""
) -> tuple[str, str]:
    """(subject, body) of one notice about warning ``w``."""
    detail = w.detail or {}
    tag = detail.get("tag", "")
    zh, en = WHAT.get(what, (what, what))
    level = NAMES_ZH.get(w.level.value, w.level.value)
    subject = f"【{level}】{zh} {org_name} {tag} {CAUSE_ZH.get(w.cause, w.cause)} {_value(w)}"
    lines = [
        f"{zh} / {en}" + (f": {extra}" if extra else ""),
        f"企业 enterprise: {org_name}",
        f"位号 point: {tag} {detail.get('name', '')}".rstrip(),
        f"等级 level: {level} ({w.level.value}), 最高 peak {w.peak_level.value}",
        f"原因 cause: {CAUSE_ZH.get(w.cause, w.cause)} ({w.cause})",
        f"数值 value: {_value(w)}",
        f"发生 raised: {_local(w.raised_at, tz)}",
        f"本级起 level since: {_local(w.level_since, tz)}",
        f"预警编号 warning id: {w.warning_id}",
    ]
    return subject, "\n".join(lines)
