"""Spool recovery: segments left on local disk by a crash or a failed upload.

A ``.ts`` spool file was closed by the muxer but not yet indexed: upload it as
is.  A ``.part`` file was being written: keep its whole packets up to the last
complete frame, index it if a keyframe survives, else discard it.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from sqlalchemy import select

from sip import ids
from sip.channel_ref import ChannelRef
from storage.db import Database
from storage.models import Channel, Device
from storage.objects import ObjectStore
from vms.logging import get_logger

from . import ts
from .index import store_segment
from .segment import DONE_SUFFIX, PART_SUFFIX, SegmentInfo
from .writer import CLOCK_HZ, DEFAULT_FRAME_TICKS

log = get_logger("vms.recording.recovery")


def parse_spool_name(path: Path) -> tuple[ChannelRef | str, float] | None:
    """``<device>_<channel>-<start_ms>.part|.ts`` → (camera, start seconds); a bare channel id
    for a file of an older version (``<channel>-<start_ms>``); None for foreign files."""
    name, sep, ms = path.stem.rpartition("-")
    if not sep or not ms.isascii() or not ms.isdigit():
        return None
    if ids.is_gb_id(name):
        return name, int(ms) / 1000.0
    try:
        return ChannelRef.from_slug(name), int(ms) / 1000.0
    except ids.InvalidGbId:
        return None


def legacy_owner(db: Database, channel_id: str) -> ChannelRef | None:
    """The camera of a spool file named by its channel id alone (written before cameras were
    keyed by device): the oldest channel row with that id, as migration 0004 decides."""
    with db.session() as s:
        device_id = s.scalar(
            select(Device.device_id)
            .join(Channel, Channel.device_pk == Device.id)
            .where(Channel.channel_id == channel_id)
            .order_by(Channel.id)
            .limit(1)
        )
    try:
        return ChannelRef(device_id, channel_id) if device_id else None
    except ids.InvalidGbId:
        return None


def duration_s(scan: ts.TsScan) -> float:
    """From the first frame to the end of the last one (its duration taken from the one before)."""
    stamps = [p.pts for p in scan.pes if p.pts is not None]
    if not stamps:
        return 0.0
    last_step = scan.pts_delta(stamps[-1], stamps[-2]) if len(stamps) > 1 else DEFAULT_FRAME_TICKS
    return (scan.pts_delta(stamps[-1], stamps[0]) + min(last_step, CLOCK_HZ)) / CLOCK_HZ


def recover_file(db: Database, objects: ObjectStore, path: Path) -> str:
    """Recover one spool file; returns what happened: indexed, truncated, discarded or skipped."""
    parsed = parse_spool_name(path)
    if parsed is None or path.suffix not in (PART_SUFFIX, DONE_SUFFIX):
        return "skipped"
    channel, start = parsed
    if isinstance(channel, str):
        owner = legacy_owner(db, channel)
        if owner is None:
            log.warning("spool file kept: no device lists its channel", file=path.name)
            return "skipped"
        channel = owner
    data = path.read_bytes()
    outcome = "indexed"
    if path.suffix == PART_SUFFIX:
        keep, scan = ts.complete_length(data)
        if keep == 0:
            log.warning("spool file discarded: no complete keyframe", file=path.name)
            path.unlink(missing_ok=True)
            return "discarded"
        log.warning("spool file truncated", file=path.name, kept=keep, dropped=len(data) - keep)
        data = data[:keep]
        outcome = "truncated"
    else:
        scan = ts.scan(data)
    codec = scan.codec or "h264"
    end = start + duration_s(scan)
    info = SegmentInfo(path, channel, codec, start, end, len(scan.pes), scan.audio_codec or "")
    if store_segment(db, objects, info, data) is None:
        log.warning("spool file discarded: no keyframe", file=path.name)
        return "discarded"
    log.info("spool file recovered", file=path.name, outcome=outcome, bytes=len(data))
    return outcome


def recover_spool(
    db: Database, objects: ObjectStore, spool: Path, busy: Collection[Path] = ()
) -> dict[str, int]:
    """Recover every spool file not being written now; errors leave the file for the next try."""
    counts: dict[str, int] = {}
    if not spool.is_dir():
        return counts
    for path in sorted(spool.iterdir()):
        if path in busy or not path.is_file():
            continue
        try:
            outcome = recover_file(db, objects, path)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            log.error("spool recovery failed", file=path.name, error=repr(exc))
            outcome = "failed"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
