"""The one interface every rule implements, and the helpers they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ..config import AnalysisConfig, RuleBase
from ..detector import Detection
from ..geometry import centre, foot, point_in_polygon


@dataclass
class FrameView:
    """What a rule sees of one analysed frame."""

    t: float  # stream time, seconds
    local_time: datetime  # wall clock in the server's timezone (schedules)
    detections: list[Detection]
    image: Callable[[], np.ndarray | None] = lambda: None  # the BGR frame, fetched on demand


@dataclass
class Outcome:
    active: bool
    boxes: list[Detection] = field(default_factory=list)
    note: str = ""


class Rule(ABC):
    """Turns a sequence of frames into 'the condition holds now' (true/false)."""

    def __init__(self, cfg: RuleBase, camera: AnalysisConfig) -> None:
        self.cfg = cfg
        self.camera = camera
        self.zones = [camera.zones[z] for z in cfg.zones]
        self._last_t: float | None = None
        self._last: Outcome = Outcome(False)

    def in_zones(
        self, det: Detection, zones: list[list[tuple[float, float]]] | None = None
    ) -> bool:
        """People count where they stand (feet); objects where their centre is."""
        zones = self.zones if zones is None else zones
        if not zones:
            return True
        p = foot(det.box) if det.label == "person" else centre(det.box)
        return any(point_in_polygon(p, z) for z in zones)

    def people(self, frame: FrameView, zones: list[list[tuple[float, float]]] | None = None):
        return [
            d
            for d in frame.detections
            if d.label == "person" and d.score >= self.cfg.min_score and self.in_zones(d, zones)
        ]

    def scheduled(self, frame: FrameView) -> bool:
        if not self.cfg.schedule:
            return True
        return any(w.contains(frame.local_time) for w in self.camera.schedules[self.cfg.schedule])

    def __call__(self, frame: FrameView) -> Outcome:
        """Evaluate at the rule's own rate (``fps``); between samples the last outcome holds."""
        if self.cfg.fps and self._last_t is not None and frame.t - self._last_t < 1 / self.cfg.fps:
            return self._last
        self._last_t = frame.t
        self._last = self.evaluate(frame) if self.scheduled(frame) else Outcome(False, note="off")
        return self._last

    @abstractmethod
    def evaluate(self, frame: FrameView) -> Outcome: ...
