"""The escalation timers of spec/sensors.md §4, driven by :meth:`Escalator.tick`.

Every due action is computed from the warning's row alone — ``level_since`` (the level's
clock start), ``notice_count`` (notices sent on that clock), ``onsite_at`` — so the timers
survive a restart and never fire twice: the row is updated in the same transaction as the
history event and the queued notices, guarded by the values it was read with.

Warnings of a disabled (or deleted) point are suspended: their timers do not run.
Notices fall on fixed slots: ``level_since + notice_after + k × repeat``.  After a long
outage only the latest missed slot is sent (the history says how many were skipped).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.sensor_models import Sensor, SensorWarning, WarningLevel

from .recipients import resolve
from .store import Effect
from .table import LevelRule, rule

TIMED_LEVELS = [level for level in WarningLevel if rule(level).timed]


@dataclass(frozen=True)
class Due:
    """One action a warning owes now."""

    kind: str  # notice | onsite
    at: datetime  # the slot it belongs to
    index: int = 0  # notice number on this level's clock (1-based)
    missed: int = 0  # earlier slots that were never sent (the node was down)


def next_notice_at(r: LevelRule, level_since: datetime, notice_count: int) -> datetime | None:
    """When the next automatic notice of this level's clock falls due."""
    if r.notice_after_s is None:
        return None
    step = r.repeat_s or 0.0
    if notice_count and not step:
        return None
    return level_since + timedelta(seconds=r.notice_after_s + notice_count * step)


def onsite_due_at(
    r: LevelRule, level_since: datetime, onsite_at: datetime | None
) -> datetime | None:
    """When the on-site verification request falls due (None: none or already requested)."""
    if r.onsite_after_s is None or (onsite_at is not None and onsite_at >= level_since):
        return None
    return level_since + timedelta(seconds=r.onsite_after_s)


def due_actions(
    r: LevelRule,
    level_since: datetime,
    notice_count: int,
    onsite_at: datetime | None,
    now: datetime,
) -> list[Due]:
    """What this warning owes at ``now`` (pure: the whole timer logic, tested cell by cell)."""
    out: list[Due] = []
    first = next_notice_at(r, level_since, 0)
    if first is not None and now >= first:
        step = r.repeat_s
        slot = math.floor((now - first).total_seconds() / step) if step else 0
        if slot >= notice_count:
            at = first + timedelta(seconds=slot * (step or 0))
            out.append(Due("notice", at, slot + 1, slot - notice_count))
    onsite = onsite_due_at(r, level_since, onsite_at)
    if onsite is not None and now >= onsite:
        out.append(Due("onsite", onsite))
    return out


class Escalator:
    """Runs the timers against the database; shares the engine's writer lock and store."""

    def __init__(self, engine: Any, clock: Callable[[], float] | None = None) -> None:
        self.engine = engine
        self.clock = clock or engine.clock or time.time
        self.fired = 0

    async def tick(self, now: float | None = None) -> list[dict[str, Any]]:
        """Fire every due notice and on-site request; what fired (for logs and tests)."""
        at = datetime.fromtimestamp(self.clock() if now is None else now, UTC)
        engine = self.engine
        async with engine.lock:
            fired, effects = await engine.db.run(lambda s: self._tick(s, at))
        engine.publish(effects)
        self.fired += len(fired)
        return fired

    def _tick(self, s: Session, now: datetime) -> tuple[list[dict[str, Any]], list[Effect]]:
        rows = s.scalars(
            select(SensorWarning)
            .join(Sensor, Sensor.id == SensorWarning.sensor_pk)
            .where(Sensor.enabled.is_(True))  # a disabled or deleted point is suspended
            .where(SensorWarning.active.is_(True), SensorWarning.cleared_at.is_(None))
            .where(SensorWarning.closed_at.is_(None), SensorWarning.level.in_(TIMED_LEVELS))
            .order_by(SensorWarning.id)
        ).all()
        fired: list[dict[str, Any]] = []
        effects: list[Effect] = []
        for w in rows:
            level_rule = rule(w.level)
            for due in due_actions(level_rule, w.level_since, w.notice_count, w.onsite_at, now):
                if not self._claim(s, w, due, now):
                    continue  # changed under us (a level change committed meanwhile)
                effects.append(self._act(s, w, level_rule, due, now))
                fired.append(
                    {
                        "warning_id": w.warning_id,
                        "kind": due.kind,
                        "level": w.level.value,
                        "at": due.at,
                        "index": due.index,
                    }
                )
        return fired, effects

    def _claim(self, s: Session, w: SensorWarning, due: Due, now: datetime) -> bool:
        """Mark the slot as sent, only if the row is still as we read it."""
        guard = update(SensorWarning).where(
            SensorWarning.id == w.id,
            SensorWarning.level_since == w.level_since,
            SensorWarning.level == w.level,
        )
        if due.kind == "notice":
            values: dict[str, Any] = {"notice_count": due.index, "last_notice_at": now}
            guard = guard.where(SensorWarning.notice_count == w.notice_count)
        else:
            values = {"onsite_at": now}
        done = s.execute(guard.values(values), execution_options={"synchronize_session": False})
        if not done.rowcount:
            return False
        for name, value in values.items():
            setattr(w, name, value)
        return True

    def _act(self, s: Session, w: SensorWarning, r: LevelRule, due: Due, now: datetime) -> Effect:
        store = self.engine.store
        duties = r.notice_to if due.kind == "notice" else r.onsite_to
        recipients = resolve(s, w.org_id, duties) if w.org_id is not None else []
        hours = (due.at - w.level_since).total_seconds() / 3600
        if due.kind == "notice":
            extra = f"#{due.index}, {w.level.value} for {hours:g} h without downgrade"
            if due.missed:
                extra += f" ({due.missed} earlier notice(s) missed while the node was down)"
        else:
            extra = f"{w.level.value} for {hours:g} h: on-site verification by {r.tracker}"
        detail = {"slot": due.at.isoformat(), "index": due.index, "missed": due.missed}
        store.record(s, w, due.kind, now, recipients, note=extra, detail=detail)
        org = store.org(s, w.org_id)
        data = store.notify(
            s, w, org, "warning.notice", due.kind, recipients, extra, data={"note": extra, **detail}
        )
        return ("warning.notice", data)
