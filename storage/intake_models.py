"""Tables 2/3/4 received from the level below (a county or enterprise node reporting to a
city or province running this project): kept as received, with the picture in the object
store, and relayed upward through the outbox.

Append-only and idempotent: the sender below retries until it gets a 2xx, so the same
record can arrive twice; ``dedupe_key`` (per source organisation) answers the second one
as a duplicate instead of storing it again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow


class IntakeRecord(Base):
    __tablename__ = "intake_records"
    __table_args__ = (UniqueConstraint("source_org_id", "dedupe_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    source_user_id: Mapped[int | None] = mapped_column(Integer)  # the machine client posting
    table: Mapped[str] = mapped_column(String(8), index=True)  # table2, table3, table4
    dedupe_key: Mapped[str] = mapped_column(String(160))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the table's fields as sent
    reported_time: Mapped[str] = mapped_column(String(19), default="")  # ALARM_/DATE_TIME
    alarm_id: Mapped[str] = mapped_column(String(36), default="", index=True)
    alarm_status: Mapped[str] = mapped_column(String(1), default="")
    alarm_type: Mapped[str] = mapped_column(String(2), default="")
    device_code: Mapped[str] = mapped_column(String(36), default="", index=True)
    video_code: Mapped[str] = mapped_column(String(36), default="", index=True)
    company_code: Mapped[str] = mapped_column(String(36), default="")
    run_status: Mapped[str] = mapped_column(String(1), default="")
    image_key: Mapped[str] = mapped_column(String(255), default="")
    relayed_to: Mapped[int] = mapped_column(Integer, default=0)  # outbox rows made for it
