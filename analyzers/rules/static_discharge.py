"""静电释放时间未达到规定时长开始进行卸油作业 (gas station, code 14).

An operator must stand at the static-discharge post for ``required_s`` before anyone works at
the unloading point.  People are tracked; each track's time at the post adds up.  When both
zones stay empty for ``reset_s`` the next tanker starts a new count.
"""

from __future__ import annotations

from ..config import AnalysisConfig, StaticDischargeRule
from ..tracker import IouTracker
from .base import FrameView, Outcome, Rule


class StaticDischarge(Rule):
    cfg: StaticDischargeRule

    def __init__(self, cfg: StaticDischargeRule, camera: AnalysisConfig) -> None:
        super().__init__(cfg, camera)
        self.post = [camera.zones[cfg.discharge_zone]]
        self.unloading = [camera.zones[cfg.unloading_zone]]
        self.tracker = IouTracker(max_age_s=10.0)
        self.dwell: dict[int, float] = {}  # track id → seconds at the post
        self.discharged = False
        self._prev_t: float | None = None
        self._empty_since: float | None = None

    def evaluate(self, frame: FrameView) -> Outcome:
        dt = 0.0 if self._prev_t is None else max(0.0, frame.t - self._prev_t)
        self._prev_t = frame.t
        tracks = self.tracker.update(self.people(frame, zones=[]), frame.t)
        at_post = [t for t in tracks if self.in_zones(t.det, self.post)]
        working = [t for t in tracks if self.in_zones(t.det, self.unloading)]
        for t in at_post:
            self.dwell[t.id] = self.dwell.get(t.id, 0.0) + dt
            if self.dwell[t.id] >= self.cfg.required_s:
                self.discharged = True
        if at_post or working:
            self._empty_since = None
        elif self._empty_since is None:
            self._empty_since = frame.t
        elif frame.t - self._empty_since >= self.cfg.reset_s:
            self.discharged, self.dwell = False, {}
        best = max(self.dwell.values(), default=0.0)
        active = bool(working) and not self.discharged
        return Outcome(
            active, [t.det for t in working], f"discharge {best:.0f}/{self.cfg.required_s:.0f} s"
        )
