"""RecordInfo upward: the recorded ranges of a channel, from our index or from its NVR.

A superior asking what exists gets our own recordings (merged ranges of the segment
index) when we hold any of the window; only when we hold none is the device asked
(its own RecordInfo), so the answer matches where a replay would come from.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from sip.channel_ref import ChannelRef
from sip.manscdp import RecordItem
from vms.logging import get_logger
from vms.recording.index import merge_ranges, rows_between
from vms.services import Services

from .catalog import SharedChannel

log = get_logger("vms.cascade.records")


async def record_items(
    services: Services, shared: SharedChannel, start: datetime, end: datetime
) -> list[RecordItem]:
    channel_id = shared.item.device_id
    camera = ChannelRef(shared.device_id, channel_id)

    def ours(s: Session) -> list[tuple[datetime, datetime, int]]:
        rows = rows_between(s, camera, start, end)
        out = []
        for span in merge_ranges(rows, start, end):
            size = sum(
                r.size for r in rows if not r.is_gap and r.start < span.end and r.end > span.start
            )
            out.append((span.start, span.end, size))
        return out

    spans = await services.db.run(ours)
    name = shared.item.name or channel_id
    if spans:
        return [
            RecordItem(channel_id, name, a, b, f"recordings/{channel_id}", "time", size)
            for a, b, size in spans
        ]
    sip = services.sip
    if sip is None:
        return []
    try:
        result = await sip.record_info(shared.device_id, channel_id, start, end)
    except Exception as exc:  # noqa: BLE001 - the device is offline or silent: nothing known
        log.info("device RecordInfo failed", channel=channel_id, error=repr(exc))
        return []
    return [
        RecordItem(channel_id, r.name or name, r.start, r.end, r.file_path, r.type, r.file_size)
        for r in result.items
    ]
