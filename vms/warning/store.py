"""The database side of warning transitions: one :class:`Op` per change, applied in order.

The engine decides on the event loop and queues ops; :meth:`WarningStore.apply` writes a
batch of them in one transaction in a worker thread — the warning row, its history event,
the recipients' notices (durable, delivered by ``vms.warning.notifier``), the red relay, the
recording bookmarks — and returns the bus events to publish once committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from sip.channel_ref import ChannelRef
from storage.models import HandlingState, Organisation
from storage.sensor_models import RecordingBookmark, SensorWarning, WarningEvent, WarningLevel

from .messages import compose
from .notices import queue_notices
from .recipients import Recipient, resolve
from .table import ENTERPRISE, NAMES_ZH, RANK, LevelRule, rule

Effect = tuple[str, dict[str, Any]]  # (bus event kind, data)

HANDLED_DOWNGRADE = "处置降级 handled and downgraded"


@dataclass
class Op:
    """One change of one warning, in the order the engine decided it."""

    kind: str  # open, escalate, downgrade, clear, offline, online, snapshot, camera
    warning_id: str
    at: datetime
    sensor_pk: int | None = None
    org_id: int | None = None
    level: str = ""
    cause: str = ""
    value: float | None = None
    threshold: float | None = None
    cameras: tuple[ChannelRef, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


def camera_detail(cameras: tuple[ChannelRef, ...]) -> dict[str, Any]:
    """A warning's linked cameras in its detail: the codes people read (``cameras``) and the
    cameras themselves (``camera_refs``: [device, channel]), which bookmarks are made for."""
    return {
        "cameras": [c.channel_id for c in cameras],
        "camera_refs": [[c.device_id, c.channel_id] for c in cameras],
    }


def summary(w: SensorWarning, org_path: str | None) -> dict[str, Any]:
    """A warning as bus events and webhooks carry it."""
    detail = w.detail or {}
    return {
        "warning_id": w.warning_id,
        "sensor_id": w.sensor_pk,
        "tag": detail.get("tag", ""),
        "name": detail.get("name", ""),
        "unit": detail.get("unit", ""),
        "org_id": w.org_id,
        "org_path": org_path,
        "level": w.level.value,
        "level_name": NAMES_ZH[w.level.value],
        "peak_level": w.peak_level.value,
        "cause": w.cause,
        "value": w.value,
        "threshold": w.threshold,
        "active": w.active,
        "raised_at": w.raised_at.isoformat(),
        "level_since": w.level_since.isoformat(),
        "cleared_at": w.cleared_at.isoformat() if w.cleared_at else None,
        "handling": w.handling.value,
        "tracker": rule(w.level).tracker,
        "cameras": list(detail.get("cameras", [])),
        "camera_refs": list(detail.get("camera_refs", [])),
    }


class WarningStore:
    """Applies ops; also used by the escalator and the API for notices of one warning."""

    def __init__(self, webhooks: list[str], timezone: str) -> None:
        self.webhooks = list(webhooks)
        self.tz = ZoneInfo(timezone)
        self.notices_queued = 0  # read by the engine to wake the notifier

    def apply(self, s: Session, ops: list[Op]) -> list[Effect]:
        effects: list[Effect] = []
        for op in ops:
            effects += getattr(self, f"_{op.kind}")(s, op)
        s.flush()
        return effects

    # --- helpers shared with the escalator ------------------------------------------

    def org(self, s: Session, org_id: int | None) -> Organisation | None:
        return s.get(Organisation, org_id) if org_id is not None else None

    def record(
        self,
        s: Session,
        w: SensorWarning,
        kind: str,
        at: datetime,
        recipients: list[Recipient] | None = None,
        note: str = "",
        detail: dict[str, Any] | None = None,
        user_id: int | None = None,
    ) -> WarningEvent:
        event = WarningEvent(
            warning_pk=w.id,
            at=at,
            kind=kind,
            level=w.level.value,
            user_id=user_id,
            note=note,
            recipients=[r.as_dict() for r in recipients or []],
            detail=detail or {},
        )
        s.add(event)
        return event

    def notify(
        self,
        s: Session,
        w: SensorWarning,
        org: Organisation | None,
        bus_kind: str,
        what: str,
        recipients: list[Recipient],
        extra: str = "",
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Queue the notices of one event (recipients + global webhooks); the bus payload."""
        body_data = {**summary(w, org.path if org else None), **(data or {})}
        subject, body = compose(w, org.name if org else "", what, self.tz, extra)
        rows = queue_notices(
            s,
            recipients,
            subject,
            body,
            {"kind": bus_kind, "event": what, "warning": body_data},
            w.id,
            self.webhooks,
            w.org_id,
        )
        self.notices_queued += len(rows)
        body_data["recipients"] = [r.as_dict() for r in recipients]
        body_data["event"] = what
        return body_data

    def _warning(self, s: Session, op: Op) -> SensorWarning | None:
        """The op's warning, unless it is gone or closed (then a late op changes nothing)."""
        w = s.scalar(select(SensorWarning).where(SensorWarning.warning_id == op.warning_id))
        if w is None or w.closed_at is not None:
            return None
        return w

    def _reach(self, s: Session, w: SensorWarning, kind: str, at: datetime) -> list[Effect]:
        """Reaching a level (open or escalation): push to its recipients, relay red."""
        org = self.org(s, w.org_id)
        level_rule: LevelRule = rule(w.level)
        pushed = resolve(s, w.org_id, level_rule.push) if (org and level_rule.push) else []
        ui = [Recipient(org.id, org.path, ENTERPRISE, org.name)] if org else []
        self.record(s, w, kind, at, ui + pushed, detail=_reading(w))
        data = self.notify(s, w, org, f"warning.{kind}", kind, pushed)
        data["recipients"] = [r.as_dict() for r in ui + pushed]
        effects: list[Effect] = [(f"warning.{kind}", data)]
        if level_rule.relay_to and org is not None:
            city = resolve(s, w.org_id, level_rule.relay_to)
            w.relayed_at = at
            self.record(s, w, "relayed", at, city, note="relayed to the city monitoring system")
            relay = self.notify(s, w, org, "warning.notice", "relayed", city, data={"at": _iso(at)})
            effects.append(("warning.notice", relay))
        for device_id, channel_id in (w.detail or {}).get("camera_refs", []):
            label = f"{NAMES_ZH[w.level.value]} {(w.detail or {}).get('tag', '')} {w.cause}"
            s.add(
                RecordingBookmark(
                    device_id=device_id,
                    channel_id=channel_id,
                    at=at,
                    label=label[:200],
                    source="warning",
                    ref=w.warning_id,
                )
            )
        return effects

    # --- the ops --------------------------------------------------------------------

    def _open(self, s: Session, op: Op) -> list[Effect]:
        exists = s.scalar(select(SensorWarning.id).where(SensorWarning.warning_id == op.warning_id))
        if exists is not None:  # a retried batch that was committed after all
            return []
        level = WarningLevel(op.level)
        w = SensorWarning(
            warning_id=op.warning_id,
            sensor_pk=op.sensor_pk,
            org_id=op.org_id,
            level=level,
            peak_level=level,
            cause=op.cause,
            value=op.value,
            threshold=op.threshold,
            active=True,
            raised_at=op.at,
            level_since=op.at,
            notice_count=0,
            detail={**op.detail, **camera_detail(op.cameras)},
        )
        s.add(w)
        s.flush()
        return self._reach(s, w, "opened", op.at)

    def _escalate(self, s: Session, op: Op) -> list[Effect]:
        w = self._warning(s, op)
        if w is None:
            return []
        self._set_level(w, op)
        w.escalated_at = op.at
        w.detail = {**(w.detail or {}), **camera_detail(op.cameras)}  # as linked now
        if RANK[op.level] > RANK[w.peak_level.value]:
            w.peak_level = WarningLevel(op.level)
        return self._reach(s, w, "escalated", op.at)

    def _downgrade(self, s: Session, op: Op) -> list[Effect]:
        w = self._warning(s, op)
        if w is None:
            return []
        before = w.level.value
        self._set_level(w, op)
        return self._calmer(s, w, op, "downgraded", {"from": before})

    def _clear(self, s: Session, op: Op) -> list[Effect]:
        w = self._warning(s, op)
        if w is None:
            return []
        w.active = False
        w.cleared_at = op.at
        return self._calmer(s, w, op, "cleared", {"value": op.value})

    def _calmer(
        self, s: Session, w: SensorWarning, op: Op, kind: str, detail: dict[str, Any]
    ) -> list[Effect]:
        """Downgrade or clear: its clock stops; after handling it is 处置降级."""
        note = ""
        if w.handling in (HandlingState.acknowledged, HandlingState.handled):
            note = HANDLED_DOWNGRADE
            detail = {**detail, "after_handling": w.handling.value}
        self.record(s, w, kind, op.at, note=note, detail={**detail, **_reading(w)})
        org = self.org(s, w.org_id)
        data = self.notify(s, w, org, f"warning.{kind}", kind, [], data={"note": note})
        return [(f"warning.{kind}", data)]

    def _set_level(self, w: SensorWarning, op: Op) -> None:
        w.level = WarningLevel(op.level)
        w.cause, w.value, w.threshold = op.cause, op.value, op.threshold
        w.level_since = op.at  # the new level's clock starts now
        w.notice_count = 0  # notices on the current level's clock

    def _note(self, s: Session, op: Op, kind: str, note: str) -> list[Effect]:
        w = self._warning(s, op)
        if w is None:
            return []
        self.record(s, w, kind, op.at, note=note, detail=op.detail)
        org = self.org(s, w.org_id)
        extra = {"note": note, **op.detail}
        data = self.notify(s, w, org, "warning.updated", kind, [], note, extra)
        return [("warning.updated", data)]

    def _offline(self, s: Session, op: Op) -> list[Effect]:
        return self._note(s, op, "offline", "point offline: the warning stays open")

    def _online(self, s: Session, op: Op) -> list[Effect]:
        return self._note(s, op, "online", "point back online")

    def _camera(self, s: Session, op: Op) -> list[Effect]:
        return self._note(s, op, "camera", op.detail.get("error", "camera unreachable"))

    def _snapshot(self, s: Session, op: Op) -> list[Effect]:
        channel, key = op.detail["channel_id"], op.detail["snapshot_key"]
        mark = s.scalar(
            select(RecordingBookmark)
            .where(RecordingBookmark.ref == op.warning_id, RecordingBookmark.source == "warning")
            .where(
                RecordingBookmark.device_id == op.detail.get("device_id", ""),
                RecordingBookmark.channel_id == channel,
                RecordingBookmark.at == op.at,
            )
        )
        w = s.scalar(select(SensorWarning).where(SensorWarning.warning_id == op.warning_id))
        if mark is None or w is None:
            return []
        mark.snapshot_key = key
        org = self.org(s, w.org_id)
        data = {
            **summary(w, org.path if org else None),
            "event": "snapshot",
            "device_id": mark.device_id,
            "channel_id": channel,
            "bookmark_id": mark.id,
            "snapshot_url": snapshot_url(w.warning_id, mark.id),
        }
        return [("warning.updated", data)]


def snapshot_url(warning_id: str, bookmark_id: int) -> str:
    return f"/api/warnings/{warning_id}/snapshots/{bookmark_id}"


def _reading(w: SensorWarning) -> dict[str, Any]:
    return {"cause": w.cause, "value": w.value, "threshold": w.threshold}


def _iso(at: datetime) -> str:
    return at.isoformat()


def load_open(s: Session) -> list[tuple[int, str, str, datetime, str]]:
    """Open episodes, newest per point; an older duplicate (a crash mid-way) is closed out."""
    rows = s.scalars(
        select(SensorWarning)
        .where(SensorWarning.active.is_(True), SensorWarning.closed_at.is_(None))
        .where(SensorWarning.sensor_pk.is_not(None))
        .order_by(SensorWarning.raised_at.desc(), SensorWarning.id.desc())
    ).all()
    out: list[tuple[int, str, str, datetime, str]] = []
    newer: dict[int, datetime] = {}  # sensor → raise time of its newest open episode
    for w in rows:
        assert w.sensor_pk is not None
        if w.sensor_pk in newer:
            w.active = False
            w.cleared_at = newer[w.sensor_pk]
            note = "superseded by a newer warning of the same point at restart"
            s.add(WarningEvent(warning_pk=w.id, kind="cleared", level=w.level.value, note=note))
            continue
        newer[w.sensor_pk] = w.raised_at
        out.append((w.sensor_pk, w.warning_id, w.level.value, w.raised_at, w.cause))
    return out
