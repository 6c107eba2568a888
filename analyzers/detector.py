"""ONNX Runtime detector for YOLOv8-style exports: letterbox, inference, NMS — numpy only.

Output layout is ultralytics' ``(batch, 4 + classes, anchors)`` with centre-xywh boxes in
input pixels and per-class scores already passed through a sigmoid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


@dataclass(frozen=True, slots=True)
class Detection:
    label: str  # what rules consume: person, fire, no_helmet, ...
    cls_name: str  # the model's own class name
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 normalised to 0..1 of the frame
    model: str = ""
    hint: str = ""  # e.g. "lying" for the person model's Fall class


def choose_providers(wanted: Sequence[str] = ()) -> list[str]:
    """``wanted`` filtered to what this onnxruntime build has; empty → best available."""
    available = ort.get_available_providers()
    if wanted:
        chosen = [p for p in wanted if p in available]
        if not chosen:
            raise ValueError(f"none of the providers {list(wanted)} is available ({available})")
        return chosen
    return [p for p in PREFERRED_PROVIDERS if p in available]


def provider_options(providers: Sequence[str], cache_dir: Path | None) -> list[dict[str, str]]:
    """fp16 where the provider supports it (TensorRT); engines cached next to the models."""
    out: list[dict[str, str]] = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            opts = {"trt_fp16_enable": "True"}
            if cache_dir is not None:
                opts |= {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache_dir)}
            out.append(opts)
        else:
            out.append({})
    return out


def letterbox(img: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """Resize keeping aspect into a ``size``² grey-padded square; returns scale and padding."""
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nh, nw = round(h * r), round(w * r)
    out = np.full((size, size, 3), 114, dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR
    out[top : top + nh, left : left + nw] = cv2.resize(img, (nw, nh), interpolation=interp)
    return out, r, left, top


def to_blob(squares: Sequence[np.ndarray]) -> np.ndarray:
    """BGR uint8 squares → float32 NCHW RGB 0..1."""
    batch = np.stack(squares)[..., ::-1].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.float32) * (1.0 / 255.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float) -> list[int]:
    """Greedy non-maximum suppression on x1y1x2y2 boxes."""
    order = scores.argsort()[::-1]
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_thr]
    return keep


@dataclass(frozen=True)
class ClassMap:
    names: list[str]
    labels: list[str]
    hints: list[str]


class OrtDetector:
    """One ONNX model in one onnxruntime session; batches when the model's batch axis is dynamic."""

    def __init__(
        self,
        name: str,
        path: Path,
        classes: ClassMap,
        providers: Sequence[str] = (),
        threads: int = 1,
        conf: float = 0.25,
        iou: float = 0.45,
        size: int | None = None,
    ) -> None:
        self.name = name
        self.classes = classes
        self.conf = conf
        self.iou = iou
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        chosen = choose_providers(providers)
        self.session = ort.InferenceSession(
            str(path),
            sess_options=opts,
            providers=list(zip(chosen, provider_options(chosen, path.parent), strict=True)),
        )
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        self.dynamic_batch = not isinstance(shape[0], int)
        # a fixed-shape export dictates its size; a dynamic one runs at the size it was built for
        self.size = shape[2] if isinstance(shape[2], int) else (size or 640)
        out_shape = self.session.get_outputs()[0].shape
        if isinstance(out_shape[1], int) and out_shape[1] - 4 != len(classes.names):
            raise ValueError(
                f"model {name}: {out_shape[1] - 4} classes in the ONNX, "
                f"{len(classes.names)} in the manifest"
            )

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def infer_blob(self, blob: np.ndarray) -> np.ndarray:
        if self.dynamic_batch or blob.shape[0] == 1:
            return self.session.run(None, {self.input_name: blob})[0]
        return np.concatenate(
            [
                self.session.run(None, {self.input_name: blob[i : i + 1]})[0]
                for i in range(len(blob))
            ]
        )

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detections per frame (BGR uint8), boxes normalised to each frame's size."""
        prepared = [letterbox(f, self.size) for f in frames]
        raw = self.infer_blob(to_blob([p[0] for p in prepared]))
        return [self.decode(raw[i], frames[i].shape, *prepared[i][1:]) for i in range(len(frames))]

    def decode(
        self, out: np.ndarray, shape: tuple[int, ...], r: float, left: int, top: int
    ) -> list[Detection]:
        preds = out.T  # anchors × (4 + classes)
        scores = preds[:, 4:]
        cls = scores.argmax(1)
        best = scores[np.arange(len(cls)), cls]
        mask = best >= self.conf
        if not mask.any():
            return []
        xywh, cls, best = preds[mask, :4], cls[mask], best[mask]
        boxes = np.empty_like(xywh)
        boxes[:, 0] = xywh[:, 0] - xywh[:, 2] / 2
        boxes[:, 1] = xywh[:, 1] - xywh[:, 3] / 2
        boxes[:, 2] = xywh[:, 0] + xywh[:, 2] / 2
        boxes[:, 3] = xywh[:, 1] + xywh[:, 3] / 2
        # class-aware NMS: shift boxes per class so classes never suppress each other
        keep = nms(boxes + cls[:, None] * 4096.0, best, self.iou)
        h, w = shape[:2]
        dets = []
        for i in keep:
            x1 = (boxes[i, 0] - left) / r / w
            y1 = (boxes[i, 1] - top) / r / h
            x2 = (boxes[i, 2] - left) / r / w
            y2 = (boxes[i, 3] - top) / r / h
            c = int(cls[i])
            dets.append(
                Detection(
                    label=self.classes.labels[c],
                    cls_name=self.classes.names[c],
                    score=float(best[i]),
                    box=(
                        float(np.clip(x1, 0, 1)),
                        float(np.clip(y1, 0, 1)),
                        float(np.clip(x2, 0, 1)),
                        float(np.clip(y2, 0, 1)),
                    ),
                    model=self.name,
                    hint=self.classes.hints[c],
                )
            )
        return dets
