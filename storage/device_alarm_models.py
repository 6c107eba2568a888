"""What devices report unasked (GB/T 28181 §9.4, §9.13): their alarms and mobile positions.

Device alarms (a camera's motion detection, an NVR's disk fault, an alarm input) are not
the AI alarms of ``alarms``: they have the standard's priority, method and type, arrive by
MESSAGE or NOTIFY, and are reset on the device (ResetAlarm).  A row keeps the device's id
and organisation as they were on arrival, so it outlives the device and stays scoped.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

BIG_ID = BigInteger().with_variant(Integer, "sqlite")


class DeviceAlarm(Base):
    """One alarm a device reported (and, once reset, when and by whom)."""

    __tablename__ = "device_alarms"
    __table_args__ = (
        Index("ix_device_alarms_org_received", "org_id", "received_at"),
        Index("ix_device_alarms_source_received", "source_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    device_pk: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True
    )
    device_id: Mapped[str] = mapped_column(String(20))  # the reporting device (NVR, IPC)
    source_id: Mapped[str] = mapped_column(String(20))  # the alarm's DeviceID: channel, input
    channel_pk: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    priority: Mapped[int] = mapped_column(Integer, default=0)  # 1 highest … 4
    method: Mapped[int] = mapped_column(Integer, default=0)  # 1 telephone … 5 video, 6 fault
    alarm_type: Mapped[int] = mapped_column(Integer, default=0)
    event_type: Mapped[str] = mapped_column(String(16), default="")  # AlarmTypeParam/EventType
    alarm_time: Mapped[datetime | None] = mapped_column()  # AlarmTime, device local → UTC
    alarm_time_text: Mapped[str] = mapped_column(String(32), default="")  # as sent
    description: Mapped[str] = mapped_column(String(500), default="")
    longitude: Mapped[float | None] = mapped_column(Float)
    latitude: Mapped[float | None] = mapped_column(Float)
    via: Mapped[str] = mapped_column(String(8), default="message")  # message / notify
    raw: Mapped[str] = mapped_column(Text, default="")  # the body as received
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    reset_at: Mapped[datetime | None] = mapped_column()
    reset_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class DevicePosition(Base):
    """A position a mobile device reported for itself or one of its channels."""

    __tablename__ = "device_positions"
    __table_args__ = (Index("ix_device_positions_target_at", "target_id", "at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[str] = mapped_column(String(20))  # the DeviceID of the MobilePosition
    at: Mapped[datetime] = mapped_column()  # its Time (device local → UTC), else arrival
    longitude: Mapped[float] = mapped_column(Float)
    latitude: Mapped[float] = mapped_column(Float)
    speed: Mapped[float | None] = mapped_column(Float)  # km/h
    direction: Mapped[float | None] = mapped_column(Float)  # degrees from north
    altitude: Mapped[float | None] = mapped_column(Float)  # metres
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
