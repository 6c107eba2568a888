"""Device alarms and mobile positions on the database (GB/T 28181 §9.4, §9.13).

A device alarm is committed before anything else happens to it (its acknowledgement to
the device, the push to the UI, the relay upward), with the device's organisation as it
was on arrival for scoping; its source is matched to a stored channel when it is one.
Names of methods and types are the 2016 text as usually quoted (spec/gb28181.md §3.5).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sip.manscdp import parse_time
from sip.notify import AlarmNotify, MobilePosition
from storage.device_alarm_models import DeviceAlarm, DevicePosition
from storage.models import Channel, Device, DeviceEvent, Organisation

METHODS = {
    1: "电话报警 telephone",
    2: "设备报警 device",
    3: "短信报警 SMS",
    4: "GPS报警 GPS",
    5: "视频报警 video",
    6: "设备故障报警 device fault",
    7: "其他报警 other",
}
TYPES = {
    2: {
        1: "视频丢失 video loss",
        2: "设备防拆 tamper",
        3: "存储设备磁盘满 disk full",
        4: "设备高温 high temperature",
        5: "设备低温 low temperature",
    },
    5: {
        1: "人工视频 manual",
        2: "运动目标检测 motion",
        3: "遗留物检测 left object",
        4: "物体移除检测 object removed",
        5: "绊线检测 tripwire",
        6: "入侵检测 intrusion",
        7: "逆行检测 retrograde",
        8: "徘徊检测 loitering",
        9: "流量统计 flow count",
        10: "密度检测 density",
        11: "视频异常检测 video abnormal",
        12: "快速移动 fast moving",
    },
    6: {1: "存储设备磁盘故障 disk fault", 2: "存储设备风扇故障 fan fault"},
}
PRIORITIES = {1: "一级 first", 2: "二级 second", 3: "三级 third", 4: "四级 fourth"}


def method_name(method: int) -> str:
    return METHODS.get(method, f"#{method}")


def type_name(method: int, alarm_type: int) -> str:
    if not alarm_type:
        return ""
    return TYPES.get(method, {}).get(alarm_type, f"#{alarm_type}")


def _utc(text: str, tz: tzinfo) -> datetime | None:
    value = parse_time(text, tz)
    return value.astimezone(UTC) if value is not None else None


def store_alarm(s: Session, device: Device, alarm: AlarmNotify, tz: tzinfo) -> DeviceAlarm:
    """The alarm's row (and a line in the device's history); flushed, so it has its id."""
    channel = s.scalar(
        select(Channel).where(Channel.device_pk == device.id, Channel.channel_id == alarm.device_id)
    )
    row = DeviceAlarm(
        device_pk=device.id,
        device_id=device.device_id,
        source_id=alarm.device_id[:20] or device.device_id,
        channel_pk=channel.id if channel is not None else None,
        org_id=device.org_id,
        priority=alarm.priority,
        method=alarm.method,
        alarm_type=alarm.alarm_type,
        event_type=alarm.extra.get("EventType", "")[:16],
        alarm_time=_utc(alarm.time, tz),
        alarm_time_text=alarm.time[:32],
        description=alarm.description[:500],
        longitude=alarm.longitude,
        latitude=alarm.latitude,
        via=alarm.via[:8],
        raw=alarm.raw,
    )
    s.add(row)
    s.flush()
    s.add(DeviceEvent(device_pk=device.id, kind="alarm", detail=history_detail(row)))
    return row


def history_detail(row: DeviceAlarm) -> dict[str, Any]:
    return {
        "device_alarm_id": row.id,
        "source_id": row.source_id,
        "priority": row.priority,
        "method": row.method,
        "type": row.alarm_type,
        "time": row.alarm_time_text,
        "description": row.description[:200],
    }


def as_dict(row: DeviceAlarm, channel_name: str = "") -> dict[str, Any]:
    """The API's and the push's shape of a device alarm."""
    return {
        "id": row.id,
        "device_id": row.device_id,
        "source_id": row.source_id,
        "channel_name": channel_name,
        "org_id": row.org_id,
        "priority": row.priority,
        "method": row.method,
        "method_name": method_name(row.method),
        "alarm_type": row.alarm_type,
        "type_name": type_name(row.method, row.alarm_type),
        "event_type": row.event_type,
        "alarm_time": row.alarm_time.isoformat() if row.alarm_time else None,
        "alarm_time_text": row.alarm_time_text,
        "description": row.description,
        "longitude": row.longitude,
        "latitude": row.latitude,
        "via": row.via,
        "received_at": row.received_at.isoformat(),
        "reset_at": row.reset_at.isoformat() if row.reset_at else None,
        "reset_by": row.reset_by,
    }


def push_data(s: Session, row: DeviceAlarm) -> dict[str, Any]:
    """The ``device.alarm`` bus event: the row plus ``org_path``, so the push is scoped."""
    org = s.get(Organisation, row.org_id) if row.org_id is not None else None
    name = s.scalar(select(Channel.name).where(Channel.id == row.channel_pk)) or ""
    data = as_dict(row, name)
    data["org_path"] = org.path if org is not None else None
    # the names the device history's event always had
    data.update(type=row.alarm_type, time=row.alarm_time_text)
    return data


def store_position(s: Session, device: Device, pos: MobilePosition, tz: tzinfo) -> DevicePosition:
    """A position row; the channel (or device) it is for gets it as its current place."""
    row = DevicePosition(
        device_pk=device.id,
        target_id=pos.device_id[:20] or device.device_id,
        at=_utc(pos.time, tz) or datetime.now(UTC),
        longitude=pos.longitude,
        latitude=pos.latitude,
        speed=pos.speed,
        direction=pos.direction,
        altitude=pos.altitude,
    )
    s.add(row)
    channel = s.scalar(
        select(Channel).where(Channel.device_pk == device.id, Channel.channel_id == row.target_id)
    )
    if channel is not None:
        channel.longitude, channel.latitude = pos.longitude, pos.latitude
    return row
