"""Export one ultralytics ``.pt`` to ONNX.  Runs ONLY in the model-build venv (``.venv-models``).

Usage: ``.venv-models/bin/python analyzers/export_onnx.py SRC.pt OUT.onnx --imgsz 320 [--dynamic]
[--import fire_detector]``.  Prints one JSON line (classes, shape) for the caller to check.
The server never imports this file: torch and ultralytics live only in the build venv.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def upgrade_legacy_attention(model: object) -> int:
    """Fuse the ``qk`` + ``v`` convs of YOLOv12 checkpoints made with ultralytics 8.3.6x into the
    ``qkv`` conv (q, k, v interleaved per head) that current ultralytics' AAttn expects."""
    import torch
    from ultralytics.nn.modules.conv import Conv

    fixed = 0
    for mod in model.modules():  # type: ignore[attr-defined]
        if type(mod).__name__ != "AAttn" or hasattr(mod, "qkv") or not hasattr(mod, "qk"):
            continue
        heads, hd = mod.num_heads, mod.head_dim
        c = heads * hd
        order = []
        for h in range(heads):  # rows of the stacked [qk; v] weight, per head: q_h, k_h, v_h
            order += list(range(h * hd, (h + 1) * hd))
            order += list(range(c + h * hd, c + (h + 1) * hd))
            order += list(range(2 * c + h * hd, 2 * c + (h + 1) * hd))
        idx = torch.tensor(order)
        qkv = Conv(mod.qk.conv.in_channels, 3 * c, 1, act=False)
        with torch.no_grad():
            qkv.conv.weight.copy_(torch.cat([mod.qk.conv.weight, mod.v.conv.weight])[idx])
            for name in ("weight", "bias", "running_mean", "running_var"):
                src = torch.cat([getattr(mod.qk.bn, name), getattr(mod.v.bn, name)])[idx]
                getattr(qkv.bn, name).copy_(src)
            qkv.bn.eps = mod.qk.bn.eps
        mod.qkv = qkv
        mod.all_head_dim = c
        del mod.qk, mod.v
        fixed += 1
    return fixed


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--dynamic", action="store_true")
    p.add_argument("--import", dest="imports", action="append", default=[])
    a = p.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    for mod in a.imports:  # e.g. fire_detector registers its custom blocks for unpickling
        importlib.import_module(mod)
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / Path(a.src).name  # ultralytics writes next to the .pt: use a copy
        shutil.copyfile(a.src, src)
        model = YOLO(str(src))
        names = [model.names[i] for i in sorted(model.names)]
        upgrade_legacy_attention(model.model)
        exported = model.export(
            format="onnx", imgsz=a.imgsz, dynamic=a.dynamic, simplify=True, opset=17, device="cpu"
        )
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(exported, a.out)
    sys.stdout.write(json.dumps({"classes": names, "imgsz": a.imgsz, "dynamic": a.dynamic}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
