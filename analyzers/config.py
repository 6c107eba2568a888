"""Per-camera analysis config (``Channel.analysis`` JSON), validated with pydantic.

Coordinates are normalised to 0..1 of the frame.  Times are seconds of video time.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .camera_detector import DetectOptions

Point = tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]]
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TimeWindow(Strict):
    """A daily window in the server's timezone; ``end`` < ``start`` wraps past midnight."""

    start: str = "00:00"
    end: str = "23:59"
    days: list[Annotated[int, Field(ge=0, le=6)]] = [0, 1, 2, 3, 4, 5, 6]  # Monday = 0

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError("must be HH:MM (24 h)")
        return v

    def contains(self, at: datetime) -> bool:
        minute = at.hour * 60 + at.minute
        s = int(self.start[:2]) * 60 + int(self.start[3:])
        e = int(self.end[:2]) * 60 + int(self.end[3:])
        if s <= e:
            return at.weekday() in self.days and s <= minute <= e
        if minute >= s:
            return at.weekday() in self.days
        return (at.weekday() - 1) % 7 in self.days and minute <= e


class RuleBase(Strict):
    name: str = ""  # unique per camera; defaults to the type
    enabled: bool = True
    zones: list[str] = []  # names from AnalysisConfig.zones; empty → whole frame
    min_score: float = Field(0.4, gt=0, le=1)
    confirm_s: float = Field(2.0, ge=0)  # rule must hold this long before the alarm
    clear_s: float = Field(5.0, ge=0)  # rule must be false this long before the clear
    cooldown_s: float = Field(30.0, ge=0)  # no new alarm this long after a clear
    fps: float | None = Field(None, gt=0, le=30)  # sampling this rule wants; None → camera's
    schedule: str | None = None  # name from AnalysisConfig.schedules; None → always
    alarm_type: str | None = Field(None, pattern=r"^\d{1,2}$")  # only for uncoded rules

    @property
    def key(self) -> str:
        return self.name or self.type  # type: ignore[attr-defined]


PresenceType = Literal["fire", "smoke", "no_helmet", "phone", "smoking", "no_workwear"]

DEFAULT_LABEL = {
    "fire": "fire",
    "smoke": "smoke",
    "no_helmet": "no_helmet",
    "phone": "phone",
    "smoking": "cigarette",
    "no_workwear": "no_workwear",
}


class PresenceRule(RuleBase):
    """Class seen with score ≥ min_score in ≥ k of the last n sampled frames."""

    type: PresenceType
    label: str = ""  # detector label; empty → the default for the type
    k: int = Field(3, ge=1)
    n: int = Field(5, ge=1)
    confirm_s: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _k_le_n(self) -> PresenceRule:
        if self.k > self.n:
            raise ValueError("k must be <= n")
        if not self.label:
            self.label = DEFAULT_LABEL[self.type]
        return self


class IntrusionRule(RuleBase):
    type: Literal["intrusion"]
    min_count: int = Field(1, ge=1)
    confirm_s: float = Field(1.0, ge=0)


class FenceRule(RuleBase):
    """A person crosses ``line`` or stands inside a fence polygon (``zones``)."""

    type: Literal["climbing_fence"]
    line: str | None = None  # name from AnalysisConfig.lines
    # which crossings count, seen on the picture facing along the line from its first point
    direction: Literal["both", "left_to_right", "right_to_left"] = "both"
    confirm_s: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _needs_geometry(self) -> FenceRule:
        if not self.line and not self.zones:
            raise ValueError("climbing_fence needs a line or a fence zone")
        return self


class GatheringRule(RuleBase):
    type: Literal["gathering"]
    min_people: int = Field(5, ge=2)
    confirm_s: float = Field(30.0, ge=0)  # T: at least min_people for this long


class OffDutyRule(RuleBase):
    """Nobody in the duty zone for ``confirm_s`` (T) while the schedule is on."""

    type: Literal["off_duty"]
    min_people: int = Field(1, ge=1)
    confirm_s: float = Field(60.0, ge=0)

    @model_validator(mode="after")
    def _needs_zone(self) -> OffDutyRule:
        if not self.zones:
            raise ValueError("off_duty needs a duty zone")
        return self


class SleepingRule(RuleBase):
    """A person lying (model hint) or motionless for ``confirm_s``; reported as off duty (no code
    of its own in either table), with the reason in the alarm record."""

    type: Literal["sleeping"]
    motion_px: float = Field(0.01, ge=0)  # normalised centre movement counted as still
    confirm_s: float = Field(120.0, ge=0)


class ExtinguisherRule(RuleBase):
    """Extinguisher gone from its place: a model class, or SSIM against a reference picture."""

    type: Literal["extinguisher_missing"]
    mode: Literal["model", "reference"] = "reference"
    label: str = "extinguisher"
    ssim_min: float = Field(0.55, gt=0, lt=1)  # below → the region changed (gone)
    confirm_s: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _needs_region(self) -> ExtinguisherRule:
        if len(self.zones) != 1:
            raise ValueError("extinguisher_missing needs exactly one zone: its place")
        return self


class StaticDischargeRule(RuleBase):
    """Someone works at the unloading point before an operator dwelt at the discharge post."""

    type: Literal["static_discharge"]
    discharge_zone: str
    unloading_zone: str
    required_s: float = Field(900.0, gt=0)  # dwell required at the static-discharge post
    reset_s: float = Field(600.0, gt=0)  # both zones empty this long → next tanker, start over
    confirm_s: float = Field(5.0, ge=0)  # work at the unloading point this long counts as started


Rule = Annotated[
    PresenceRule
    | IntrusionRule
    | FenceRule
    | GatheringRule
    | OffDutyRule
    | SleepingRule
    | ExtinguisherRule
    | StaticDischargeRule,
    Field(discriminator="type"),
]


class Sampling(Strict):
    mode: Literal["keyframes", "fps"] = "keyframes"
    fps: float = Field(1.0, gt=0, le=30)


class MotionGate(Strict):
    """Skip inference when the frame barely changed (mean abs diff of a 64×36 grey thumbnail)."""

    enabled: bool = False
    threshold: float = Field(2.0, ge=0, le=255)


class Detect(Strict):
    """How the person model looks at the frame (measured per lever with ``vms eval``).

    Defaults from the labelled frames of vtest.avi: the whole frame at 640 (int8 on CPU) with
    the tracker finds 94 % of the people at 100 % precision for ~61 ms of one core; 320 finds
    3 %.  Windows at the camera's own resolution (``tiles``) help where 640 is still too coarse
    (1080p and larger cameras, distant people), at one model pass per window.
    """

    tiles: Literal["off", "motion", "grid"] = "off"  # person windows: where it moved, or all
    tile_scale: float = Field(1.0, ge=0.5, le=4)  # window = input_size / tile_scale frame px
    max_tiles: int = Field(4, ge=1, le=16)
    track: bool = True  # ByteTrack-style: weak detections continue people already found

    def options(self) -> DetectOptions:
        return DetectOptions(self.tiles, self.tile_scale, self.max_tiles, self.track)


class AnalysisConfig(Strict):
    enabled: bool = False
    input_size: Literal[320, 640] = 640
    sample: Sampling = Sampling()
    motion_gate: MotionGate = MotionGate()
    detect: Detect = Detect()
    zones: dict[str, list[Point]] = {}
    lines: dict[str, list[Point]] = {}
    schedules: dict[str, list[TimeWindow]] = {}
    rules: list[Rule] = []

    @field_validator("zones")
    @classmethod
    def _polygons(cls, v: dict[str, list[Point]]) -> dict[str, list[Point]]:
        for name, poly in v.items():
            if len(poly) < 3:
                raise ValueError(f"zone {name!r} needs at least 3 points")
        return v

    @field_validator("lines")
    @classmethod
    def _lines(cls, v: dict[str, list[Point]]) -> dict[str, list[Point]]:
        for name, line in v.items():
            if len(line) < 2:
                raise ValueError(f"line {name!r} needs at least 2 points")
        return v

    @model_validator(mode="after")
    def _references(self) -> AnalysisConfig:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.key in seen:
                raise ValueError(f"two rules named {rule.key!r}: give them distinct names")
            seen.add(rule.key)
            names = list(rule.zones)
            if isinstance(rule, StaticDischargeRule):
                names += [rule.discharge_zone, rule.unloading_zone]
            for z in names:
                if z not in self.zones:
                    raise ValueError(f"rule {rule.key!r}: unknown zone {z!r}")
            if isinstance(rule, FenceRule) and rule.line and rule.line not in self.lines:
                raise ValueError(f"rule {rule.key!r}: unknown line {rule.line!r}")
            if rule.schedule and rule.schedule not in self.schedules:
                raise ValueError(f"rule {rule.key!r}: unknown schedule {rule.schedule!r}")
        return self

    def wanted_fps(self) -> float:
        """0 → keyframes only; otherwise the highest rate any rule or the camera asks for."""
        rates = [r.fps for r in self.rules if r.enabled and r.fps]
        if self.sample.mode == "fps":
            rates.append(self.sample.fps)
        return max(rates, default=0.0)

    def labels(self) -> set[str]:
        """Detector labels the enabled rules need."""
        out: set[str] = set()
        for r in self.rules:
            if not r.enabled:
                continue
            if isinstance(r, PresenceRule):
                out.add(r.label)
            elif isinstance(r, ExtinguisherRule):
                if r.mode == "model":
                    out.add(r.label)
            else:
                out.add("person")
        return out
