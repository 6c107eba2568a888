"""Measurement points in memory: what each sensor measures, its limits, and its live state.

The ingest path looks points up for every reading, so they are held in a registry keyed by
(enterprise, tag) and re-read from the database when sensors change; the database stays
the source of truth for configuration, the registry for the live state between flushes.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sip import ids
from sip.channel_ref import ChannelRef
from storage.models import Channel, Device
from storage.sensor_models import Sensor, SensorCamera


class SensorKind(enum.StrEnum):
    """What a point measures (spec/sensors.md §1); the last three are discrete states."""

    gas_combustible = "gas_combustible"  # %LEL
    gas_toxic = "gas_toxic"  # ppm
    level = "level"
    pressure = "pressure"
    temperature = "temperature"
    flow = "flow"
    humidity = "humidity"
    grounding = "grounding"  # vehicle static-grounding disconnected (1 = disconnected)
    overflow = "overflow"  # overflow alarm (1 = overflowing)
    sis = "sis"  # safety instrumented system state (1 = tripped / demand)


DISCRETE_KINDS = frozenset({SensorKind.grounding, SensorKind.overflow, SensorKind.sis})

DEFAULT_UNITS: dict[str, str] = {
    SensorKind.gas_combustible: "%LEL",
    SensorKind.gas_toxic: "ppm",
    SensorKind.level: "m",
    SensorKind.pressure: "MPa",
    SensorKind.temperature: "°C",
    SensorKind.flow: "m³/h",
    SensorKind.humidity: "%RH",
}

# The 18 nationally supervised hazardous processes (spec/sensors.md §1), for process units.
PROCESSES: dict[str, str] = {
    "phosgenation": "光气及光气化工艺",
    "electrolysis": "电解工艺(氯碱)",
    "chlorination": "氯化工艺",
    "nitration": "硝化工艺",
    "ammonia_synthesis": "合成氨工艺",
    "cracking": "裂解(裂化)工艺",
    "fluorination": "氟化工艺",
    "hydrogenation": "加氢工艺",
    "diazotization": "重氮化工艺",
    "oxidation": "氧化工艺",
    "peroxidation": "过氧化工艺",
    "amination": "胺基化工艺",
    "sulfonation": "磺化工艺",
    "polymerization": "聚合工艺",
    "alkylation": "烷基化工艺",
    "coal_chemical": "新型煤化工工艺",
    "calcium_carbide": "电石生产工艺",
    "azotization": "偶氮化工艺",
}

THRESHOLD_KEYS = ("hh", "h", "l", "ll", "rate")
RECENT_TIMESTAMPS = 256  # per point: how many recent reading times duplicates are checked against


@dataclass(eq=False)
class Point:
    """One sensor's configuration (from its row) and live state (kept here, flushed later)."""

    pk: int
    org_id: int
    tag: str
    kind: str
    unit: str = ""
    name: str = ""
    gateway_id: int | None = None
    range_min: float | None = None
    range_max: float | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    levels: dict[str, str] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    cameras: list[ChannelRef] = field(default_factory=list)  # the watching cameras
    # live state
    online: bool = False
    last_at: datetime | None = None  # source time of the newest in-order reading
    last_value: float | None = None
    last_seen: float = 0.0  # wall-clock (time.time()) of the newest arrival
    level: str = ""  # current warning level ("" = none); set by the warning engine
    fault: str = ""
    slow: bool = False
    slow_count: int = 0
    slow_flagged_gap: bool = False  # the current silence was already counted as slow
    dirty: bool = False  # state changed since the last flush
    recent: deque[datetime] = field(default_factory=lambda: deque(maxlen=RECENT_TIMESTAMPS))
    recent_set: set[datetime] = field(default_factory=set)

    @property
    def discrete(self) -> bool:
        return self.kind in DISCRETE_KINDS

    def seen_before(self, at: datetime) -> bool:
        return at in self.recent_set

    def remember(self, at: datetime) -> None:
        if len(self.recent) == self.recent.maxlen:
            self.recent_set.discard(self.recent[0])
        self.recent.append(at)
        self.recent_set.add(at)

    def in_range(self, value: float) -> bool:
        if self.range_min is not None and value < self.range_min:
            return False
        return not (self.range_max is not None and value > self.range_max)

    def configure_from(self, other: Point) -> None:
        """Take a reloaded configuration, keep the live state."""
        for name in (
            "org_id",
            "tag",
            "kind",
            "unit",
            "name",
            "gateway_id",
            "range_min",
            "range_max",
            "thresholds",
            "levels",
            "source",
            "cameras",
        ):
            setattr(self, name, getattr(other, name))


def clean_thresholds(raw: dict[str, Any] | None) -> dict[str, float]:
    """Only known keys with finite numbers; ``None`` means "no such threshold"."""
    out: dict[str, float] = {}
    for key in THRESHOLD_KEYS:
        value = (raw or {}).get(key)
        if value is None:
            continue
        number = float(value)
        if math.isfinite(number):
            out[key] = number
    return out


def point_from_row(row: Sensor, cameras: list[ChannelRef]) -> Point:
    return Point(
        pk=row.id,
        org_id=row.org_id,
        tag=row.tag,
        kind=row.kind,
        unit=row.unit,
        name=row.name,
        gateway_id=row.gateway_id,
        range_min=row.range_min,
        range_max=row.range_max,
        thresholds=clean_thresholds(row.thresholds),
        levels=dict(row.levels or {}),
        source=dict(row.source or {}),
        cameras=cameras,
        online=row.online,
        last_at=row.last_reading_at,
        last_value=row.last_value,
        level=row.level,
        fault=row.fault,
        slow=row.slow,
        slow_count=row.slow_count,
    )


def load_points(session: Session) -> list[Point]:
    """Every enabled sensor with its cameras (device and channel: the linked rows exactly)."""
    cams: dict[int, list[ChannelRef]] = {}
    rows = session.execute(
        select(SensorCamera.sensor_pk, Device.device_id, Channel.channel_id)
        .join(Channel, Channel.id == SensorCamera.channel_pk)
        .join(Device, Device.id == Channel.device_pk)
        .order_by(SensorCamera.sensor_pk, Channel.id)
    )
    for sensor_pk, device_id, channel_id in rows:
        if ids.is_gb_id(device_id) and ids.is_gb_id(channel_id):
            cams.setdefault(sensor_pk, []).append(ChannelRef(device_id, channel_id))
    sensors = session.scalars(select(Sensor).where(Sensor.enabled.is_(True)))
    return [point_from_row(row, cams.get(row.id, [])) for row in sensors]


class PointRegistry:
    """Points by pk, by (org_id, tag) and by gateway; reloads keep each point's live state."""

    def __init__(self) -> None:
        self.by_pk: dict[int, Point] = {}
        self.by_tag: dict[tuple[int, str], Point] = {}
        self.by_gateway: dict[int, list[Point]] = {}

    def __len__(self) -> int:
        return len(self.by_pk)

    def get(self, org_id: int, tag: str) -> Point | None:
        return self.by_tag.get((org_id, tag))

    def replace(self, points: list[Point]) -> None:
        fresh: dict[int, Point] = {}
        for p in points:
            known = self.by_pk.get(p.pk)
            if known is not None:
                known.configure_from(p)
                p = known
            fresh[p.pk] = p
        self.by_pk = fresh
        self.by_tag = {(p.org_id, p.tag): p for p in fresh.values()}
        by_gateway: dict[int, list[Point]] = {}
        for p in fresh.values():
            if p.gateway_id is not None:
                by_gateway.setdefault(p.gateway_id, []).append(p)
        self.by_gateway = by_gateway
