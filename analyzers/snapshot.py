"""Alarm pictures: the frame with boxes and zones drawn, and the raw frame, as JPEG ≤ 4 MB."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from .config import AnalysisConfig
from .detector import Detection

MAX_IMAGE_BYTES = 4 * 1024 * 1024  # Table 4 ALARM_IMAGE limit


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    """JPEG under the 4 MB limit: lower the quality, then the size, until it fits."""
    img = image
    while True:
        for q in (quality, 70, 50):
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok and len(buf) <= MAX_IMAGE_BYTES:
                return buf.tobytes()
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)


def _pts(poly: Iterable[tuple[float, float]], w: int, h: int) -> np.ndarray:
    return np.array([[int(x * w), int(y * h)] for x, y in poly], np.int32)


def annotate(
    image: np.ndarray, boxes: list[Detection], config: AnalysisConfig, title: str
) -> np.ndarray:
    out = image.copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(w, h) / 300))
    for name, poly in config.zones.items():
        cv2.polylines(out, [_pts(poly, w, h)], True, (255, 200, 0), thick)
        x, y = _pts(poly, w, h)[0]
        cv2.putText(out, name, (int(x) + 3, int(y) + 14), 0, 0.45 * thick, (255, 200, 0), thick)
    for poly in config.lines.values():
        cv2.polylines(out, [_pts(poly, w, h)], False, (0, 200, 255), thick + 1)
    for d in boxes:
        x1, y1, x2, y2 = (
            int(d.box[0] * w),
            int(d.box[1] * h),
            int(d.box[2] * w),
            int(d.box[3] * h),
        )
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 255), thick + 1)
        cv2.putText(
            out,
            f"{d.label} {d.score:.2f}",
            (x1, max(12, y1 - 4)),
            0,
            0.45 * thick,
            (0, 0, 255),
            thick,
        )
    cv2.putText(out, title, (8, 8 + 16 * thick), 0, 0.6 * thick, (0, 0, 255), thick + 1)
    return out


def pictures(
    image: np.ndarray, boxes: list[Detection], config: AnalysisConfig, title: str
) -> tuple[bytes, bytes]:
    """(annotated JPEG, raw JPEG); CPU work: call it off the event loop."""
    return encode_jpeg(annotate(image, boxes, config, title)), encode_jpeg(image)
