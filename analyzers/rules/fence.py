"""翻越围栏 climbing a fence: a tracked person crosses the fence line or stands on the fence."""

from __future__ import annotations

from ..config import AnalysisConfig, FenceRule
from ..geometry import crosses_polyline
from ..tracker import IouTracker
from .base import FrameView, Outcome, Rule


class ClimbingFence(Rule):
    cfg: FenceRule

    def __init__(self, cfg: FenceRule, camera: AnalysisConfig) -> None:
        super().__init__(cfg, camera)
        self.line = camera.lines[cfg.line] if cfg.line else None
        self.tracker = IouTracker()

    def evaluate(self, frame: FrameView) -> Outcome:
        everyone = self.people(frame, zones=[])
        tracks = self.tracker.update(everyone, frame.t)
        hits = []
        for t in tracks:
            on_fence = bool(self.zones) and self.in_zones(t.det)
            crossed = (
                self.line is not None
                and len(t.history) >= 2
                and crosses_polyline(
                    t.history[-2][1], t.history[-1][1], self.line, self.cfg.direction
                )
            )
            if on_fence or crossed:
                hits.append(t.det)
        return Outcome(bool(hits), hits, f"{len(hits)} crossing")
