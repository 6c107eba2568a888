"""Alarm/clear debouncing per (camera, rule): one ALARM_ID from raise to clear.

idle ──rule true──► pending ──true for confirm_s──► active (emit alarm, new uuid4)
active ──false for clear_s──► cooldown (emit clear, same id) ──cooldown_s──► idle
A rule that flickers inside confirm_s or clear_s emits nothing; cool-down stops flapping.
Times are the stream's own clock (seconds), so replayed or fast-fed video behaves the same.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass


class Phase(enum.Enum):
    idle = "idle"
    pending = "pending"
    active = "active"
    cooldown = "cooldown"


@dataclass(frozen=True)
class Transition:
    status: int  # 1 alarm, 0 clear (Table 4 ALARM_STATUS)
    alarm_id: str
    at: float


class AlarmState:
    def __init__(self, confirm_s: float, clear_s: float, cooldown_s: float) -> None:
        self.confirm_s = confirm_s
        self.clear_s = clear_s
        self.cooldown_s = cooldown_s
        self.phase = Phase.idle
        self.alarm_id: str | None = None
        self._since = 0.0  # start of the current pending / false streak / cooldown

    def update(self, active: bool, now: float) -> Transition | None:
        if self.phase is Phase.cooldown:
            if now - self._since < self.cooldown_s:
                return None
            self.phase = Phase.idle
        if self.phase is Phase.idle:
            if active:
                self.phase, self._since = Phase.pending, now
            else:
                return None
        if self.phase is Phase.pending:
            if not active:
                self.phase = Phase.idle
                return None
            if now - self._since >= self.confirm_s:
                self.phase = Phase.active
                self.alarm_id = str(uuid.uuid4())
                self._since = -1.0
                return Transition(1, self.alarm_id, now)
            return None
        # active
        if active:
            self._since = -1.0
            return None
        if self._since < 0:
            self._since = now
        if now - self._since >= self.clear_s:
            alarm_id = self.alarm_id or ""
            self.phase, self._since, self.alarm_id = Phase.cooldown, now, None
            return Transition(0, alarm_id, now)
        return None

    def resume(self, alarm_id: str) -> None:
        """Continue an alarm raised before a restart: active with its ALARM_ID, no new raise.

        The clear timer starts at the first false frame seen after the restart.
        """
        self.phase, self.alarm_id, self._since = Phase.active, alarm_id, -1.0

    def force_clear(self, now: float) -> Transition | None:
        """Clear an active alarm at once (rule removed, camera reconfigured or stopped)."""
        if self.phase is not Phase.active or self.alarm_id is None:
            self.phase = Phase.idle
            return None
        alarm_id, self.alarm_id = self.alarm_id, None
        self.phase, self._since = Phase.idle, now
        return Transition(0, alarm_id, now)
