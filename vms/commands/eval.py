"""``vms eval --data DIR``: precision/recall of the shipped detectors on a labelled folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vms.config import ConfigError, load_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("eval", help="evaluate the detectors on a labelled image folder")
    p.add_argument("--data", type=Path, required=True, help="folder with images and labels.json")
    p.add_argument("--size", type=int, choices=[320, 640], default=320)
    p.add_argument("--conf", type=float, default=0.45, help="minimum detection score")
    p.add_argument("--models-dir", type=Path, default=None)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from analyzers.evaluate import evaluate
    from analyzers.manifest import ModelMissing

    try:
        models = args.models_dir or load_settings().models_path
        report = evaluate(args.data, models, args.size, args.conf)
    except (ConfigError, ModelMissing, FileNotFoundError, ValueError) as exc:
        print(f"vms: {exc}", file=sys.stderr)
        return 2
    print(report.format())
    return 0
