"""``vms models build|list|add``: detector models in the cache (settings.analyzers.models_dir)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vms.config import ConfigError, load_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("models", help="detector models: build, list, add")
    msub = p.add_subparsers(dest="models_command", required=True)
    b = msub.add_parser("build", help="export the package weights to ONNX (creates .venv-models)")
    b.add_argument("names", nargs="*", help="only these models (default: all)")
    b.add_argument("--dir", type=Path, default=None, help="models cache (default: settings)")
    b.set_defaults(func=cmd_build)
    ls = msub.add_parser("list", help="models, classes, licence and build status")
    ls.add_argument("--dir", type=Path, default=None)
    ls.set_defaults(func=cmd_list)
    a = msub.add_parser("add", help="register your own ONNX detector (YOLOv8-style output)")
    a.add_argument("file", type=Path)
    a.add_argument("--name", required=True, help="model name, e.g. ppe")
    a.add_argument("--classes", required=True, help="class names in output order: phone,cigarette")
    a.add_argument(
        "--labels",
        default="",
        help="rule label per class (default: the class names); rules use: phone, cigarette, "
        "no_workwear, extinguisher, person, fire, smoke, no_helmet",
    )
    a.add_argument("--licence", default="user-supplied")
    a.add_argument("--dir", type=Path, default=None)
    a.set_defaults(func=cmd_add)


def _cache(args: argparse.Namespace) -> Path:
    if args.dir is not None:
        return args.dir
    try:
        return load_settings().models_path
    except ConfigError as exc:
        raise SystemExit(f"vms: {exc}") from None


def cmd_build(args: argparse.Namespace) -> int:
    from analyzers.build import BuildError, build

    try:
        build(_cache(args), args.names or None)
    except BuildError as exc:
        print(f"vms: model build failed: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from analyzers.manifest import ManifestError, all_manifests, read_lock, status

    cache = _cache(args)
    try:
        manifests = all_manifests(cache)
        lock = read_lock(cache)
    except ManifestError as exc:
        print(f"vms: {exc}", file=sys.stderr)
        return 2
    print(f"models cache: {cache}")
    for m in manifests:
        sizes = [0] if m.user else m.sizes
        st = ", ".join(f"{m.onnx_name(s)}: {status(cache, m, s, lock)}" for s in sizes)
        print(
            f"\n{m.name}  ({'user' if m.user else m.source.get('package')})  licence: {m.licence}"
        )
        print(f"  {m.description}")
        for c in m.classes:
            rules = ", ".join(c.rules) or "-"
            print(f"  class {c.name!r:<18} → label {c.label:<12} rules: {rules}")
        print(f"  status: {st}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from analyzers.build import BuildError, add_user_model
    from analyzers.manifest import ManifestError

    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    labels = [c.strip() for c in args.labels.split(",") if c.strip()] or None
    try:
        dest = add_user_model(_cache(args), args.file, args.name, classes, labels, args.licence)
    except (ManifestError, BuildError) as exc:
        print(f"vms: {exc}", file=sys.stderr)
        return 2
    print(f"model {args.name} added: {dest}")
    return 0
