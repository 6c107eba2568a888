"""区域入侵 area intrusion: a person standing inside a restricted polygon."""

from __future__ import annotations

from ..config import IntrusionRule
from .base import FrameView, Outcome, Rule


class Intrusion(Rule):
    cfg: IntrusionRule

    def evaluate(self, frame: FrameView) -> Outcome:
        inside = self.people(frame)
        return Outcome(len(inside) >= self.cfg.min_count, inside, f"{len(inside)} in zone")
