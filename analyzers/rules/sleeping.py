"""睡岗 sleeping on post: a person the model marks as lying, or one that has not moved.

Neither code table has this behaviour (spec/alarms.md §5.1): it goes out under the profile's
off-duty code (5 / gas station 3) with the reason in the record (``analyzers.catalog``).
"""

from __future__ import annotations

from ..config import AnalysisConfig, SleepingRule
from ..tracker import IouTracker
from .base import FrameView, Outcome, Rule

STILL_WINDOW_S = 10.0  # a track must be this old, and still over it, to count as motionless


class Sleeping(Rule):
    cfg: SleepingRule

    def __init__(self, cfg: SleepingRule, camera: AnalysisConfig) -> None:
        super().__init__(cfg, camera)
        self.tracker = IouTracker(max_age_s=STILL_WINDOW_S)

    def evaluate(self, frame: FrameView) -> Outcome:
        tracks = self.tracker.update(self.people(frame), frame.t)
        hits = []
        for t in tracks:
            recent = [p for ts, p in t.history if frame.t - ts <= STILL_WINDOW_S]
            still = frame.t - t.first_seen >= STILL_WINDOW_S and (
                max(abs(a[0] - b[0]) + abs(a[1] - b[1]) for a in recent for b in recent)
                <= self.cfg.motion_px
            )
            if t.det.hint == "lying" or still:
                hits.append(t.det)
        return Outcome(bool(hits), hits, f"sleeping on post: {len(hits)} lying or still")
