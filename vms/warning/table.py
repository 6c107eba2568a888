"""The escalation table of spec/sensors.md §4 as data: the one place the rules live.

Per level: pushed immediately to (besides the enterprise's own UI) → tracked by → not downgraded
after → notice to → repeat → on-site verification after:

- blue: nobody else (the enterprise manages it) → enterprise → no timers.
- yellow: safety_dept + hq → safety_dept → 1 h → safety_dept + hq → 1 h → 24 h.
- orange: industry_regulator + safety_dept + hq → industry_regulator → 1 h → industry_regulator
  → 1 h → 12 h.
- red: emergency_bureau + industry_regulator + safety_dept + hq, and relayed at once to the city
  monitoring_center → industry_regulator → 30 min → industry_dept → 30 min → 2 h.

Clock rules (ours, where the seed is silent): a level's clock starts when the warning reaches
that level (``level_since``); an escalation starts the new level's clock and pushes at once to
the new level's recipients; a downgrade stops the higher level's clock and starts the lower
level's from the downgrade; a clear stops every clock.  The on-site verification request goes
to the tracker once per level clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.sensor_models import Duty, WarningLevel

ENTERPRISE = "enterprise"  # the tracker of blue warnings: the enterprise itself, no duty

MINUTE = 60.0
HOUR = 3600.0


@dataclass(frozen=True)
class LevelRule:
    """One row of the escalation table."""

    level: WarningLevel
    push: tuple[Duty, ...]  # pushed immediately on reaching the level (plus the enterprise UI)
    tracker: str  # ENTERPRISE or a Duty value
    notice_after_s: float | None  # not downgraded after this → automatic notice
    notice_to: tuple[Duty, ...]
    repeat_s: float | None  # ... repeated this often until downgraded
    onsite_after_s: float | None  # still not downgraded → on-site verification request
    relay_to: tuple[Duty, ...] = ()  # relayed in real time on reaching the level

    @property
    def onsite_to(self) -> tuple[Duty, ...]:
        """The on-site verification request goes to the tracker."""
        return () if self.tracker == ENTERPRISE else (Duty(self.tracker),)

    @property
    def timed(self) -> bool:
        return self.notice_after_s is not None or self.onsite_after_s is not None


ESCALATION: dict[WarningLevel, LevelRule] = {
    WarningLevel.blue: LevelRule(
        level=WarningLevel.blue,
        push=(),
        tracker=ENTERPRISE,
        notice_after_s=None,
        notice_to=(),
        repeat_s=None,
        onsite_after_s=None,
    ),
    WarningLevel.yellow: LevelRule(
        level=WarningLevel.yellow,
        push=(Duty.safety_dept, Duty.hq),
        tracker=Duty.safety_dept.value,
        notice_after_s=1 * HOUR,
        notice_to=(Duty.safety_dept, Duty.hq),
        repeat_s=1 * HOUR,
        onsite_after_s=24 * HOUR,
    ),
    WarningLevel.orange: LevelRule(
        level=WarningLevel.orange,
        push=(Duty.industry_regulator, Duty.safety_dept, Duty.hq),
        tracker=Duty.industry_regulator.value,
        notice_after_s=1 * HOUR,
        notice_to=(Duty.industry_regulator,),
        repeat_s=1 * HOUR,
        onsite_after_s=12 * HOUR,
    ),
    WarningLevel.red: LevelRule(
        level=WarningLevel.red,
        push=(Duty.emergency_bureau, Duty.industry_regulator, Duty.safety_dept, Duty.hq),
        tracker=Duty.industry_regulator.value,
        notice_after_s=30 * MINUTE,
        notice_to=(Duty.industry_dept,),
        repeat_s=30 * MINUTE,
        onsite_after_s=2 * HOUR,
        relay_to=(Duty.monitoring_center,),
    ),
}

# Ranks make levels comparable: 0 is "no warning".
LEVEL_NAMES: tuple[str, ...] = ("", "blue", "yellow", "orange", "red")
RANK: dict[str, int] = {name: i for i, name in enumerate(LEVEL_NAMES)}
NAMES_ZH: dict[str, str] = {
    "blue": "蓝色预警(低风险)",
    "yellow": "黄色预警(一般风险)",
    "orange": "橙色预警(较大风险)",
    "red": "红色预警(重大风险)",
}


def rule(level: str | WarningLevel) -> LevelRule:
    return ESCALATION[WarningLevel(level)]


def as_rows() -> list[dict[str, object]]:
    """The table for the API and the UI."""
    return [
        {
            "level": r.level.value,
            "name": NAMES_ZH[r.level.value],
            "push": [d.value for d in r.push],
            "tracker": r.tracker,
            "notice_after_s": r.notice_after_s,
            "notice_to": [d.value for d in r.notice_to],
            "repeat_s": r.repeat_s,
            "onsite_after_s": r.onsite_after_s,
            "onsite_to": [d.value for d in r.onsite_to],
            "relay_to": [d.value for d in r.relay_to],
        }
        for r in ESCALATION.values()
    ]
