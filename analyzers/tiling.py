"""Small people in CCTV: tiles at the camera's own resolution, laid only where something moved.

At 320 px a 768×576 frame shrinks 2.4×, and a pedestrian 60 px tall becomes 25 px, below what
the person model finds.  Running the model on 320 px windows of the frame at its own scale
(SAHI-style slicing) restores the pixels, but a full grid costs six passes; laying windows only
over the regions that changed since the camera's last sampled frame costs one to three in a
typical scene, and nothing in an empty one.  The whole frame at 320 still runs, for people near
the camera; both sets of boxes are merged with NMS.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .detector import Detection, nms

MOTION_W = 192  # background model width (px); height follows the aspect
MOTION_DIFF = 18  # grey levels that count as change
MOTION_ALPHA = 0.35  # background update rate per sampled frame
MIN_REGION = 0.0005  # regions smaller than this fraction of the frame are noise


@dataclass(frozen=True, slots=True)
class Window:
    """A tile in frame pixels: the detector sees ``img[y:y+h, x:x+w]`` letterboxed to its size."""

    x: int
    y: int
    w: int
    h: int


class MotionRegions:
    """Regions of a camera's frame that changed against a running background (normalised boxes).

    The background is a running average of the sampled frames, so a person standing still for a
    few samples fades into it; the tracker holds such people (see :mod:`analyzers.bytetrack`).
    The first frame has no background: the whole frame counts as changed.
    """

    def __init__(self) -> None:
        self.bg: np.ndarray | None = None

    def reset(self) -> None:
        self.bg = None

    def update(self, img: np.ndarray) -> list[tuple[float, float, float, float]]:
        h, w = img.shape[:2]
        mh = max(8, round(MOTION_W * h / w))
        grey = cv2.cvtColor(
            cv2.resize(img, (MOTION_W, mh), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY
        )
        grey = cv2.GaussianBlur(grey, (5, 5), 0).astype(np.float32)
        if self.bg is None or self.bg.shape != grey.shape:
            self.bg = grey
            return [(0.0, 0.0, 1.0, 1.0)]
        mask = (np.abs(grey - self.bg) > MOTION_DIFF).astype(np.uint8)
        cv2.accumulateWeighted(grey, self.bg, MOTION_ALPHA)
        mask = cv2.dilate(mask, np.ones((5, 5), np.uint8))
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        out = []
        for x, y, bw, bh, area in stats[1:n]:
            if area < MIN_REGION * MOTION_W * mh:
                continue
            out.append((x / MOTION_W, y / mh, (x + bw) / MOTION_W, (y + bh) / mh))
        return out


def plan_windows(
    shape: tuple[int, ...],
    regions: list[tuple[float, float, float, float]],
    tile: int,
    scale: float = 1.0,
    max_tiles: int = 6,
    overlap: float = 0.2,
) -> list[Window]:
    """Windows of ``tile/scale`` frame pixels covering ``regions``, at most ``max_tiles``.

    The grid is fixed per frame size (windows overlap by ``overlap``) so that a region that
    grows by a few pixels keeps the same windows; only grid windows that touch a region run.
    A frame already no larger than one window needs none: the full-frame pass sees it whole.
    """
    h, w = shape[:2]
    side = max(32, round(tile / scale))
    if w <= side * 1.1 and h <= side * 1.1:
        return []

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        step = max(1, int(side * (1 - overlap)))
        out = list(range(0, length - side + 1, step))
        if out[-1] + side < length:
            out.append(length - side)
        return out

    cells = [(x, y) for y in starts(h) for x in starts(w)]
    scored = []
    for x, y in cells:
        cw, ch = min(side, w - x), min(side, h - y)
        cover = 0.0
        for rx1, ry1, rx2, ry2 in regions:
            ix = max(0.0, min(rx2 * w, x + cw) - max(rx1 * w, x))
            iy = max(0.0, min(ry2 * h, y + ch) - max(ry1 * h, y))
            cover += ix * iy
        if cover > 0:
            scored.append((cover, Window(x, y, cw, ch)))
    scored.sort(key=lambda s: -s[0])
    return [win for _, win in scored[:max_tiles]]


def to_frame(det: Detection, win: Window, shape: tuple[int, ...]) -> Detection:
    """A detection normalised to its window → normalised to the whole frame."""
    h, w = shape[:2]
    x1, y1, x2, y2 = det.box
    box = (
        (win.x + x1 * win.w) / w,
        (win.y + y1 * win.h) / h,
        (win.x + x2 * win.w) / w,
        (win.y + y2 * win.h) / h,
    )
    return Detection(det.label, det.cls_name, det.score, box, det.model, det.hint)


def cut_at_edge(det: Detection, win: Window, shape: tuple[int, ...], margin: float = 0.01) -> bool:
    """True for a box that touches a window edge which is not the frame's: a person cut in two
    by the window, whose whole box comes from the neighbouring window or the full frame."""
    h, w = shape[:2]
    x1, y1, x2, y2 = det.box  # normalised to the window
    return (
        (x1 <= margin and win.x > 0)
        or (y1 <= margin and win.y > 0)
        or (x2 >= 1 - margin and win.x + win.w < w)
        or (y2 >= 1 - margin and win.y + win.h < h)
    )


def merge(dets: list[Detection], iou: float = 0.45) -> list[Detection]:
    """Class-aware NMS over full-frame and window detections, plus containment: a box mostly
    inside a higher-scored box of the same class is the same person seen partly."""
    if len(dets) < 2:
        return dets
    boxes = np.array([d.box for d in dets], np.float32)
    scores = np.array([d.score for d in dets], np.float32)
    cls = np.array([hash(d.label) % 1000 for d in dets], np.float32)
    keep = nms(boxes + cls[:, None] * 4.0, scores, iou)
    kept = [dets[i] for i in keep]
    out: list[Detection] = []
    for d in kept:  # highest score first (nms order)
        area = (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])
        inside = False
        for o in out:
            if o.label != d.label:
                continue
            ix = max(0.0, min(d.box[2], o.box[2]) - max(d.box[0], o.box[0]))
            iy = max(0.0, min(d.box[3], o.box[3]) - max(d.box[1], o.box[1]))
            if area > 0 and ix * iy / area > 0.8:
                inside = True
                break
        if not inside:
            out.append(d)
    return out
