"""灭火器未摆放在作业区域 extinguisher missing (gas station, code 13).

With a user model that has an ``extinguisher`` class: the class must be seen in its zone.
Without one: the zone is compared (structural similarity of a grey 64×64 crop) with a reference
taken from the first frame after the rule was configured, when the extinguisher is in place.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..config import AnalysisConfig, ExtinguisherRule
from .base import FrameView, Outcome, Rule

CROP = 64


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two grey images (Gaussian window, as Wang et al. 2004)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (7, 7), 1.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    va = blur(a * a) - mu_a**2
    vb = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (va + vb + c2)
    return float((num / den).mean())


def region(image: np.ndarray, poly: list[tuple[float, float]]) -> np.ndarray:
    h, w = image.shape[:2]
    xs = [p[0] for p in poly]
    ys = [p[1] for p in poly]
    x1, x2 = int(min(xs) * w), max(int(max(xs) * w), int(min(xs) * w) + 1)
    y1, y2 = int(min(ys) * h), max(int(max(ys) * h), int(min(ys) * h) + 1)
    crop = cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    return cv2.resize(crop, (CROP, CROP), interpolation=cv2.INTER_AREA)


class ExtinguisherMissing(Rule):
    cfg: ExtinguisherRule

    def __init__(self, cfg: ExtinguisherRule, camera: AnalysisConfig) -> None:
        super().__init__(cfg, camera)
        self.reference: np.ndarray | None = None

    def evaluate(self, frame: FrameView) -> Outcome:
        if self.cfg.mode == "model":
            seen = [
                d
                for d in frame.detections
                if d.label == self.cfg.label and d.score >= self.cfg.min_score and self.in_zones(d)
            ]
            return Outcome(not seen, seen, f"{len(seen)} extinguisher(s) seen")
        image = frame.image()
        if image is None:
            return Outcome(False, note="no frame")
        crop = region(image, self.zones[0])
        if self.reference is None:
            self.reference = crop
            return Outcome(False, note="reference taken")
        score = ssim(self.reference, crop)
        return Outcome(score < self.cfg.ssim_min, [], f"ssim {score:.2f}")
