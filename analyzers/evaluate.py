"""``vms eval``: run the shipped detectors on a labelled image folder and score them.

The folder's ``labels.json`` gives per image the classes present, ``person_count`` and
``heads_without_helmet``.  Scoring is by counts per image (the labels have no boxes):
TP = min(predicted, true), FP = the excess, FN = the shortfall.  Labels a folder never mentions
(fire, smoke, helmet) count every prediction as a false positive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from .detector import OrtDetector
from .manifest import all_manifests, verified_path

TRUTH_FIELDS = {"person": "person_count", "no_helmet": "heads_without_helmet"}
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
    scores: dict[str, Score] = field(default_factory=dict)
    rows: list[tuple[str, dict[str, int], dict[str, int]]] = field(default_factory=list)

    def format(self) -> str:
        def pct(v: float | None) -> str:
            return "   -  " if v is None else f"{v:6.1%}"

        lines = [f"detectors at {self.size}px, score >= {self.conf}", ""]
        lines.append(f"{'class':<10} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>10} {'recall':>8}")
        for label, s in self.scores.items():
            counts = f"{s.tp:>4} {s.fp:>4} {s.fn:>4}"
            lines.append(f"{label:<10} {counts} {pct(s.precision):>10} {pct(s.recall):>8}")
        lines += ["", "confusion summary (predicted / true per image):"]
        for name, pred, true in self.rows:
            cells = "  ".join(f"{lab} {pred.get(lab, 0)}/{true.get(lab, 0)}" for lab in EVAL_LABELS)
            lines.append(f"  {name:<18} {cells}")
        return "\n".join(lines)


def truth(entry: dict[str, object]) -> dict[str, int]:
    out = {label: int(entry.get(fld, 0) or 0) for label, fld in TRUTH_FIELDS.items()}  # type: ignore[call-overload]
    for cls in entry.get("classes", []) or []:  # type: ignore[union-attr]
        if cls not in TRUTH_FIELDS:  # a class present without a count: at least one
            out[str(cls)] = max(out.get(str(cls), 0), 1)
    return out


def evaluate(data: Path, models_dir: Path, size: int = 320, conf: float = 0.45) -> Report:
    labels_file = data / "labels.json"
    if not labels_file.is_file():
        raise FileNotFoundError(f"{labels_file} not found: the folder needs a labels.json")
    labels = json.loads(labels_file.read_text())
    detectors = []
    for m in all_manifests(models_dir):
        if m.user or not (m.labels() & set(EVAL_LABELS)):
            continue
        path = verified_path(models_dir, m, size)
        detectors.append(OrtDetector(m.name, path, m.class_map(), conf=conf, size=size))
    report = Report(size, conf, {lab: Score() for lab in EVAL_LABELS})
    for name in sorted(labels):
        img = cv2.imread(str(data / name))
        if img is None:
            raise ValueError(f"{data / name}: cannot read the image")
        pred: dict[str, int] = {}
        for det in detectors:
            for d in det.detect([img])[0]:
                pred[d.label] = pred.get(d.label, 0) + 1
        true = truth(labels[name])
        for lab, s in report.scores.items():
            p, t = pred.get(lab, 0), true.get(lab, 0)
            s.tp += min(p, t)
            s.fp += max(0, p - t)
            s.fn += max(0, t - p)
        report.rows.append((name, pred, true))
    return report
