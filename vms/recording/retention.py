"""Retention: drop the oldest segments beyond the configured window and storage quota.

Runs in a worker thread.  Deletion order per segment is row first, then object:
a crash in between leaves an orphan object (wasted space, logged) rather than a
row pointing at nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from storage.db import Database
from storage.models import RecordingSegment
from storage.objects import ObjectNotFound, ObjectStore
from vms.logging import get_logger

log = get_logger("vms.recording.retention")

BATCH = 500


@dataclass(slots=True)
class RetentionResult:
    expired: int = 0  # segments older than the window
    over_quota: int = 0  # segments removed to get under the quota
    gaps: int = 0
    bytes_freed: int = 0


def prune(
    db: Database,
    objects: ObjectStore,
    now: datetime,
    retention_hours: float,
    quota_bytes: int = 0,
    source: str = "recorder",
) -> RetentionResult:
    """Delete segments that ended before ``now - retention_hours``, then the oldest (across
    all channels) until the total fits ``quota_bytes`` (0: no quota); gaps follow the window."""
    result = RetentionResult()
    cutoff = now - timedelta(hours=retention_hours)
    base = (RecordingSegment.source == source, RecordingSegment.is_gap.is_(False))
    while True:
        with db.session() as s:
            rows = list(
                s.scalars(
                    select(RecordingSegment)
                    .where(*base, RecordingSegment.end <= cutoff)
                    .order_by(RecordingSegment.start)
                    .limit(BATCH)
                )
            )
        if not rows:
            break
        result.expired += len(rows)
        result.bytes_freed += _delete(db, objects, rows)
    if quota_bytes > 0:
        while True:
            with db.session() as s:
                total_q = select(func.coalesce(func.sum(RecordingSegment.size), 0)).where(*base)
                total = int(s.scalar(total_q) or 0)
                if total <= quota_bytes:
                    break
                rows = list(
                    s.scalars(
                        select(RecordingSegment)
                        .where(*base)
                        .order_by(RecordingSegment.start, RecordingSegment.id)
                        .limit(BATCH)
                    )
                )
            excess = total - quota_bytes
            chosen: list[RecordingSegment] = []
            for row in rows:
                if excess <= 0:
                    break
                chosen.append(row)
                excess -= row.size
            if not chosen:
                break
            result.over_quota += len(chosen)
            result.bytes_freed += _delete(db, objects, chosen)
    result.gaps = _prune_gaps(db, cutoff, source)
    if result.expired or result.over_quota or result.gaps:
        log.info(
            "retention pruned",
            expired=result.expired,
            over_quota=result.over_quota,
            gaps=result.gaps,
            bytes=result.bytes_freed,
        )
    return result


def _delete(db: Database, objects: ObjectStore, rows: list[RecordingSegment]) -> int:
    ids = [r.id for r in rows]
    with db.session() as s:
        s.execute(delete(RecordingSegment).where(RecordingSegment.id.in_(ids)))
    freed = 0
    for row in rows:
        try:
            objects.delete(row.object_key)
        except ObjectNotFound:
            pass
        except Exception as exc:  # noqa: BLE001 - an orphan object costs space, not replay
            log.warning("segment object delete failed", key=row.object_key, error=repr(exc))
        freed += row.size
    return freed


def _prune_gaps(db: Database, cutoff: datetime, source: str) -> int:
    """Gap rows that ended before the window, or before a channel's oldest remaining segment."""
    with db.session() as s:
        gone = s.execute(
            delete(RecordingSegment).where(
                RecordingSegment.source == source,
                RecordingSegment.is_gap.is_(True),
                RecordingSegment.end <= cutoff,
            )
        ).rowcount
        oldest = s.execute(
            select(
                RecordingSegment.device_id,
                RecordingSegment.channel_id,
                func.min(RecordingSegment.start),
            )
            .where(RecordingSegment.source == source, RecordingSegment.is_gap.is_(False))
            .group_by(RecordingSegment.device_id, RecordingSegment.channel_id)
        ).all()
        for device_id, channel_id, first in oldest:  # per camera: (device, channel)
            gone += s.execute(
                delete(RecordingSegment).where(
                    RecordingSegment.source == source,
                    RecordingSegment.device_id == device_id,
                    RecordingSegment.channel_id == channel_id,
                    RecordingSegment.is_gap.is_(True),
                    RecordingSegment.end <= first,
                )
            ).rowcount
    return gone or 0
