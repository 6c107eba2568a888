"""What the analyzer pool emits: one alarm or one clear, with its pictures.

The alarm service (``vms/alarms``) commits these to the database, the object
store and the uplink outbox.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class AlarmStatus(enum.IntEnum):
    clear = 0
    alarm = 1


@dataclass(frozen=True)
class AlarmEvent:
    alarm_id: str  # uuid36, shared by an alarm and its clear
    status: AlarmStatus
    channel_id: str  # the camera's 20-digit GB code (VIDEO_CODE)
    profile: str  # "enterprise" | "gas_station" (storage.models.Profile values)
    rule: str  # fire, smoke, no_helmet, off_duty, ...
    alarm_type: str  # code from the profile's table, e.g. "9" or "13"
    at: datetime  # timezone-aware
    snapshot_jpeg: bytes  # annotated picture (boxes, zones), <= 4 MB
    raw_jpeg: bytes = b""  # the frame without drawings
    detail: dict[str, Any] = field(default_factory=dict)  # boxes, scores, zone names
    # the device listing the camera: with channel_id, the camera ("" only from tools and
    # tests, resolved then only when one device alone has the channel id)
    device_id: str = ""
