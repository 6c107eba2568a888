"""人员聚集 gathering: at least N people in the zone (held for confirm_s = T)."""

from __future__ import annotations

from ..config import GatheringRule
from .base import FrameView, Outcome, Rule


class Gathering(Rule):
    cfg: GatheringRule

    def evaluate(self, frame: FrameView) -> Outcome:
        inside = self.people(frame)
        return Outcome(len(inside) >= self.cfg.min_people, inside, f"{len(inside)} people")
