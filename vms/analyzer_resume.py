"""Alarms that outlive a restart: continue them, or clear them with a note saying why.

A node that stops or crashes while alarms are active leaves them ``active`` in the database.
On start the analyzer pool asks :meth:`AlarmResume.active` for each camera it configures and
continues those alarms with the same ALARM_ID (``CameraEngine.resume``).  Alarms that no
analysed rule continues (analysis disabled, rule removed, camera gone) would otherwise stay
open forever, a data-quality defect the Shandong guides name (发生报警后长时间未销警,
spec/alarms.md §5.6): :meth:`AlarmResume.orphaned` clears them as the system, with a clear
record (status 0, same ALARM_ID, a picture) that goes up through the uplink outbox like any
other clear, and an ``AlarmAction`` note.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from analyzers.engine import ActiveAlarm
from analyzers.events import AlarmEvent, AlarmStatus
from analyzers.snapshot import encode_jpeg
from sip import ids
from sip.channel_ref import ChannelRef
from storage.models import Alarm, Channel, Device
from storage.objects import ObjectStoreError
from vms.alarms.handling import SYSTEM_CLEAR, system_note
from vms.alarms.service import Outcome
from vms.logging import get_logger
from vms.services import Services

log = get_logger("vms.analyzers.resume")

CLEAR_FRAME_WAIT_S = 5.0  # how long a system clear waits for the camera's next frame
NOTE_PREFIX = "analysis stopped"
CAMERA_GONE = "camera gone"
ANALYSIS_OFF = "analysis disabled or not started"


def active_alarms(s: Session, channel: ChannelRef | None = None) -> list[ActiveAlarm]:
    """Active alarms (of one camera: through its channel row, never by VIDEO_CODE alone)."""
    stmt = (
        select(Alarm, Device.device_id)
        .outerjoin(Channel, Alarm.channel_pk == Channel.id)
        .outerjoin(Device, Channel.device_pk == Device.id)
        .where(Alarm.active.is_(True))
        .order_by(Alarm.raised_at)
    )
    if channel is not None:
        stmt = stmt.where(
            Device.device_id == channel.device_id, Channel.channel_id == channel.channel_id
        )
    return [
        ActiveAlarm(
            alarm_id=a.alarm_id,
            channel_id=a.video_code,
            profile=a.profile.value,
            rule=a.rule,
            key=str((a.detail or {}).get("rule_name") or ""),
            alarm_type=a.alarm_type,
            raised_at=a.raised_at,
            image_key=a.image_key,
            device_id=device_id or "",
        )
        for a, device_id in s.execute(stmt)
    ]


def camera_of(alarm: ActiveAlarm) -> ChannelRef | None:
    """The alarm's camera; None once its channel row is gone (or was never known)."""
    if ids.is_gb_id(alarm.device_id) and ids.is_gb_id(alarm.channel_id):
        return ChannelRef(alarm.device_id, alarm.channel_id)
    return None


def known_channels(s: Session) -> set[ChannelRef]:
    rows = s.execute(
        select(Device.device_id, Channel.channel_id)
        .select_from(Channel)
        .join(Device, Channel.device_pk == Device.id)
    )
    return {ChannelRef(d, c) for d, c in rows if ids.is_gb_id(d) and ids.is_gb_id(c)}


async def note_system_clear(services: Services, event: AlarmEvent, outcome: Outcome) -> None:
    """Record why the node cleared an alarm by itself, once the clear is stored."""
    note = (event.detail or {}).get(SYSTEM_CLEAR)
    if note and (outcome.created or outcome.journaled):
        await services.db.run(lambda s: system_note(s, event.alarm_id, str(note)))


class AlarmResume:
    """The pool's ``ResumeSource`` backed by the node's database and alarm service."""

    def __init__(self, services: Services, pool: Any) -> None:
        self.services = services
        self.pool = pool
        self.frame_wait_s = CLEAR_FRAME_WAIT_S

    async def active(self, channel: ChannelRef) -> list[ActiveAlarm]:
        return await self.services.db.run(lambda s: active_alarms(s, channel))

    async def sweep(self, analysed: Collection[ChannelRef] | None = None) -> int:
        """After start: clear active alarms of cameras the pool does not analyse (nor, in a
        cluster, any node: ``analysed`` is then every camera with analysis on)."""
        try:
            alarms = await self.services.db.run(active_alarms)
            channels = await self.services.db.run(known_channels)
        except Exception as exc:  # noqa: BLE001 - background task: log, retry on next start
            log.error("active alarms not swept", error=repr(exc))
            return 0
        held = self.pool.active_alarm_ids()
        by_camera: dict[ChannelRef | None, list[ActiveAlarm]] = {}
        for a in alarms:
            camera = camera_of(a)
            taken = camera is not None and (
                camera in self.pool.cams or (analysed is not None and camera in analysed)
            )
            if not taken and a.alarm_id not in held:
                by_camera.setdefault(camera, []).append(a)
        for camera, left in by_camera.items():
            known = camera is not None and camera in channels
            await self.orphaned(camera, left, ANALYSIS_OFF if known else CAMERA_GONE)
        return sum(map(len, by_camera.values()))

    async def orphaned(
        self, channel: ChannelRef | None, alarms: list[ActiveAlarm], reason: str
    ) -> None:
        frame = await self.pool.latest_frame(channel, self.frame_wait_s)
        jpeg = b"" if frame is None else await asyncio.to_thread(encode_jpeg, frame)
        for alarm in alarms:
            try:
                await self._clear(alarm, jpeg, reason)
            except Exception as exc:  # noqa: BLE001 - one bad row must not keep the others open
                log.error("system clear failed", alarm_id=alarm.alarm_id, error=repr(exc))

    async def _clear(self, alarm: ActiveAlarm, jpeg: bytes, reason: str) -> None:
        sink = self.services.alarm_sink
        if sink is None:
            log.warning("no alarm sink: alarm left active", alarm_id=alarm.alarm_id)
            return
        picture = jpeg or await self._own_image(alarm)
        note = f"{NOTE_PREFIX}: {reason}"
        event = AlarmEvent(
            alarm_id=alarm.alarm_id,
            status=AlarmStatus.clear,
            channel_id=alarm.channel_id,
            device_id=alarm.device_id,
            profile=alarm.profile,
            rule=alarm.rule,
            alarm_type=alarm.alarm_type,
            at=datetime.now(UTC),
            snapshot_jpeg=picture,
            detail={SYSTEM_CLEAR: note, "frame": bool(jpeg)},
        )
        outcome = await sink.handle(event)
        if outcome is not None:  # None: on the bus; the node that stores it writes the note
            await note_system_clear(self.services, event, outcome)
        log.info("alarm cleared by the system", alarm_id=alarm.alarm_id, reason=reason)

    async def _own_image(self, alarm: ActiveAlarm) -> bytes:
        """The alarm's own picture (the clear needs one; the service substitutes if absent)."""
        if not alarm.image_key:
            return b""
        try:
            return await asyncio.to_thread(self.services.objects.get, alarm.image_key)
        except (ObjectStoreError, OSError) as exc:
            log.warning("alarm picture unavailable", key=alarm.image_key, error=str(exc))
            return b""
