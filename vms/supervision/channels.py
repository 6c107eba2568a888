"""A history of each camera's catalog status, which the SIP side keeps only as current state.

``vms.sip_store`` overwrites ``Channel.status`` on every Catalog answer and records device
online/offline in ``device_events``, but not a channel going OFF or coming back.  Offline
figures need the times, so this module compares the stored statuses with the last recorded
ones and writes ``channel.off`` / ``channel.on`` device events (``detail.channel_id``) for
each change: after every catalog update (bus event ``catalog.updated``) and every refresh.
A channel first seen OFF is dated by its ``updated_at`` (the last time its row changed),
the best time known for it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Channel, DeviceEvent

CHANNEL_OFF = "channel.off"
CHANNEL_ON = "channel.on"
CHANNEL_KINDS = (CHANNEL_OFF, CHANNEL_ON)
OFF_STATUSES = frozenset({"OFF", "OFFLINE"})  # GB28181 says ON/OFF; some devices ONLINE/OFFLINE


def is_off(status: str | None) -> bool:
    return (status or "").strip().upper() in OFF_STATUSES


class ChannelStatusTracker:
    """Writes a device event whenever a channel's catalog status changed since last seen."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, str], bool] | None = None  # (device pk, code) → off

    def _load(self, session: Session) -> dict[tuple[int, str], bool]:
        known: dict[tuple[int, str], bool] = {}
        rows = session.execute(
            select(DeviceEvent.device_pk, DeviceEvent.kind, DeviceEvent.detail)
            .where(DeviceEvent.kind.in_(CHANNEL_KINDS))
            .order_by(DeviceEvent.at, DeviceEvent.id)
        )
        for device_pk, kind, detail in rows:
            known[(device_pk, str((detail or {}).get("channel_id", "")))] = kind == CHANNEL_OFF
        return known

    def sync(self, session: Session, now: datetime) -> int:
        """Record the status changes found; returns how many events were written."""
        if self._known is None:
            self._known = self._load(session)
        known = self._known
        written: list[tuple[tuple[int, str], bool]] = []
        rows = session.execute(
            select(Channel.device_pk, Channel.channel_id, Channel.status, Channel.updated_at)
        )
        for device_pk, channel_id, status, updated_at in rows:
            key = (device_pk, channel_id)
            off = is_off(status)
            before = known.get(key)
            if before is None and not off:
                continue  # ON since we know it: nothing to record
            if before == off:
                continue
            at = now if before is not None or updated_at is None else min(updated_at, now)
            session.add(
                DeviceEvent(
                    device_pk=device_pk,
                    kind=CHANNEL_OFF if off else CHANNEL_ON,
                    at=at,
                    detail={"channel_id": channel_id, "status": status},
                )
            )
            written.append((key, off))
        session.flush()
        for key, off in written:  # only once stored: a rolled-back sync is redone next time
            known[key] = off
        return len(written)

    def forget(self) -> None:
        """Re-read the recorded states next time (after a failed transaction)."""
        self._known = None
