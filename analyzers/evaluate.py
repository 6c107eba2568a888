"""``vms eval``: the shipped detectors on labelled images, or on a labelled clip, scored.

A folder's ``labels.json`` gives per image the classes present, ``person_count`` (or
``person_count_min`` where a crowd cannot be counted exactly) and ``heads_without_helmet``.  A
clip folder's ``labels.json`` names the clip (``_clip``), the sampling (``_sample_every``: one
frame in N goes through the detectors, like keyframes in serving) and counts for some frames
(``frames``): every sampled frame is analysed in order, so motion windows and the tracker work
as on a camera, and the labelled ones are scored.

Scoring is by counts per image: TP = min(predicted, true), FP = the excess, FN = the shortfall;
for ``person_count_min`` the excess is not counted (the truth is "at least").  Labels a folder
never mentions (fire, smoke, helmet) count every prediction as a false positive.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from .camera_detector import CameraDetector, DetectOptions, ModelRef
from .detector import OrtDetector
from .manifest import all_manifests, verified_path

TRUTH_FIELDS = {"person": "person_count", "no_helmet": "heads_without_helmet"}
AT_LEAST = {"person": "person_count_min"}
EVAL_LABELS = ("person", "no_helmet", "helmet", "fire", "smoke")


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


@dataclass
class Report:
    size: int
    conf: float
    options: DetectOptions = DetectOptions()
    precision: str = "fp32"
    scores: dict[str, Score] = field(default_factory=dict)
    rows: list[tuple[str, dict[str, int], dict[str, int]]] = field(default_factory=list)
    frames: int = 0  # frames through the detectors (labelled or not)
    runs: int = 0  # model passes (whole frames + windows)
    cpu_s: float = 0.0

    def format(self) -> str:
        def pct(v: float | None) -> str:
            return "   -  " if v is None else f"{v:6.1%}"

        o = self.options
        how = f"tiles {o.tiles}" + (
            f" (scale {o.tile_scale}, <= {o.max_tiles})" if o.tiles != "off" else ""
        )
        lines = [
            f"detectors at {self.size}px {self.precision}, score >= {self.conf}, {how}, "
            f"tracker {'on' if o.track else 'off'}",
            f"{self.frames} frames, {self.runs / max(1, self.frames):.2f} model passes per frame, "
            f"{1000 * self.cpu_s / max(1, self.frames):.0f} ms CPU per frame",
            "",
        ]
        lines.append(f"{'class':<10} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>10} {'recall':>8}")
        for label, s in self.scores.items():
            counts = f"{s.tp:>4} {s.fp:>4} {s.fn:>4}"
            lines.append(f"{label:<10} {counts} {pct(s.precision):>10} {pct(s.recall):>8}")
        lines += ["", "confusion summary (predicted / true per image):"]
        for name, pred, true in self.rows:
            cells = "  ".join(f"{lab} {pred.get(lab, 0)}/{true.get(lab, 0)}" for lab in EVAL_LABELS)
            lines.append(f"  {name:<18} {cells}")
        return "\n".join(lines)


def truth(entry: dict[str, object]) -> tuple[dict[str, int], set[str]]:
    """True counts per label, and the labels whose count is only a lower bound."""
    out = {label: int(entry.get(fld, 0) or 0) for label, fld in TRUTH_FIELDS.items()}  # type: ignore[call-overload]
    at_least: set[str] = set()
    for label, fld in AT_LEAST.items():
        if entry.get(fld) is not None:
            out[label] = int(entry[fld])  # type: ignore[call-overload]
            at_least.add(label)
    for cls in entry.get("classes", []) or []:  # type: ignore[union-attr]
        if cls not in TRUTH_FIELDS:  # a class present without a count: at least one
            out[str(cls)] = max(out.get(str(cls), 0), 1)
    return out, at_least


def _images(data: Path, labels: dict) -> Iterator[tuple[str, np.ndarray, dict | None]]:
    for name in sorted(k for k in labels if not k.startswith("_")):
        img = cv2.imread(str(data / name))
        if img is None:
            raise ValueError(f"{data / name}: cannot read the image")
        yield name, img, labels[name]


def _clip(data: Path, labels: dict) -> Iterator[tuple[str, np.ndarray, dict | None]]:
    clip = data / str(labels["_clip"])
    if not clip.is_file():
        raise FileNotFoundError(f"{clip} not found (named by {data / 'labels.json'})")
    every = int(labels.get("_sample_every", 1))
    frames = {int(k): v for k, v in (labels.get("frames") or {}).items()}
    last = max(frames, default=0)
    try:
        with av.open(str(clip)) as src:
            for i, frame in enumerate(src.decode(video=0)):
                if i > last:
                    break
                if i % every == 0 or i in frames:
                    yield f"frame {i}", frame.to_ndarray(format="bgr24"), frames.get(i)
    except av.error.FFmpegError as exc:
        raise ValueError(f"{clip}: cannot decode ({exc})") from None


def evaluate(
    data: Path,
    models_dir: Path,
    size: int = 320,
    conf: float = 0.45,
    options: DetectOptions | None = None,
    models: list[str] | None = None,
    precision: str = "fp32",
) -> Report:
    labels_file = data / "labels.json"
    if not labels_file.is_file():
        raise FileNotFoundError(f"{labels_file} not found: the folder needs a labels.json")
    try:
        labels = json.loads(labels_file.read_text())
    except ValueError as exc:
        raise ValueError(f"{labels_file}: {exc}") from None
    options = options or DetectOptions()
    detectors: dict[str, OrtDetector] = {}
    refs = []
    for m in all_manifests(models_dir):
        if m.user or not (m.labels() & set(EVAL_LABELS)) or (models and m.name not in models):
            continue
        # a model without that variant built (e.g. int8 of fire) is scored as fp32
        path = verified_path(
            models_dir, m, size, precision if precision in m.precisions else "fp32"
        )
        # the tracker continues people on weaker evidence than the score cut
        floor = min(conf, options.track_low) if options.track and "person" in m.labels() else conf
        detectors[str(path)] = OrtDetector(m.name, path, m.class_map(), conf=floor, size=size)
        refs.append(ModelRef(str(path), size, frozenset(m.labels())))
    camera = CameraDetector(refs, options)
    report = Report(size, conf, options, precision, {lab: Score() for lab in EVAL_LABELS})

    def run(key: str, crops: list[np.ndarray]) -> list:
        report.runs += len(crops)
        return detectors[key].detect(crops)

    frames = _clip(data, labels) if "_clip" in labels else _images(data, labels)
    for name, img, entry in frames:
        if "_clip" not in labels:
            camera.reset()  # unrelated photos: no motion, no tracks across them
        t0 = time.process_time()
        dets = camera.detect(img, run)
        report.cpu_s += time.process_time() - t0
        report.frames += 1
        if entry is None:
            continue
        pred: dict[str, int] = {}
        for d in dets:
            if d.score >= conf:
                pred[d.label] = pred.get(d.label, 0) + 1
        true, at_least = truth(entry)
        for lab, s in report.scores.items():
            p, t = pred.get(lab, 0), true.get(lab, 0)
            s.tp += min(p, t)
            s.fp += 0 if lab in at_least else max(0, p - t)
            s.fn += max(0, t - p)
        report.rows.append((name, pred, true))
    return report
