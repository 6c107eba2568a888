"""人员离岗 off duty: fewer than min_people in the duty zone (for confirm_s = T, in schedule)."""

from __future__ import annotations

from ..config import OffDutyRule
from .base import FrameView, Outcome, Rule


class OffDuty(Rule):
    cfg: OffDutyRule

    def evaluate(self, frame: FrameView) -> Outcome:
        inside = self.people(frame)
        return Outcome(len(inside) < self.cfg.min_people, inside, f"{len(inside)} on duty")
