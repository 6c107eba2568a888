"""One camera's detection step: whole frame + motion windows for the person model, then tracking.

Split in two so that a worker can batch every camera's crops into one session run per model:
:meth:`CameraDetector.plan` says which crops each model must see, the worker runs them (one
batch across cameras), and :meth:`CameraDetector.finish` maps window boxes back to the frame,
merges them and passes people through the tracker.  ``vms eval`` runs the same two steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .bytetrack import ByteTracker
from .detector import Detection
from .tiling import MotionRegions, Window, cut_at_edge, merge, plan_windows, to_frame

PERSON = "person"


@dataclass(frozen=True)
class DetectOptions:
    """How the person model looks at a frame (``AnalysisConfig.detect`` in the worker)."""

    tiles: str = "off"  # off | motion | grid
    tile_scale: float = 1.0  # window = model size / tile_scale frame pixels (1.0: native)
    max_tiles: int = 4
    track: bool = True
    track_low: float = 0.2  # weakest detection that may continue a track


@dataclass(frozen=True)
class ModelRef:
    """What the camera detector needs of a model: its key, input size and labels."""

    key: str  # the worker's key for the session (its path)
    size: int
    labels: frozenset[str]


Job = tuple[str, np.ndarray]  # (model key, crop)


class CameraDetector:
    def __init__(self, models: Sequence[ModelRef], options: DetectOptions) -> None:
        self.models = list(models)
        self.options = options
        self.motion = MotionRegions()
        self.tracker = ByteTracker(low=options.track_low)
        self._plan: list[tuple[ModelRef, Window | None]] = []
        self._shape: tuple[int, ...] = ()
        self.last_windows: list[Window] = []

    def reset(self) -> None:
        """A gap in the stream: the background and the tracks are out of date."""
        self.motion.reset()
        self.tracker.reset()

    def plan(self, img: np.ndarray) -> list[Job]:
        """The crops to run for this frame: the whole frame per model, plus person windows."""
        self._shape = img.shape
        self._plan = []
        jobs: list[Job] = []
        windows: list[Window] = []
        if self.options.tiles != "off" and any(PERSON in m.labels for m in self.models):
            if self.options.tiles == "grid":
                regions = [(0.0, 0.0, 1.0, 1.0)]
            else:
                regions = self.motion.update(img)
            size = next(m.size for m in self.models if PERSON in m.labels)
            windows = plan_windows(
                img.shape, regions, size, self.options.tile_scale, self.options.max_tiles
            )
        self.last_windows = windows
        for m in self.models:
            self._plan.append((m, None))
            jobs.append((m.key, img))
            if PERSON in m.labels:
                for w in windows:
                    self._plan.append((m, w))
                    jobs.append((m.key, img[w.y : w.y + w.h, w.x : w.x + w.w]))
        return jobs

    def finish(self, results: Sequence[list[Detection]]) -> list[Detection]:
        """Per job, in :meth:`plan` order, its detections → this frame's detections."""
        people: list[Detection] = []
        others: list[Detection] = []
        for (m, win), dets in zip(self._plan, results, strict=True):
            for d in dets:
                if win is not None:
                    if cut_at_edge(d, win, self._shape):
                        continue
                    d = to_frame(d, win, self._shape)
                (people if d.label == PERSON else others).append(d)
            del m
        people = merge(people)
        if self.options.track:
            people = self.tracker.update(people)
        return people + others

    def detect(self, img: np.ndarray, run: Callable[[str, list[np.ndarray]], list]) -> list:
        """Both steps for one frame, with ``run(model key, crops)`` → detections per crop."""
        jobs = self.plan(img)
        by_model: dict[str, list[int]] = {}
        for i, (key, _) in enumerate(jobs):
            by_model.setdefault(key, []).append(i)
        results: list[list[Detection]] = [[] for _ in jobs]
        for key, idx in by_model.items():
            for i, dets in zip(idx, run(key, [jobs[i][1] for i in idx]), strict=True):
                results[i] = dets
        return self.finish(results)
