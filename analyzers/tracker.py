"""A small IoU tracker: enough to follow a few people between sampled frames.

Greedy matching by IoU (falling back to centre distance for fast movers at low fps); tracks
not seen for ``max_age_s`` are dropped.  Good for dwell times, not for re-identification.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .detector import Detection
from .geometry import centre, iou


@dataclass
class Track:
    id: int
    det: Detection
    first_seen: float
    last_seen: float
    history: list[tuple[float, tuple[float, float]]] = field(default_factory=list)  # (t, foot)
    dwell: dict[str, float] = field(default_factory=dict)  # zone → seconds inside

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.det.box


class IouTracker:
    def __init__(self, iou_min: float = 0.2, max_dist: float = 0.15, max_age_s: float = 5.0):
        self.iou_min = iou_min
        self.max_dist = max_dist
        self.max_age_s = max_age_s
        self.tracks: dict[int, Track] = {}
        self._ids = itertools.count(1)

    def update(self, dets: list[Detection], now: float) -> list[Track]:
        """Assign detections to tracks; returns the tracks seen in this frame."""
        pairs = []
        for tid, t in self.tracks.items():
            for j, d in enumerate(dets):
                score = iou(t.box, d.box)
                if score < self.iou_min:
                    (cx, cy), (dx, dy) = centre(t.box), centre(d.box)
                    dist = ((cx - dx) ** 2 + (cy - dy) ** 2) ** 0.5
                    score = 0.0 if dist > self.max_dist else 0.01 * (1 - dist / self.max_dist)
                if score > 0:
                    pairs.append((score, tid, j))
        pairs.sort(reverse=True)
        used_t: set[int] = set()
        used_d: set[int] = set()
        seen = []
        for _, tid, j in pairs:
            if tid in used_t or j in used_d:
                continue
            used_t.add(tid)
            used_d.add(j)
            t = self.tracks[tid]
            t.det, t.last_seen = dets[j], now
            seen.append(t)
        for j, d in enumerate(dets):
            if j not in used_d:
                t = Track(next(self._ids), d, now, now)
                self.tracks[t.id] = t
                seen.append(t)
        for tid in [k for k, t in self.tracks.items() if now - t.last_seen > self.max_age_s]:
            del self.tracks[tid]
        for t in seen:
            x1, _, x2, y2 = t.box
            t.history.append((now, ((x1 + x2) / 2, y2)))
            del t.history[:-32]
        return seen
