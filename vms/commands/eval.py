"""``vms eval --data DIR``: precision/recall of the detectors on a labelled folder or clip."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vms.config import ConfigError, load_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("eval", help="evaluate the detectors on a labelled image folder or clip")
    p.add_argument(
        "--data", type=Path, required=True, help="folder with labels.json (images or a clip)"
    )
    p.add_argument("--size", type=int, choices=[320, 640], default=640)
    p.add_argument(
        "--conf", type=float, default=0.4, help="minimum score counted (the rules' min_score)"
    )
    p.add_argument("--precision", choices=["fp32", "int8", "fp16"], default="fp32")
    p.add_argument("--tiles", choices=["off", "motion", "grid"], default="off")
    p.add_argument("--tile-scale", type=float, default=1.0, help="window = size / scale pixels")
    p.add_argument("--max-tiles", type=int, default=4)
    p.add_argument("--no-track", action="store_true", help="without the ByteTrack-style tracker")
    p.add_argument("--models", nargs="*", default=None, help="only these models (default: all)")
    p.add_argument("--models-dir", type=Path, default=None)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from analyzers.camera_detector import DetectOptions
    from analyzers.evaluate import evaluate
    from analyzers.manifest import ManifestError, ModelMissing

    options = DetectOptions(args.tiles, args.tile_scale, args.max_tiles, not args.no_track)
    try:
        models = args.models_dir or load_settings().models_path
        report = evaluate(
            args.data, models, args.size, args.conf, options, args.models, args.precision
        )
    except (ConfigError, ModelMissing, ManifestError, FileNotFoundError, ValueError) as exc:
        print(f"vms: {exc}", file=sys.stderr)
        return 2
    print(report.format())
    return 0
