"""SQLAlchemy 2 models: the persistent state of one node.

Organisation scoping uses a materialised path (``/1/4/9/``): a user sees the
rows whose organisation path starts with the path of the user's organisation.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON, list[Any]: JSON}


# --- organisations and users -------------------------------------------------


class OrgKind(enum.StrEnum):
    province = "province"
    city = "city"
    county = "county"
    park = "park"
    enterprise = "enterprise"
    gas_station = "gas_station"


class Profile(enum.StrEnum):
    """Which alarm code table a camera's alarms use (spec/alarms.md §1)."""

    enterprise = "enterprise"
    gas_station = "gas_station"


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    kind: Mapped[OrgKind] = mapped_column(Enum(OrgKind, native_enum=False, length=16))
    name: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(36), default="")  # region or 9-digit enterprise code
    # DEVICE_CODE of the site's analysis device in Tables 2-4; "" → vms.uplink.identity derives it
    uplink_device_code: Mapped[str] = mapped_column(
        String(36), default="", server_default=text("''")
    )
    path: Mapped[str] = mapped_column(String(400), index=True, default="/")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    parent: Mapped[Organisation | None] = relationship(remote_side=[id])

    @property
    def profile(self) -> Profile:
        return Profile.gas_station if self.kind == OrgKind.gas_station else Profile.enterprise


class Role(enum.StrEnum):
    admin = "admin"
    operator = "operator"
    enterprise = "enterprise"
    uplink = "uplink"
    auditor = "auditor"  # reads the audit trail and nothing else (separation of duties)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16))
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Identification (GB/T 22239 level 3): consecutive failed logins lock the account for a
    # while; a password set by someone else must be changed at the next login; tokens carry
    # token_version, so raising it (password, role, organisation, disable, sign-out) revokes
    # every token issued before.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    locked_until: Mapped[datetime | None] = mapped_column()
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    password_changed_at: Mapped[datetime | None] = mapped_column()
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    org: Mapped[Organisation | None] = relationship()


class RevokedToken(Base):
    """A token signed out before it expired (its JWT id); kept until it would have expired."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


# --- devices and channels ----------------------------------------------------


class DeviceStatus(enum.StrEnum):
    pending = "pending"  # auto-created on first REGISTER, awaiting an admin
    active = "active"
    disabled = "disabled"


class Device(Base):
    """A GB28181 device: NVR, DVR or IPC registering with us."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    status: Mapped[DeviceStatus] = mapped_column(
        Enum(DeviceStatus, native_enum=False, length=16), default=DeviceStatus.active
    )
    sip_password: Mapped[str | None] = mapped_column(String(128))
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    transport: Mapped[str] = mapped_column(String(8), default="udp")
    remote_host: Mapped[str] = mapped_column(String(64), default="")
    remote_port: Mapped[int] = mapped_column(Integer, default=0)
    expires_s: Mapped[int] = mapped_column(Integer, default=0)
    charset: Mapped[str] = mapped_column(String(16), default="GB2312")
    gb_version: Mapped[str] = mapped_column(String(8), default="")
    manufacturer: Mapped[str] = mapped_column(String(100), default="")
    model: Mapped[str] = mapped_column(String(100), default="")
    firmware: Mapped[str] = mapped_column(String(100), default="")
    channel_count: Mapped[int] = mapped_column(Integer, default=0)
    registered_at: Mapped[datetime | None] = mapped_column()
    keepalive_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    org: Mapped[Organisation | None] = relationship()
    channels: Mapped[list[Channel]] = relationship(
        back_populates="device", cascade="all, delete-orphan"
    )


class Channel(Base):
    """A camera channel of a device (a Catalog item with a 131-199 type code)."""

    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("device_pk", "channel_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    manufacturer: Mapped[str] = mapped_column(String(100), default="")
    model: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(8), default="ON")
    parent_id: Mapped[str] = mapped_column(String(20), default="")
    civil_code: Mapped[str] = mapped_column(String(20), default="")
    address: Mapped[str] = mapped_column(String(200), default="")
    ptz_type: Mapped[int] = mapped_column(Integer, default=0)
    # Catalog Secrecy: 1 = classified, never sent to a superior
    secrecy: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    longitude: Mapped[float | None] = mapped_column(Float)
    latitude: Mapped[float | None] = mapped_column(Float)
    record_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    analysis: Mapped[dict[str, Any]] = mapped_column(default=dict)  # rules, zones, schedule
    # weekly recording windows, local time: [{"days": [1..7], "start", "end"}]; [] → always
    record_schedule: Mapped[list[Any]] = mapped_column(default=list)
    # VIDEO_CODE the province knows this camera by, when the channel ID is not that code.
    uplink_video_code: Mapped[str] = mapped_column(
        String(20), default="", server_default=text("''")
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    device: Mapped[Device] = relationship(back_populates="channels")


class DeviceEvent(Base):
    """Online/offline changes and device alarms, with time: the device's history."""

    __tablename__ = "device_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # online, offline, alarm, ...
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --- alarms -------------------------------------------------------------------


class HandlingState(enum.StrEnum):
    new = "new"
    acknowledged = "acknowledged"
    handled = "handled"
    closed = "closed"


class Alarm(Base):
    """One AI alarm and its clear (Table 4 records share ``alarm_id``)."""

    __tablename__ = "alarms"

    id: Mapped[int] = mapped_column(primary_key=True)
    alarm_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    channel_pk: Mapped[int | None] = mapped_column(ForeignKey("channels.id"), index=True)
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    profile: Mapped[Profile] = mapped_column(Enum(Profile, native_enum=False, length=16))
    alarm_type: Mapped[str] = mapped_column(String(2))  # code of the profile's table
    rule: Mapped[str] = mapped_column(String(32), default="")  # fire, smoke, no_helmet, ...
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # False once cleared
    video_code: Mapped[str] = mapped_column(String(36))  # the camera's channel ID
    device_code: Mapped[str] = mapped_column(String(36), default="")
    # VIDEO_CODE sent upward in Table 4 (alarm and clear); "" → the camera had none: kept here,
    # not reported (vms.uplink.identity)
    uplink_video_code: Mapped[str] = mapped_column(
        String(36), default="", server_default=text("''")
    )
    raised_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    cleared_at: Mapped[datetime | None] = mapped_column()
    image_key: Mapped[str] = mapped_column(String(255), default="")
    clear_image_key: Mapped[str] = mapped_column(String(255), default="")
    clip_key: Mapped[str] = mapped_column(String(255), default="")
    handling: Mapped[HandlingState] = mapped_column(
        Enum(HandlingState, native_enum=False, length=16), default=HandlingState.new
    )
    false_alarm: Mapped[bool] = mapped_column(Boolean, default=False)
    acknowledged_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    channel: Mapped[Channel | None] = relationship()
    actions: Mapped[list[AlarmAction]] = relationship(
        back_populates="alarm", cascade="all, delete-orphan", order_by="AlarmAction.at"
    )


class AlarmAction(Base):
    """Closed-loop handling trail: who did what to an alarm, when, and why."""

    __tablename__ = "alarm_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    alarm_pk: Mapped[int] = mapped_column(ForeignKey("alarms.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)

    alarm: Mapped[Alarm] = relationship(back_populates="actions")


# --- recordings ---------------------------------------------------------------


class RecordingSegment(Base):
    """One recorded fragment (or a gap) of a camera, stored as an object.

    A camera is its device's ID and its channel ID (GB codes, so the history survives a
    device re-created by an admin); never the channel ID alone, which another device's
    catalog could also list.
    """

    __tablename__ = "recording_segments"
    __table_args__ = (Index("ix_recording_camera_start", "device_id", "channel_id", "start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(20), default="", server_default=text("''"))
    channel_id: Mapped[str] = mapped_column(String(20))
    start: Mapped[datetime] = mapped_column()
    end: Mapped[datetime] = mapped_column()
    object_key: Mapped[str] = mapped_column(String(255), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    container: Mapped[str] = mapped_column(String(8), default="ts")
    codec: Mapped[str] = mapped_column(String(8), default="h264")
    # "aac" when the segment carries the camera's audio (G.711 is stored transcoded to AAC)
    audio_codec: Mapped[str] = mapped_column(String(8), default="", server_default=text("''"))
    is_gap: Mapped[bool] = mapped_column(Boolean, default=False)
    keyframes: Mapped[list[Any]] = mapped_column(default=list)  # [[offset_s, byte_offset], ...]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(String(32), default="")  # why a gap: stream-lost, ...
    source: Mapped[str] = mapped_column(String(16), default="recorder")  # or "playback" (NVR)


# --- uplink outbox --------------------------------------------------------------


class OutboxState(enum.StrEnum):
    pending = "pending"
    sent = "sent"
    dead = "dead"


class OutboxItem(Base):
    """One post to an upward receiver, written in the same transaction as its cause."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "state", "receiver", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    receiver: Mapped[str] = mapped_column(String(64))
    table: Mapped[str] = mapped_column(String(8))  # table2, table3, table4
    ordering_key: Mapped[str] = mapped_column(String(64), default="")  # camera code for table4
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    image_key: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[OutboxState] = mapped_column(
        Enum(OutboxState, native_enum=False, length=8), default=OutboxState.pending
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str] = mapped_column(Text, default="")
    dead_at: Mapped[datetime | None] = mapped_column()  # when it became a dead letter
    requeued_at: Mapped[datetime | None] = mapped_column()  # re-sent by an admin: age restarts


# The sensor side lives in its own module; importing it here puts its tables into
# Base.metadata wherever the models are loaded (migrations, autogenerate checks).
from storage import audit_models as _audit_models  # noqa: E402,F401
from storage import cascade_models as _cascade_models  # noqa: E402,F401
from storage import cluster_models as _cluster_models  # noqa: E402,F401
from storage import device_alarm_models as _device_alarm_models  # noqa: E402,F401
from storage import download_models as _download_models  # noqa: E402,F401
from storage import intake_models as _intake_models  # noqa: E402,F401
from storage import sensor_models as _sensor_models  # noqa: E402,F401
from storage import wall_models as _wall_models  # noqa: E402,F401
