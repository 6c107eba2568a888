"""Payloads of the provincial tables, with the field names exactly as the spec spells them.

Pure functions: no I/O, so the formats are unit-tested on their own.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

TABLE2 = "table2"  # 视频智能分析设备基础信息 (AI device info), daily and on change
TABLE3 = "table3"  # 视频智能分析设备运行状态 (AI device run status), every 10 minutes
TABLE4 = "table4"  # 违规行为、异常状态视频报警/销警数据 (alarm / clear), real time

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # yyyy-MM-dd HH:mm:ss (spec §4 note, §8 convention)

ALARM_ID = "ALARM_ID"
ALARM_TYPE = "ALARM_TYPE"
ALARM_STATUS = "ALARM_STATUS"
ALARM_TIME = "ALARM_TIME"
DEVICE_CODE = "DEVICE_CODE"
VIDEO_CODE = "VIDEO_CODE"
ALARM_IMAGE = "ALARM_IMAGE"
DEVICE_ID = "DEVICE_ID"
COMPANY_CODE = "COMPANY_CODE"
DEVICE_NAME = "DEVICE_NAME"
DEVICE_DESC = "DEVICE_DESC"
DATE_TIME = "DATE_TIME"
RUN_STATUS = "RUN_STATUS"

# Field lengths of the spec (字符 length); the builders truncate nothing silently: they refuse.
LENGTHS = {
    ALARM_ID: 36,
    ALARM_TYPE: 2,
    ALARM_STATUS: 1,
    DEVICE_CODE: 36,
    VIDEO_CODE: 36,
    DEVICE_ID: 36,
    COMPANY_CODE: 36,
    DEVICE_NAME: 100,
    DEVICE_DESC: 500,
}


def format_time(at: datetime, tz: str) -> str:
    """Local time of the receiver's convention; ``at`` must be timezone-aware."""
    if at.tzinfo is None:
        raise ValueError("naive datetime")
    return at.astimezone(ZoneInfo(tz)).strftime(DATETIME_FORMAT)


def _check_lengths(payload: dict[str, str]) -> dict[str, str]:
    for name, value in payload.items():
        limit = LENGTHS.get(name)
        if limit is not None and len(value) > limit:
            raise ValueError(f"{name} longer than {limit} characters: {value!r}")
    return payload


def table4(
    alarm_id: str,
    alarm_type: str,
    status: int,
    at: datetime,
    tz: str,
    device_code: str,
    video_code: str,
) -> dict[str, str]:
    """One alarm (status 1) or clear (status 0) record; the image is attached at send time."""
    return _check_lengths(
        {
            ALARM_ID: alarm_id,
            ALARM_TYPE: alarm_type,
            ALARM_STATUS: str(int(status)),
            ALARM_TIME: format_time(at, tz),
            DEVICE_CODE: device_code,
            VIDEO_CODE: video_code,
        }
    )


def table2(
    device_id: str, device_code: str, company_code: str, name: str, desc: str
) -> dict[str, str]:
    return _check_lengths(
        {
            DEVICE_ID: device_id,
            DEVICE_CODE: device_code,
            COMPANY_CODE: company_code,
            DEVICE_NAME: name,
            DEVICE_DESC: desc,
        }
    )


def table3(device_code: str, at: datetime, tz: str, healthy: bool) -> dict[str, str]:
    return _check_lengths(
        {
            DEVICE_CODE: device_code,
            DATE_TIME: format_time(at, tz),
            RUN_STATUS: "1" if healthy else "0",
        }
    )
