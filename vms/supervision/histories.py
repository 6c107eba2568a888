"""The offline spans of every point and camera over a time range, from their event histories.

Points: ``sensor_events`` online/offline (written by the ingest service).  Cameras: the
device's ``device_events`` online/offline (written by the SIP store) united with the
channel's catalog status OFF, whose changes ``vms.supervision.channels`` records as
``channel.off`` / ``channel.on`` device events (the SIP side keeps only the current status).

Before its first event a subject never reported: offline.  An "online" state that nobody
refreshed (the last reading or keepalive is older than the offline limit) is stale and
counts as offline from last heard plus the limit.  Subjects without an organisation belong
to no enterprise and are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import Channel, Device, DeviceEvent, DeviceStatus
from storage.sensor_models import Sensor, SensorEvent
from vms.logging import get_logger

from .channels import CHANNEL_KINDS, CHANNEL_ON
from .spans import Span, offline_spans, union

log = get_logger("vms.supervision")

STATE_KINDS = ("online", "offline")
CACHE_AFTER = timedelta(days=1)  # states at a range start this old are final enough to cache


@dataclass
class SubjectSpans:
    """One point or camera over the range: its offline spans and what bounds its watch."""

    subject: str  # sensor | camera
    subject_id: str  # sensor pk or camera GB code
    org_id: int
    name: str
    exists_from: datetime
    suspended: bool  # sensor disabled, device disabled or pending: declared out of service
    spans: list[Span]


class StateCache:
    """Initial states at a range start, so each refresh scans only the recent events."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: dict[tuple[str, datetime], Any] = {}

    def get(self, key: tuple[str, datetime]) -> Any:
        return self._items.get(key)

    def put(self, key: tuple[str, datetime], value: Any, now: datetime) -> None:
        if now - key[1] < CACHE_AFTER:
            return  # late events may still land before this start
        if len(self._items) >= self.size:
            self._items.pop(next(iter(self._items)))
        self._items[key] = value


def _last_state_before(
    session: Session, key_col: Any, at_col: Any, id_col: Any, kind_col: Any, start: datetime
) -> dict[Any, tuple[datetime, bool]]:
    """Per key, the newest online/offline event before ``start``: (at, online)."""
    rn = (
        func.row_number()
        .over(partition_by=key_col, order_by=(at_col.desc(), id_col.desc()))
        .label("rn")
    )
    sub = (
        select(key_col.label("key"), kind_col.label("kind"), at_col.label("at"), rn)
        .where(kind_col.in_(STATE_KINDS), at_col < start)
        .subquery()
    )
    rows = session.execute(select(sub.c.key, sub.c.kind, sub.c.at).where(sub.c.rn == 1))
    return {key: (at, kind == "online") for key, kind, at in rows}


def _changes(rows: Iterable[Any]) -> dict[Any, list[tuple[datetime, bool]]]:
    out: dict[Any, list[tuple[datetime, bool]]] = defaultdict(list)
    for key, kind, at in rows:
        out[key].append((at, kind == "online"))
    return out


def _cached(
    cache: StateCache | None, key: tuple[str, datetime], now: datetime, load: Any
) -> dict[Any, Any]:
    value = cache.get(key) if cache is not None else None
    if value is None:
        value = load()
        if cache is not None:
            cache.put(key, value, now)
    return value


def sensor_spans(
    session: Session,
    start: datetime,
    end: datetime,
    now: datetime,
    offline_after_s: float,
    cache: StateCache | None = None,
) -> list[SubjectSpans]:
    """Every point's offline spans within [start, end)."""
    ev = SensorEvent
    before = _cached(
        cache,
        ("sensor", start),
        now,
        lambda: _last_state_before(session, ev.sensor_pk, ev.at, ev.id, ev.kind, start),
    )
    changes = _changes(
        session.execute(
            select(ev.sensor_pk, ev.kind, ev.at)
            .where(ev.kind.in_(STATE_KINDS), ev.at >= start, ev.at < end)
            .order_by(ev.at, ev.id)
        )
    )
    limit = timedelta(seconds=offline_after_s)
    out: list[SubjectSpans] = []
    rows = session.execute(
        select(
            Sensor.id,
            Sensor.org_id,
            Sensor.tag,
            Sensor.name,
            Sensor.enabled,
            Sensor.created_at,
            Sensor.online,
            Sensor.last_reading_at,
        ).where(Sensor.org_id.is_not(None))
    )
    for pk, org_id, tag, name, enabled, created_at, online, last_reading_at in rows:
        own = changes.get(pk, [])
        first = before.get(pk)
        if first is not None:
            state = first[1]
        else:  # no event before the range: never reported, unless the row says otherwise
            state = bool(online) and not own
        heard = [t for t in (last_reading_at, first[0] if first and first[1] else None) if t]
        heard += [at for at, up in own if up]
        online_until = max(heard) + limit if heard else None
        out.append(
            SubjectSpans(
                "sensor",
                str(pk),
                org_id,
                f"{tag} {name}".strip(),
                created_at,
                not enabled,
                offline_spans(start, end, state, own, online_until),
            )
        )
    return out


def _channel_states_before(session: Session, start: datetime) -> dict[tuple[int, str], bool]:
    """Per (device pk, channel GB code), whether its catalog status was ON before ``start``."""
    states: dict[tuple[int, str], bool] = {}
    rows = session.execute(
        select(DeviceEvent.device_pk, DeviceEvent.kind, DeviceEvent.detail)
        .where(DeviceEvent.kind.in_(CHANNEL_KINDS), DeviceEvent.at < start)
        .order_by(DeviceEvent.at, DeviceEvent.id)
    )
    for device_pk, kind, detail in rows:
        states[(device_pk, str((detail or {}).get("channel_id", "")))] = kind == CHANNEL_ON
    return states


def camera_spans(
    session: Session,
    start: datetime,
    end: datetime,
    now: datetime,
    keepalive_limit_s: float,
    cache: StateCache | None = None,
) -> list[SubjectSpans]:
    """Every camera's offline spans within [start, end): device offline or status OFF."""
    ev = DeviceEvent
    dev_before = _cached(
        cache,
        ("device", start),
        now,
        lambda: _last_state_before(session, ev.device_pk, ev.at, ev.id, ev.kind, start),
    )
    ch_before = _cached(
        cache, ("channel", start), now, lambda: _channel_states_before(session, start)
    )
    dev_changes: dict[Any, list[tuple[datetime, bool]]] = defaultdict(list)
    ch_changes: dict[Any, list[tuple[datetime, bool]]] = defaultdict(list)
    for device_pk, kind, at, detail in session.execute(
        select(ev.device_pk, ev.kind, ev.at, ev.detail)
        .where(ev.kind.in_((*STATE_KINDS, *CHANNEL_KINDS)), ev.at >= start, ev.at < end)
        .order_by(ev.at, ev.id)
    ):
        if kind in STATE_KINDS:
            dev_changes[device_pk].append((at, kind == "online"))
        else:
            key = (device_pk, str((detail or {}).get("channel_id", "")))
            ch_changes[key].append((at, kind == CHANNEL_ON))
    limit = timedelta(seconds=keepalive_limit_s)
    device_spans: dict[int, list[Span]] = {}
    out: list[SubjectSpans] = []
    seen: set[str] = set()
    rows = session.execute(
        select(
            Channel.device_pk,
            Channel.channel_id,
            Channel.name,
            Device.org_id,
            Device.status,
            Device.created_at,
            Device.online,
            Device.keepalive_at,
            Device.registered_at,
        )
        .join(Device, Channel.device_pk == Device.id)
        .where(Device.org_id.is_not(None))
        .order_by(Channel.device_pk, Channel.channel_id)
    )
    for device_pk, channel_id, name, org_id, status, created_at, online, ka, reg in rows:
        if channel_id in seen:  # the same GB code under two devices: count it once
            log.warning("camera code listed by two devices", channel_id=channel_id)
            continue
        seen.add(channel_id)
        if device_pk not in device_spans:
            own = dev_changes.get(device_pk, [])
            first = dev_before.get(device_pk)
            state = first[1] if first is not None else bool(online) and not own
            heard = [t for t in (ka, reg, first[0] if first and first[1] else None) if t]
            heard += [at for at, up in own if up]
            online_until = max(heard) + limit if heard else None
            device_spans[device_pk] = offline_spans(start, end, state, own, online_until)
        key = (device_pk, channel_id)
        status_off = offline_spans(start, end, ch_before.get(key, True), ch_changes.get(key, []))
        out.append(
            SubjectSpans(
                "camera",
                channel_id,
                org_id,
                name,
                created_at,
                status != DeviceStatus.active,
                union(device_spans[device_pk], status_off),
            )
        )
    return out
