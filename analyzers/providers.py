"""ONNX Runtime execution providers: which to use, their options, and which model file suits each.

CPU runs the int8 file (static quantisation, 2.6× the fp32 speed on this project's dev machine),
CUDA the fp16 file, TensorRT the fp32 file with its own fp16 engine (cached next to the models).
``onnxruntime-gpu`` (the ``gpu`` extra) brings CUDA and TensorRT; without it only CPU exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = frozenset({"TensorrtExecutionProvider", "CUDAExecutionProvider"})
PRECISIONS = ("fp32", "int8", "fp16")
MAX_BATCH = 16  # TensorRT optimisation profile: batches up to this many crops


def choose_providers(
    wanted: Sequence[str] = (), available: Sequence[str] | None = None
) -> list[str]:
    """``wanted`` filtered to what this onnxruntime build has; empty → best available.

    CPU is always appended as the fallback ORT uses for operators a GPU provider lacks.
    """
    have = list(ort.get_available_providers() if available is None else available)
    if wanted:
        chosen = [p for p in wanted if p in have]
        if not chosen:
            raise ValueError(f"none of the providers {list(wanted)} is available ({have})")
    else:
        chosen = [p for p in PREFERRED_PROVIDERS if p in have]
    if "CPUExecutionProvider" in have and "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def on_gpu(providers: Sequence[str]) -> bool:
    return bool(providers) and providers[0] in GPU_PROVIDERS


def precision_for(providers: Sequence[str], wanted: str, built: Sequence[str]) -> str:
    """The model file to load: ``wanted`` if set, else by the first provider, from those built.

    ``auto``: CPU → int8, CUDA → fp16, TensorRT → fp32 (it makes its fp16 engine itself);
    falling back to fp32, which every build has.
    """
    if wanted != "auto":
        if wanted not in built:
            raise ValueError(f"precision {wanted} is not built (have {sorted(built)})")
        return wanted
    first = providers[0] if providers else "CPUExecutionProvider"
    best = {"CPUExecutionProvider": "int8", "CUDAExecutionProvider": "fp16"}.get(first, "fp32")
    return best if best in built else "fp32"


def provider_options(
    providers: Sequence[str],
    cache_dir: Path | None,
    device_id: int = 0,
    input_name: str = "images",
    size: int = 640,
    dynamic: bool = True,
) -> list[dict[str, str]]:
    """Options per provider: TensorRT fp16 with an engine cache and a batch profile; CUDA on
    ``device_id`` with copies in the compute stream; CPU none."""
    out: list[dict[str, str]] = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            opts = {"device_id": str(device_id), "trt_fp16_enable": "True"}
            if cache_dir is not None:
                opts |= {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache_dir)}
            if dynamic:  # one engine for batches 1..MAX_BATCH at this size, not one per shape
                opts |= {
                    "trt_profile_min_shapes": f"{input_name}:1x3x{size}x{size}",
                    "trt_profile_opt_shapes": f"{input_name}:{MAX_BATCH // 2}x3x{size}x{size}",
                    "trt_profile_max_shapes": f"{input_name}:{MAX_BATCH}x3x{size}x{size}",
                }
            out.append(opts)
        elif p == "CUDAExecutionProvider":
            out.append(
                {
                    "device_id": str(device_id),
                    "do_copy_in_default_stream": "1",
                    "cudnn_conv_algo_search": "HEURISTIC",
                }
            )
        else:
            out.append({})
    return out


class BoundRunner:
    """Runs a session through IOBinding with buffers kept per input shape.

    On a GPU the input lives in a device buffer reused for every batch of that shape (no
    allocation per call) and the output is bound to the device and copied back once; ORT's
    Python API has no call to page-lock a host array, so the host side is a reused array too.
    On CPU the same code binds host buffers, which is what the tests exercise.
    """

    def __init__(self, session: ort.InferenceSession, device: str, device_id: int = 0) -> None:
        self.session = session
        self.device = device  # "cuda" or "cpu"
        self.device_id = device_id
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name
        self.buffers: dict[tuple[int, ...], ort.OrtValue] = {}
        self.binding = session.io_binding()

    def run(self, blob: np.ndarray) -> np.ndarray:
        shape = tuple(blob.shape)
        buf = self.buffers.get(shape)
        if buf is None:
            if len(self.buffers) >= 8:  # shapes vary with batch size: keep the set bounded
                self.buffers.clear()
            buf = ort.OrtValue.ortvalue_from_numpy(blob, self.device, self.device_id)
            self.buffers[shape] = buf
        else:
            buf.update_inplace(blob)
        self.binding.bind_ortvalue_input(self.input_name, buf)
        self.binding.bind_output(self.output_name, self.device, self.device_id)
        self.session.run_with_iobinding(self.binding)
        return self.binding.copy_outputs_to_cpu()[0]
