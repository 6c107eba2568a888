"""Fire, smoke, no helmet, phone, smoking, no workwear: a class seen in ≥ k of the last n frames."""

from __future__ import annotations

from collections import deque

from ..config import AnalysisConfig, PresenceRule
from .base import FrameView, Outcome, Rule


class Presence(Rule):
    cfg: PresenceRule

    def __init__(self, cfg: PresenceRule, camera: AnalysisConfig) -> None:
        super().__init__(cfg, camera)
        self.window: deque[bool] = deque(maxlen=cfg.n)

    def evaluate(self, frame: FrameView) -> Outcome:
        hits = [
            d
            for d in frame.detections
            if d.label == self.cfg.label and d.score >= self.cfg.min_score and self.in_zones(d)
        ]
        self.window.append(bool(hits))
        count = sum(self.window)
        return Outcome(count >= self.cfg.k, hits, f"{count}/{len(self.window)} frames")
