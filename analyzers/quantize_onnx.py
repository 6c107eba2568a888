"""int8 (static, calibrated on real frames) and fp16 variants of an exported ONNX detector.

Runs ONLY in the model-build venv (``.venv-models``, which has ``onnx``):
``python analyzers/quantize_onnx.py SRC.onnx OUT.onnx --mode int8 --imgsz 640 --calib a.jpg
--calib clip.avi``.  Prints one JSON line for the caller.

int8: onnxruntime's ``quantize_static`` (QDQ, per-channel weights) with activation ranges
measured on the calibration frames.  The YOLO head after the last convolutions (box decoding,
the concat of pixel boxes with 0..1 scores) stays float: one shared int8 scale for values up to
640 and scores below 1 rounds every score to 0.  fp16: weights and activations in half
precision for CUDA, inputs and outputs kept float32 so the server feeds both files alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

CLIP_STEP = 50  # one calibration frame in N of a video
MAX_FRAMES = 24


def frames(sources: list[str]) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for src in sources:
        if Path(src).suffix.lower() in (".avi", ".mp4", ".mkv", ".mov"):
            cap = cv2.VideoCapture(src)
            i = 0
            while len(out) < MAX_FRAMES:
                ok, img = cap.read()
                if not ok:
                    break
                if i % CLIP_STEP == CLIP_STEP // 2:
                    out.append(img)
                i += 1
            cap.release()
        else:
            img = cv2.imread(src)
            if img is not None:
                out.append(img)
    return out


def blob(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nh, nw = round(h * r), round(w * r)
    sq = np.full((size, size, 3), 114, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    sq[top : top + nh, left : left + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(sq[..., ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0


def head_nodes(model_path: Path) -> list[str]:
    """Nodes that no convolution depends on: the detection head's decoding, kept float."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    needed: set[str] = set()
    stack = [n for n in graph.node if n.op_type == "Conv"]
    while stack:
        n = stack.pop()
        if n.name in needed:
            continue
        needed.add(n.name)
        stack += [producer[i] for i in n.input if i in producer]
    return [n.name for n in graph.node if n.name not in needed]


def int8(src: Path, out: Path, size: int, calib: list[np.ndarray]) -> dict[str, object]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calib:
        raise SystemExit("no calibration frames could be read")
    import onnxruntime as ort

    input_name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            img = next(self.it, None)
            return None if img is None else {input_name.name: blob(img, size)}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        excluded = head_nodes(pre)
        quantize_static(
            str(pre),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
        )
    return {"calibration_frames": len(calib), "float_nodes": len(excluded)}


def fp16(src: Path, out: Path) -> dict[str, object]:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(out))
    return {}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--mode", choices=["int8", "fp16"], required=True)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--calib", action="append", default=[], help="image or video (repeatable)")
    a = p.parse_args()
    src, out = Path(a.src), Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    info = int8(src, tmp, a.imgsz, frames(a.calib)) if a.mode == "int8" else fp16(src, tmp)
    tmp.replace(out)
    sys.stdout.write(json.dumps({"mode": a.mode, **info}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
