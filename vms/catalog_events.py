"""Catalog ``<Event>``s of a device (GB/T 28181 §9.11 catalog subscription) on the stored channels.

ADD and UPDATE write the item (a channel not yet known is created), ON/OFF/VLOST/DEFECT
set its status (VLOST and DEFECT count as off, as WVP has it; an unknown channel's
status change is ignored), DEL removes the channel: its AI and device alarms are kept
(detached), the removal is a ``channel.deleted`` device event with what it was, and
per-channel settings go with the row, as the device says the camera is gone.
Items that are not channels (civil codes, groups of a lower platform) are not stored, nor
is an ADD of a code another device already has (refused: a catalog never re-parents a camera).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from sip.manscdp import CatalogItem
from sip.notify import ADD, DEL, UPDATE, CatalogEvent
from storage.device_alarm_models import DeviceAlarm
from storage.models import Alarm, Channel, Device, DeviceEvent
from vms.channel_claims import claimed_elsewhere

CHANNEL_DELETED = "channel.deleted"


def fill_channel(ch: Channel, item: CatalogItem) -> None:
    """A channel row from a catalog item (lengths cut to the columns)."""
    ch.name = item.name[:200]
    ch.manufacturer = item.manufacturer[:100]
    ch.model = item.model[:100]
    ch.status = item.status[:8]
    ch.parent_id = item.parent_id[:20]
    ch.civil_code = item.civil_code[:20]
    ch.address = item.address[:200]
    ch.ptz_type = item.ptz_type
    ch.secrecy = item.secrecy
    ch.longitude, ch.latitude = item.longitude, item.latitude


def apply_events(
    s: Session, device: Device, events: list[CatalogEvent]
) -> tuple[dict[str, int], set[str]]:
    """Apply the events in order; returns how many of each kind changed something, and the
    codes refused because another device has them (``vms.channel_claims``)."""
    existing = {c.channel_id: c for c in device.channels}
    adds = {
        ev.item.device_id
        for ev in events
        if ev.item.is_channel and ev.event in (ADD, UPDATE) and ev.item.device_id not in existing
    }
    refused = claimed_elsewhere(s, device, adds)
    counts: dict[str, int] = {}
    for ev in events:
        item = ev.item
        if not item.is_channel or item.device_id in refused:
            continue
        ch = existing.get(item.device_id)
        if ev.event in (ADD, UPDATE):
            if ch is None:
                ch = Channel(channel_id=item.device_id)
                device.channels.append(ch)
                existing[item.device_id] = ch
            fill_channel(ch, item)
        elif ev.event == DEL:
            if ch is None:
                continue
            _delete(s, device, ch)
            del existing[item.device_id]
        else:
            if ch is None:
                continue
            ch.status = item.status[:8]
        counts[ev.event] = counts.get(ev.event, 0) + 1
    device.channel_count = len(existing)
    return counts, refused


def _delete(s: Session, device: Device, ch: Channel) -> None:
    if ch.id is not None:  # alarms outlive their camera (nothing is lost)
        s.execute(update(Alarm).where(Alarm.channel_pk == ch.id).values(channel_pk=None))
        s.execute(
            update(DeviceAlarm).where(DeviceAlarm.channel_pk == ch.id).values(channel_pk=None)
        )
    s.add(
        DeviceEvent(
            device_pk=device.id,
            kind=CHANNEL_DELETED,
            detail={"channel_id": ch.channel_id, "name": ch.name, "reason": "catalog DEL"},
        )
    )
    device.channels.remove(ch)
