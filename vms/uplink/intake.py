"""The node as a receiver: Tables 2/3/4 from the level below, checked, kept, relayed upward.

A city or province running this project takes the tables the counties and enterprises
below it post (their own uplink senders, or any system speaking the same tables) with the
rules of a strict receiver (``validation``), stores each record once — a retried post is
answered as a duplicate — with its picture in the object store, and queues it in the same
transaction for this node's own receivers, so one product covers county → city → province
and nothing is lost when the level above is down.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.intake_models import IntakeRecord
from storage.models import Organisation
from storage.objects import ObjectStore
from vms.config import Settings

from . import outbox, tables
from .transport import table_url
from .validation import TABLE_FIELDS, image_format, validate, validate_table4

IMAGE_TYPES = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "BMP": ("bmp", "image/bmp"),
}


class IntakeRefused(ValueError):
    """The record breaks the tables' rules; ``errors`` lists each one."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class IntakeResult:
    record_id: int
    duplicate: bool
    relayed_to: int


def dedupe_key(table: str, fields: dict[str, str], received_local_day: str) -> str:
    """What makes two posts the same record.

    Table 4: the alarm and its status (an alarm and its clear are two records).  Table 3:
    the device and the report time.  Table 2: the device, the content and the day — it is
    sent daily, and each day's report is relayed upward as the level above expects.
    """
    if table == tables.TABLE4:
        return f"t4:{fields[tables.ALARM_ID]}:{fields[tables.ALARM_STATUS]}"
    if table == tables.TABLE3:
        return f"t3:{fields[tables.DEVICE_CODE]}:{fields[tables.DATE_TIME]}"
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
    return f"t2:{fields[tables.DEVICE_ID]}:{received_local_day}:{digest}"


def _ordering_key(table: str, fields: dict[str, str]) -> str:
    """Relayed records keep their order per camera (Table 4) or per device (2, 3)."""
    if table == tables.TABLE4:
        return f"relay:{fields[tables.VIDEO_CODE]}"
    return f"relay:{table}:{fields.get(tables.DEVICE_ID) or fields[tables.DEVICE_CODE]}"


def foreign_codes(
    session: Session, source_org_id: int, table: str, fields: dict[str, str]
) -> list[str]:
    """Codes that belong to sites outside the reporting organisation's subtree.

    A county's client must not report (and have relayed upward) alarms of another county's
    cameras: a VIDEO_CODE whose enterprise code, or a COMPANY_CODE, is an organisation this
    node knows elsewhere is refused, and so is a DEVICE_CODE another organisation reports.
    Codes this node does not know (enterprises registered only below) are taken as sent.
    """
    source = session.get(Organisation, source_org_id)
    if source is None:
        return ["the reporting organisation no longer exists"]
    errors = []
    named: list[tuple[str, str]] = []
    if table == tables.TABLE4:
        named.append((tables.VIDEO_CODE, fields[tables.VIDEO_CODE][:9]))
    if table == tables.TABLE2:
        named.append((tables.COMPANY_CODE, fields[tables.COMPANY_CODE]))
    for name, code in named:
        paths = session.scalars(select(Organisation.path).where(Organisation.code == code)).all()
        if paths and not any(p.startswith(source.path) for p in paths):
            errors.append(
                f"{name} names {code}, an organisation outside {source.code or source.id}"
            )
    device_code = fields.get(tables.DEVICE_CODE, "")
    if device_code:
        other = session.scalar(
            select(IntakeRecord.id)
            .join(Organisation, Organisation.id == IntakeRecord.source_org_id)
            .where(
                IntakeRecord.device_code == device_code,
                ~Organisation.path.startswith(source.path),
            )
            .limit(1)
        )
        if other is not None:
            errors.append(f"DEVICE_CODE {device_code} is reported by another organisation")
    return errors


def relay_receivers(settings: Settings, table: str) -> list[str]:
    if not settings.uplink.relay_intake:
        return []
    return [r.name for r in settings.uplink.receivers if table_url(r, table)]


def accept(
    session: Session,
    objects: ObjectStore,
    settings: Settings,
    source_org_id: int,
    source_user_id: int | None,
    table: str,
    raw_fields: dict[str, str],
    image: bytes | None,
    now: datetime,
) -> IntakeResult:
    """Check, store and queue one record in the caller's transaction (committed by it)."""
    if table == tables.TABLE4:
        errors = validate_table4(raw_fields, image, settings.uplink.image_max_bytes)
    else:
        errors = validate(table, raw_fields, image)
    if errors:
        raise IntakeRefused(errors)
    fields = {name: raw_fields[name] for name in TABLE_FIELDS[table] if name in raw_fields}
    errors = foreign_codes(session, source_org_id, table, fields)
    if errors:
        raise IntakeRefused(errors)
    day = now.astimezone(ZoneInfo(settings.server.timezone)).strftime("%Y-%m-%d")
    key = dedupe_key(table, fields, day)
    existing = session.scalar(
        select(IntakeRecord.id).where(
            IntakeRecord.source_org_id == source_org_id, IntakeRecord.dedupe_key == key
        )
    )
    if existing is not None:
        return IntakeResult(existing, True, 0)
    image_key = ""
    if table == tables.TABLE4 and image is not None:
        ext, content_type = IMAGE_TYPES[image_format(image) or "JPEG"]
        alarm, status = fields[tables.ALARM_ID], fields[tables.ALARM_STATUS]
        image_key = f"intake/{source_org_id}/{day}/{alarm}-{status}.{ext}"
        objects.put(image_key, image, content_type)  # before the row: a row has its picture
    record = IntakeRecord(
        source_org_id=source_org_id,
        source_user_id=source_user_id,
        table=table,
        dedupe_key=key,
        received_at=now,
        fields=fields,
        reported_time=fields.get(tables.ALARM_TIME) or fields.get(tables.DATE_TIME, ""),
        alarm_id=fields.get(tables.ALARM_ID, ""),
        alarm_status=fields.get(tables.ALARM_STATUS, ""),
        alarm_type=fields.get(tables.ALARM_TYPE, ""),
        device_code=fields.get(tables.DEVICE_CODE, ""),
        video_code=fields.get(tables.VIDEO_CODE, ""),
        company_code=fields.get(tables.COMPANY_CODE, ""),
        run_status=fields.get(tables.RUN_STATUS, ""),
        image_key=image_key,
    )
    try:
        with session.begin_nested():
            session.add(record)
            session.flush()
    except IntegrityError:  # the same record posted twice at once: the other one stored it
        stored = session.scalar(
            select(IntakeRecord.id).where(
                IntakeRecord.source_org_id == source_org_id, IntakeRecord.dedupe_key == key
            )
        )
        if stored is None:
            raise
        return IntakeResult(stored, True, 0)
    receivers = relay_receivers(settings, table)
    outbox.enqueue(session, receivers, table, _ordering_key(table, fields), fields, image_key)
    record.relayed_to = len(receivers)
    return IntakeResult(record.id, False, len(receivers))
