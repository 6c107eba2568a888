"""SQLAlchemy models of the sensor side (spec/sensors.md): gateways, installations, points,
readings and their aggregates, warning episodes with their history, contacts and
notifications, offline supervision.

Kept apart from ``storage.models`` (video side) so each file stays readable; both share
one ``Base`` and therefore one schema and one migration history.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.models import Base, HandlingState, OutboxState, utcnow


def _uuid() -> str:
    return str(uuid.uuid4())


def _enum(cls: type[enum.Enum], length: int = 16) -> Enum:
    return Enum(cls, native_enum=False, length=length)


class GatewayProtocol(enum.StrEnum):
    """How an enterprise gateway delivers its data (spec/sensors.md §2)."""

    modbus_tcp = "modbus_tcp"
    modbus_rtu = "modbus_rtu"  # RS-485 serial line, or RTU frames over a TCP serial server
    opcua = "opcua"
    mqtt = "mqtt"
    http_push = "http_push"  # the seeds' "software interface": encrypted batches pushed to us


class SensorGateway(Base):
    """One data source of an enterprise: a DCS/GDS/PLC gateway, broker or push client."""

    __tablename__ = "sensor_gateways"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    protocol: Mapped[GatewayProtocol] = mapped_column(_enum(GatewayProtocol))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # host, port, serial, ...
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    ident_code: Mapped[str | None] = mapped_column(String(32), unique=True)  # http_push only
    secret: Mapped[str] = mapped_column(String(128), default="")  # push key (base64), never shown
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class InstallationKind(enum.StrEnum):
    tank_area = "tank_area"  # 储罐区
    warehouse = "warehouse"  # 仓库
    process_unit = "process_unit"  # one of the 18 supervised hazardous processes
    loading_rack = "loading_rack"  # 装卸栈台
    pipeline = "pipeline"
    other = "other"


class Installation(Base):
    """Where points sit: a tank area, warehouse, process unit or loading rack."""

    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    kind: Mapped[InstallationKind] = mapped_column(_enum(InstallationKind))
    name: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(64), default="")
    process: Mapped[str] = mapped_column(String(32), default="")  # vms.ingest.points.PROCESSES
    major_hazard: Mapped[bool] = mapped_column(Boolean, default=False)
    longitude: Mapped[float | None] = mapped_column(Float)
    latitude: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sensor(Base):
    """One measurement point (位号) of an enterprise, with its thresholds and live state."""

    __tablename__ = "sensors"
    __table_args__ = (UniqueConstraint("org_id", "tag"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    installation_id: Mapped[int | None] = mapped_column(
        ForeignKey("installations.id", ondelete="SET NULL"), index=True
    )
    gateway_id: Mapped[int | None] = mapped_column(
        ForeignKey("sensor_gateways.id", ondelete="SET NULL"), index=True
    )
    tag: Mapped[str] = mapped_column(String(64))  # 位号, unique within the enterprise
    name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(32))  # vms.ingest.points.SensorKind
    unit: Mapped[str] = mapped_column(String(16), default="")
    range_min: Mapped[float | None] = mapped_column(Float)  # instrument range: outside → fault
    range_max: Mapped[float | None] = mapped_column(Float)
    # {"hh": 50, "h": 25, "l": null, "ll": null, "rate": 5.0 (per minute)}
    thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    levels: Mapped[dict[str, Any]] = mapped_column(default=dict)  # cause → level override
    source: Mapped[dict[str, Any]] = mapped_column(default=dict)  # address in the gateway
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    longitude: Mapped[float | None] = mapped_column(Float)
    latitude: Mapped[float | None] = mapped_column(Float)
    # live state, kept by the ingest service
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_reading_at: Mapped[datetime | None] = mapped_column()
    last_value: Mapped[float | None] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(8), default="")  # current warning level or ""
    fault: Mapped[str] = mapped_column(String(32), default="")  # out_of_range, ... or ""
    slow: Mapped[bool] = mapped_column(Boolean, default=False)  # upload period exceeded
    slow_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    cameras: Mapped[list[SensorCamera]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class SensorCamera(Base):
    """A camera that watches a point: opened, snapshotted and bookmarked on its warnings."""

    __tablename__ = "sensor_cameras"

    sensor_pk: Mapped[int] = mapped_column(
        ForeignKey("sensors.id", ondelete="CASCADE"), primary_key=True
    )
    channel_pk: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )


class Quality(enum.IntEnum):
    """Reading quality stored with each value."""

    good = 0
    out_of_range = 1  # outside the instrument range: a fault, not a warning
    uncertain = 2  # the source said so (OPC UA status, push row flag)
    late = 3  # older than the point's latest reading: history only


class Reading(Base):
    """Append-only time series; written in batches (COPY on PostgreSQL)."""

    __tablename__ = "readings"
    __table_args__ = (
        Index("ix_readings_sensor_at", "sensor_pk", "at"),
        Index("ix_readings_at", "at", postgresql_using="brin"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sensor_pk: Mapped[int] = mapped_column(ForeignKey("sensors.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column()
    value: Mapped[float] = mapped_column(Float)
    quality: Mapped[int] = mapped_column(SmallInteger, default=0)


class ReadingAggregate(Base):
    """1-minute (period 60) and 1-hour (period 3600) buckets for charts."""

    __tablename__ = "reading_aggregates"

    sensor_pk: Mapped[int] = mapped_column(
        ForeignKey("sensors.id", ondelete="CASCADE"), primary_key=True
    )
    period: Mapped[int] = mapped_column(Integer, primary_key=True)  # seconds: 60 or 3600
    bucket: Mapped[datetime] = mapped_column(primary_key=True)  # bucket start, UTC
    count: Mapped[int] = mapped_column(Integer, default=0)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    sum: Mapped[float] = mapped_column(Float)
    last: Mapped[float] = mapped_column(Float)
    last_at: Mapped[datetime] = mapped_column()  # time of ``last``: a late flush keeps the newer


class SensorEvent(Base):
    """A point's history: online, offline, fault, slow (upload period exceeded), recovered."""

    __tablename__ = "sensor_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    sensor_pk: Mapped[int] = mapped_column(ForeignKey("sensors.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WarningLevel(enum.StrEnum):
    """spec/sensors.md §4: red major, orange larger, yellow general, blue low."""

    red = "red"
    orange = "orange"
    yellow = "yellow"
    blue = "blue"


class SensorWarning(Base):
    """One warning episode of a point: opened, escalated/downgraded, cleared, handled."""

    __tablename__ = "warnings"

    id: Mapped[int] = mapped_column(primary_key=True)
    warning_id: Mapped[str] = mapped_column(String(36), unique=True, default=_uuid)
    sensor_pk: Mapped[int | None] = mapped_column(
        ForeignKey("sensors.id", ondelete="SET NULL"), index=True
    )
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    level: Mapped[WarningLevel] = mapped_column(_enum(WarningLevel, 8))  # current level
    peak_level: Mapped[WarningLevel] = mapped_column(_enum(WarningLevel, 8))
    cause: Mapped[str] = mapped_column(String(16), default="")  # hh, h, l, ll, rate, state
    value: Mapped[float | None] = mapped_column(Float)  # the reading that set the level
    threshold: Mapped[float | None] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)  # condition holds
    raised_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    level_since: Mapped[datetime] = mapped_column(default=utcnow)  # escalation clock start
    escalated_at: Mapped[datetime | None] = mapped_column()
    notice_count: Mapped[int] = mapped_column(Integer, default=0)  # automatic notices sent
    last_notice_at: Mapped[datetime | None] = mapped_column()
    onsite_at: Mapped[datetime | None] = mapped_column()  # on-site verification requested
    relayed_at: Mapped[datetime | None] = mapped_column()  # red: relayed to the city level
    cleared_at: Mapped[datetime | None] = mapped_column()
    handling: Mapped[HandlingState] = mapped_column(_enum(HandlingState), default=HandlingState.new)
    acknowledged_at: Mapped[datetime | None] = mapped_column()  # verified by the enterprise
    handled_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    feedback: Mapped[str] = mapped_column(Text, default="")  # handling report (反馈)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    events: Mapped[list[WarningEvent]] = relationship(
        back_populates="warning", cascade="all, delete-orphan", order_by="WarningEvent.id"
    )


class WarningEvent(Base):
    """The history of a warning: level changes, notices sent, handling steps."""

    __tablename__ = "warning_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    warning_pk: Mapped[int] = mapped_column(
        ForeignKey("warnings.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(24))  # opened, escalated, notice, onsite, ...
    level: Mapped[str] = mapped_column(String(8), default="")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    recipients: Mapped[list[Any]] = mapped_column(default=list)  # [{"org_id", "duty", ...}]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    warning: Mapped[SensorWarning] = relationship(back_populates="events")


class Duty(enum.StrEnum):
    """Who a contact is, in the words of the escalation table (spec/sensors.md §4)."""

    safety_dept = "safety_dept"  # enterprise's function-area safety management department
    hq = "hq"  # enterprise headquarters
    industry_regulator = "industry_regulator"  # district industry regulator (行业监管部门)
    emergency_bureau = "emergency_bureau"  # district emergency management bureau
    industry_dept = "industry_dept"  # district industry department (red notices)
    monitoring_center = "monitoring_center"  # city-level monitoring system (red relay)


class OrgContact(Base):
    """A recipient of warnings and notices in an organisation, by duty."""

    __tablename__ = "org_contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    duty: Mapped[Duty] = mapped_column(_enum(Duty, 24))
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    webhook_url: Mapped[str] = mapped_column(String(500), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class Notification(Base):
    """One message to one recipient over one channel: a durable outbox with retries."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))  # email, sms, webhook
    target: Mapped[str] = mapped_column(String(500))  # address, phone number or URL
    subject: Mapped[str] = mapped_column(String(255), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    warning_pk: Mapped[int | None] = mapped_column(
        ForeignKey("warnings.id", ondelete="SET NULL"), index=True
    )
    # the organisation the notice is about (API scoping); a warning's enterprise
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    state: Mapped[OutboxState] = mapped_column(_enum(OutboxState, 8), default=OutboxState.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str] = mapped_column(Text, default="")


class OfflineDaily(Base):
    """Offline seconds of one point or camera on one local day: the base of offline rates."""

    __tablename__ = "offline_daily"
    __table_args__ = (UniqueConstraint("day", "subject", "subject_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(index=True)
    subject: Mapped[str] = mapped_column(String(8))  # sensor | camera
    subject_id: Mapped[str] = mapped_column(String(64))  # sensor pk or camera GB code
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    offline_s: Mapped[float] = mapped_column(Float, default=0.0)
    longest_offline_s: Mapped[float] = mapped_column(Float, default=0.0)
    # seconds of the day the subject was watched: it existed and was not suspended (a whole
    # day is 86400; today so far, a point added at noon or a suspended one count less)
    monitored_s: Mapped[float] = mapped_column(Float, default=0.0)


class SupervisionReport(Base):
    """A generated weekly or monthly offline/overdue report (spec/sensors.md §6)."""

    __tablename__ = "supervision_reports"
    __table_args__ = (UniqueConstraint("kind", "period_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # weekly | monthly
    period_start: Mapped[date] = mapped_column()
    period_end: Mapped[date] = mapped_column()  # exclusive
    generated_at: Mapped[datetime] = mapped_column(default=utcnow)
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RecordingBookmark(Base):
    """A marked moment in a camera's recording (a sensor warning, an alarm, a user's mark)."""

    __tablename__ = "recording_bookmarks"
    __table_args__ = (Index("ix_bookmarks_camera_at", "device_id", "channel_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(20), default="")  # the camera's device
    channel_id: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column()
    label: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(16), default="user")  # warning | alarm | user
    ref: Mapped[str] = mapped_column(String(36), default="")  # warning_id / alarm_id
    snapshot_key: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
