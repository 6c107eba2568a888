"""ByteTrack-style association of people across sampled frames, so one weak keyframe loses no one.

The person model scores the same pedestrian 0.6 on one keyframe and 0.3 on the next.  Like
ByteTrack (Zhang et al. 2022), detections above ``high`` start and continue tracks, and those
between ``low`` and ``high`` may only continue a track that already exists.  A track that finds no
detection is not reported (no ghost boxes) but is kept for ``keep`` samples, so a weak detection
on the next keyframe still continues it.  Keyframes come seconds apart and a walker moves about
a body width meanwhile, so a pair whose boxes do not overlap enough may still match by the
distance of their centres relative to the person's height.  A track reports the best score it
has had, so the rules' ``min_score`` sees a person found once with confidence as that person.
Weak detections that continue no track are passed on unchanged: the tracker only ever raises
scores, so a rule configured with a low ``min_score`` sees what it saw without the tracker.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from .detector import Detection
from .geometry import iou


@dataclass
class _Track:
    id: int
    det: Detection
    peak: float
    hits: int = 1
    missed: int = 0


class ByteTracker:
    def __init__(
        self,
        high: float = 0.4,
        low: float = 0.2,
        iou_min: float = 0.3,
        keep: int = 1,
        max_step: float = 0.8,  # centre distance / box height that still matches
    ) -> None:
        self.high, self.low, self.iou_min, self.keep = high, low, iou_min, keep
        self.max_step = max_step
        self.tracks: list[_Track] = []
        self._ids = itertools.count(1)

    def reset(self) -> None:
        self.tracks = []

    def _match(self, tracks: list[_Track], dets: list[Detection]) -> list[tuple[int, int]]:
        pairs = sorted(
            (
                (self._affinity(t.det, d), ti, di)
                for ti, t in enumerate(tracks)
                for di, d in enumerate(dets)
                if t.det.label == d.label
            ),
            reverse=True,
        )
        used_t: set[int] = set()
        used_d: set[int] = set()
        out = []
        for score, ti, di in pairs:
            if score <= 0:
                break
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            out.append((ti, di))
        return out

    def _affinity(self, a: Detection, b: Detection) -> float:
        """IoU when the boxes overlap well; else a small score falling with the centre step."""
        overlap = iou(a.box, b.box)
        if overlap >= self.iou_min:
            return overlap
        height = max(a.box[3] - a.box[1], b.box[3] - b.box[1], 1e-6)
        dx = (a.box[0] + a.box[2] - b.box[0] - b.box[2]) / 2
        dy = (a.box[1] + a.box[3] - b.box[1] - b.box[3]) / 2
        step = (dx * dx + dy * dy) ** 0.5 / height
        return 0.0 if step > self.max_step else 0.01 * (1 - step / self.max_step)

    def update(self, dets: list[Detection]) -> list[Detection]:
        """Feed one sampled frame's detections (of the tracked labels); returns who is there."""
        high = [d for d in dets if d.score >= self.high]
        low = [d for d in dets if self.low <= d.score < self.high]
        out: list[Detection] = []
        matched: set[int] = set()
        for ti, di in self._match(self.tracks, high):
            t = self.tracks[ti]
            t.det, t.peak, t.hits, t.missed = high[di], max(t.peak, high[di].score), t.hits + 1, 0
            matched.add(ti)
        rest = [i for i in range(len(self.tracks)) if i not in matched]
        for ri, di in self._match([self.tracks[i] for i in rest], low):
            t = self.tracks[rest[ri]]
            t.det, t.hits, t.missed = low[di], t.hits + 1, 0
            matched.add(rest[ri])
        used = {id(self.tracks[i].det) for i in matched}
        alive = []
        for i, t in enumerate(self.tracks):
            if i not in matched:
                t.missed += 1
                if t.missed > self.keep:
                    continue
            alive.append(t)
        for d in high:
            if id(d) not in used:
                alive.append(_Track(next(self._ids), d, d.score))
        self.tracks = alive
        for t in self.tracks:
            if t.missed == 0:
                out.append(replace(t.det, score=max(t.det.score, t.peak)))
        out += [d for d in low if id(d) not in used]
        return out
