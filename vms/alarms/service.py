"""``AlarmService.handle(event)``: one analyzer event becomes a committed alarm record.

Order of work, so that nothing is lost: validate → picture to the object store (or to the
local spool when the store is down) → ONE transaction with the Alarm row and one Table 4
outbox row per receiver → wake the uplink, publish on the event bus, notify webhooks.
Events of one camera are handled one at a time, so the outbox keeps the camera's order.
If the database stays down through a few short retries, the event goes to a local journal
(``journal.py``) and is committed when the database is back.  A replayed event (same
ALARM_ID and status) is recognised and not recorded twice.

Table 4 carries the camera's VIDEO_CODE (``vms.uplink.identity``), kept on the alarm so its
clear carries the same; a camera without one still gets its alarm stored and shown here, but
nothing goes upward for it (logged; ``not_reported`` in ``GET /api/alarms/stats``).  An
alarm is cleared once: the guarded update lets only the first clear (the analyzer's, the
system's, or an operator's closing it by hand) write the Table 4 clear.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from analyzers.events import AlarmEvent, AlarmStatus
from analyzers.snapshot import encode_jpeg
from sip import ids
from sip.channel_ref import ChannelRef
from storage.models import Alarm, Channel, Device, Organisation, Profile
from storage.objects import ObjectStoreError
from vms.logging import get_logger
from vms.services import Services
from vms.tasks import cancel_task
from vms.uplink import outbox, tables
from vms.uplink.identity import camera_video_code, site_identity
from vms.uplink.scheduler import device_id

from . import codes, images
from .journal import EventJournal, from_record, to_record
from .spool import ImageSpool

log = get_logger("vms.alarms")

CLIP_BEFORE_S = 10.0  # clip linked to an alarm: from 10 s before the alarm ...
CLIP_AFTER_S = 10.0  # ... to 10 s after it (or after the clear)
COMMIT_RETRIES_S = (0.1, 0.5, 1.5)  # short database hiccups; longer outages go to the journal


class AlarmRejected(ValueError):
    """The event is invalid; the message says which field and why."""


@dataclass(frozen=True)
class Outcome:
    """What a call to :meth:`AlarmService.handle` did."""

    alarm_id: str
    status: int
    created: bool  # False: a duplicate of a record already committed (nothing new written)
    image_key: str
    image_spooled: bool
    image_error: str
    event: dict[str, Any]
    journaled: bool = False  # database down: kept in the local journal, committed later


def validate(event: AlarmEvent) -> None:
    if not codes.is_uuid36(event.alarm_id):
        raise AlarmRejected(f"ALARM_ID must be a 36-character uuid, got {event.alarm_id!r}")
    if int(event.status) not in (0, 1):
        raise AlarmRejected(f"ALARM_STATUS must be 1 (alarm) or 0 (clear), got {event.status!r}")
    if event.profile not in codes.CODE_TABLES:
        raise AlarmRejected(f"unknown profile {event.profile!r}")
    if not codes.is_valid_code(event.profile, event.alarm_type):
        raise AlarmRejected(
            f"ALARM_TYPE {event.alarm_type!r} is not in the {event.profile} code table"
        )
    if not codes.is_video_code(event.channel_id):
        raise AlarmRejected(f"VIDEO_CODE must be 20 digits, got {event.channel_id!r}")
    if event.device_id and not codes.is_video_code(event.device_id):
        raise AlarmRejected(f"the camera's device must be 20 digits, got {event.device_id!r}")
    if event.at.tzinfo is None:
        raise AlarmRejected("event time must be timezone-aware")


def camera_of(s: Session, event: AlarmEvent) -> tuple[Channel | None, Organisation | None]:
    """The event's camera and its organisation: the channel of the event's device; without
    a device (tools, tests), the one channel with that code — several are a refusal, never
    a guess, since the alarm would land in one of them at random."""
    stmt = (
        select(Channel, Organisation)
        .join(Device, Channel.device_pk == Device.id)
        .outerjoin(Organisation, Device.org_id == Organisation.id)
        .where(Channel.channel_id == event.channel_id)
    )
    if event.device_id:
        stmt = stmt.where(Device.device_id == event.device_id)
    rows = s.execute(stmt.limit(2)).all()
    if len(rows) > 1:
        raise AlarmRejected(f"camera {event.channel_id} is on several devices: name the device")
    return (rows[0][0], rows[0][1]) if rows else (None, None)


def clip_ref(device_id: str, channel_id: str, start: Any, end: Any) -> str:
    """A recordings-export reference: ``{device}/{channel}/{start}-{end}`` in UTC basic format
    (older rows: ``{channel}/{start}-{end}``)."""
    span = f"{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}"
    return f"{device_id}/{channel_id}/{span}" if device_id else f"{channel_id}/{span}"


def clip_url(clip_key: str) -> str:
    """The recordings export (``/api/recordings/{channel}/export.mp4?device_id=``) of a clip
    reference; "" for anything that is not one (the parts are checked: no path from text)."""
    parts = clip_key.split("/")
    if len(parts) not in (2, 3) or not all(codes.is_video_code(p) for p in parts[:-1]):
        return ""
    try:
        start, end = (datetime.strptime(x, "%Y%m%dT%H%M%SZ") for x in parts[-1].split("-", 1))
    except ValueError:
        return ""
    iso = "%Y-%m-%dT%H:%M:%SZ"
    query = f"start={start:{iso}}&end={end:{iso}}"
    if len(parts) == 3:
        query += f"&device_id={parts[0]}"
    return f"/api/recordings/{parts[-2]}/export.mp4?{query}"


def camera_device(alarm: Alarm) -> str:
    """The device of the alarm's camera ("" once the camera is gone)."""
    channel = alarm.channel
    return channel.device.device_id if channel is not None else ""


def event_data(alarm: Alarm, org_path: str | None, status: int) -> dict[str, Any]:
    at = alarm.raised_at if status == 1 else alarm.cleared_at
    return {
        "alarm_id": alarm.alarm_id,
        "status": status,
        "alarm_type": alarm.alarm_type,
        "type_name": codes.code_name(alarm.profile.value, alarm.alarm_type),
        "profile": alarm.profile.value,
        "rule": alarm.rule,
        "video_code": alarm.video_code,
        "uplink_video_code": alarm.uplink_video_code,  # "" → not reported upward
        "device_id": camera_device(alarm),
        "device_code": alarm.device_code,
        "org_id": alarm.org_id,
        "org_path": org_path,
        "at": at.isoformat() if at else None,
        "handling": alarm.handling.value,
        "image_url": f"/api/alarms/{alarm.alarm_id}/image?status={status}",
    }


class AlarmService:
    """``services.alarms``; build with :meth:`from_services`."""

    def __init__(
        self,
        services: Services,
        spool: ImageSpool,
        wake_uplink: Any = None,
        webhooks: Any = None,
        journal: EventJournal | None = None,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.spool = spool
        spool_root = services.settings.server.data_dir / "spool"
        self.journal = journal or EventJournal(spool_root / "alarm-events")
        self.journal_retry_s = 5.0
        self._journal_wake = asyncio.Event()
        self._journal_task: asyncio.Task[None] | None = None
        self._wake_uplink = wake_uplink
        self.webhooks = webhooks
        self._locks: dict[str, asyncio.Lock] = {}
        self.install_id = device_id(services.settings.server.data_dir)  # Table 2's DEVICE_ID

    def device_code(self, org: Organisation | None) -> str:
        """DEVICE_CODE of the camera's site (vms.uplink.identity); a camera of no known
        site gets the node's configured code, else one unique to this install."""
        configured = self.settings.analyzers.device_code
        if org is None:
            return configured or f"AI-unknown-{self.install_id[:8]}"
        return site_identity(self.install_id, org, configured).device_code

    @classmethod
    def from_services(cls, services: Services, spool_retry_s: float = 5.0) -> AlarmService:
        spool_dir = services.settings.server.data_dir / "spool" / "alarm-images"
        uplink = services.uplink
        return cls(
            services,
            ImageSpool(spool_dir, services.objects, spool_retry_s),
            wake_uplink=getattr(uplink, "wake", None),
        )

    def _table4_receivers(self) -> list[str]:
        return [r.name for r in self.settings.uplink.receivers if r.table4_url]

    async def handle(self, event: AlarmEvent) -> Outcome:
        """Commit one alarm or clear; raise :class:`AlarmRejected` for invalid input."""
        validate(event)
        lock = self._locks.setdefault(event.channel_id, asyncio.Lock())
        async with lock:
            return await self._handle(event)

    async def _handle(self, event: AlarmEvent) -> Outcome:
        status = int(event.status)
        prepared = await asyncio.to_thread(
            images.prepare,
            event.snapshot_jpeg,
            event.raw_jpeg,
            event.at,
            self.services.settings.uplink.image_max_bytes,
        )
        if prepared.error:
            log.warning("alarm image replaced", alarm_id=event.alarm_id, reason=prepared.error)
        key = images.image_key(event.at, event.alarm_id, status)
        spooled = False
        try:
            await asyncio.to_thread(self.services.objects.put, key, prepared.data, "image/jpeg")
        except (ObjectStoreError, OSError) as exc:
            log.warning("object store down, image spooled", key=key, error=str(exc))
            await asyncio.to_thread(self.spool.put, key, prepared.data)
            spooled = True

        if self.journal.pending():  # older events still wait for the database: queue behind
            return self._journaled(event, key, spooled, prepared.error)
        try:
            created, data = await self._commit_with_retries(event, key, prepared.error)
        except DBAPIError as exc:
            log.error("database down, alarm journaled", alarm_id=event.alarm_id, error=str(exc))
            return self._journaled(event, key, spooled, prepared.error)
        if created:
            self._after_commit(status, data)
        return Outcome(event.alarm_id, status, created, key, spooled, prepared.error, data)

    def _journaled(self, event: AlarmEvent, key: str, spooled: bool, error: str) -> Outcome:
        self.journal.put(to_record(event, key, error))
        self._journal_wake.set()
        return Outcome(event.alarm_id, int(event.status), False, key, spooled, error, {}, True)

    async def _commit_with_retries(
        self, event: AlarmEvent, key: str, image_error: str
    ) -> tuple[bool, dict[str, Any]]:
        def commit(s: Session) -> tuple[bool, dict[str, Any]]:
            return self._commit(s, event, key, image_error)

        for delay in COMMIT_RETRIES_S:
            try:
                return await self.services.db.run(commit)
            except DBAPIError as exc:
                log.warning("alarm commit failed, retrying", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
        return await self.services.db.run(commit)

    def _after_commit(self, status: int, data: dict[str, Any]) -> None:
        if not data.get("uplink_video_code") and status == 1 and self._table4_receivers():
            log.warning(
                "alarm not reported upward: the camera has no VIDEO_CODE",
                alarm_id=data.get("alarm_id"),
                channel=data.get("video_code"),
                device_id=data.get("device_id"),
                fix="set the channel's uplink_video_code",
            )
        if self._wake_uplink is not None:
            self._wake_uplink()
        kind = "alarm.raised" if status == 1 else "alarm.cleared"
        self.services.events.publish(kind, **data)
        if self.webhooks is not None:
            self.webhooks.notify(kind, data)

    async def end_by_hand(
        self, alarm_id: str, note: str, frame_wait_s: float = 2.0
    ) -> Outcome | None:
        """Clear an alarm an operator ends while its rule still holds, so the province gets
        its Table 4 clear now (with the camera's current picture, else the alarm's own); the
        analyzer's later clear is then a replay and sends nothing.  None: already cleared."""

        def load(s: Session) -> tuple[AlarmEvent, str] | None:
            alarm = s.scalar(select(Alarm).where(Alarm.alarm_id == alarm_id))
            if alarm is None or not alarm.active:
                return None
            device = camera_device(alarm)
            event = AlarmEvent(
                alarm_id=alarm.alarm_id,
                status=AlarmStatus.clear,
                channel_id=alarm.video_code,
                device_id=device if ids.is_gb_id(device) else "",
                profile=alarm.profile.value,
                rule=alarm.rule,
                alarm_type=alarm.alarm_type,
                at=datetime.now(UTC),
                snapshot_jpeg=b"",
                detail={"cleared_by_hand": note},
            )
            return event, alarm.image_key

        loaded = await self.services.db.run(load)
        if loaded is None:
            return None
        event, own_key = loaded
        picture = await self._current_picture(event, frame_wait_s) or await self._stored(own_key)
        return await self.handle(replace(event, snapshot_jpeg=picture, at=datetime.now(UTC)))

    async def _current_picture(self, event: AlarmEvent, wait_s: float) -> bytes:
        pool = self.services.analyzers
        if pool is None or not event.device_id:
            return b""
        frame = await pool.latest_frame(ChannelRef(event.device_id, event.channel_id), wait_s)
        return b"" if frame is None else await asyncio.to_thread(encode_jpeg, frame)

    async def _stored(self, key: str) -> bytes:
        if not key:
            return b""
        try:
            return await asyncio.to_thread(self.services.objects.get, key)
        except (ObjectStoreError, OSError):
            return self.spool.get(key) or b""

    async def replay_journal(self) -> int:
        """Commit journaled events oldest first; stop at the first database failure."""
        done = 0
        for path in self.journal.pending():
            record = self.journal.load(path)
            event, key, error = from_record(record)
            lock = self._locks.setdefault(event.channel_id, asyncio.Lock())
            try:
                async with lock:
                    created, data = await self.services.db.run(
                        lambda s, e=event, k=key, r=error: self._commit(s, e, k, r)
                    )
            except AlarmRejected as exc:
                log.error("journaled alarm refused", file=path.name, error=str(exc))
                self.journal.reject(path, str(exc))
                continue
            except DBAPIError as exc:
                log.warning(
                    "database still down", waiting=len(self.journal.pending()), error=str(exc)
                )
                break
            path.unlink()
            done += 1
            if created:
                self._after_commit(int(event.status), data)
        return done

    async def _journal_loop(self) -> None:
        while True:
            if self.journal.pending():
                try:
                    await self.replay_journal()
                except Exception as exc:  # noqa: BLE001 - keep the loop alive; files stay
                    log.error("journal replay failed", error=repr(exc))
            self._journal_wake.clear()
            try:
                await asyncio.wait_for(self._journal_wake.wait(), self.journal_retry_s)
            except TimeoutError:
                pass

    def start(self) -> None:
        """Background work: the image spool uploader and the journal replay."""
        self.spool.start()
        self._journal_task = asyncio.create_task(self._journal_loop(), name="alarm-journal")

    async def stop(self) -> None:
        await cancel_task(self._journal_task)
        self._journal_task = None
        await self.spool.stop()

    def _commit(
        self, s: Session, event: AlarmEvent, key: str, image_error: str
    ) -> tuple[bool, dict[str, Any]]:
        status = int(event.status)
        channel, org = camera_of(s, event)
        if org is not None and org.profile.value != event.profile:
            raise AlarmRejected(
                f"camera {event.channel_id} belongs to a {org.profile.value} site; "
                f"a {event.profile} code cannot be used for it"
            )
        org_path = org.path if org is not None else None
        alarm = s.scalar(select(Alarm).where(Alarm.alarm_id == event.alarm_id))
        if status == AlarmStatus.alarm:
            override = channel.uplink_video_code if channel is not None else ""
            if alarm is not None:
                return False, event_data(alarm, org_path, status)  # replayed: already committed
            detail = dict(event.detail)
            if image_error:
                detail["image_error"] = image_error
            if channel is None:
                detail["unknown_channel"] = True
            alarm = Alarm(
                alarm_id=event.alarm_id,
                channel_pk=channel.id if channel else None,
                org_id=org.id if org else None,
                profile=Profile(event.profile),
                alarm_type=event.alarm_type,
                rule=event.rule,
                active=True,
                video_code=event.channel_id,
                uplink_video_code=camera_video_code(event.channel_id, override, org),
                device_code=self.device_code(org),
                raised_at=event.at,
                image_key=key,
                detail=detail,
            )
            if channel is not None and channel.record_enabled and self.settings.recording.enabled:
                alarm.clip_key = clip_ref(
                    channel.device.device_id,
                    event.channel_id,
                    event.at - timedelta(seconds=CLIP_BEFORE_S),
                    event.at + timedelta(seconds=CLIP_AFTER_S),
                )
            s.add(alarm)
        else:
            if alarm is None:
                raise AlarmRejected(f"clear for unknown ALARM_ID {event.alarm_id}")
            if alarm.alarm_type != event.alarm_type or alarm.video_code != event.channel_id:
                raise AlarmRejected(f"clear does not match alarm {event.alarm_id}")
            if not alarm.active or not self._first_clear(s, alarm):
                return False, event_data(alarm, org_path, status)  # replayed clear
            alarm.active = False
            alarm.cleared_at = event.at
            alarm.clear_image_key = key
            detail = dict(alarm.detail or {})
            if image_error:
                detail["clear_image_error"] = image_error
            alarm.detail = detail
            if alarm.clip_key:
                start = alarm.raised_at - timedelta(seconds=CLIP_BEFORE_S)
                device_id = alarm.channel.device.device_id if alarm.channel is not None else ""
                alarm.clip_key = clip_ref(
                    device_id, event.channel_id, start, event.at + timedelta(seconds=CLIP_AFTER_S)
                )
        if alarm.uplink_video_code:  # else the camera has none: stored, not reported
            payload = tables.table4(
                event.alarm_id,
                event.alarm_type,
                status,
                event.at,
                self.settings.server.timezone,
                alarm.device_code,  # the clear carries the alarm's, even if the site's changed
                alarm.uplink_video_code,  # likewise
            )
            receivers = self._table4_receivers()
            outbox.enqueue(s, receivers, tables.TABLE4, event.channel_id, payload, key)
        s.flush()
        return True, event_data(alarm, org_path, status)

    @staticmethod
    def _first_clear(s: Session, alarm: Alarm) -> bool:
        """Mark the alarm cleared unless another transaction already did (False then)."""
        done = s.execute(
            update(Alarm)
            .where(Alarm.id == alarm.id, Alarm.active.is_(True))
            .values(active=False)
            .execution_options(synchronize_session=False)
        )
        if done.rowcount == 1:
            return True
        s.refresh(alarm)
        return False
