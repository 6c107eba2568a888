"""``vms models build``: export the package weights named by the manifests to ONNX.

torch and ultralytics live only in a separate venv (``.venv-models``) that this module creates
and drives with subprocesses; the server's own venv never imports them.  Each ONNX file is
loaded in onnxruntime and run once before its sha256 goes into the lock file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .manifest import (
    USER_DIR,
    Manifest,
    ManifestError,
    all_manifests,
    model_file,
    read_lock,
    sha256_file,
    status,
    write_lock,
)

REPO = Path(__file__).resolve().parent.parent
BUILD_VENV = REPO / ".venv-models"
EXPORT_SCRIPT = Path(__file__).resolve().parent / "export_onnx.py"
QUANTIZE_SCRIPT = Path(__file__).resolve().parent / "quantize_onnx.py"
# Real frames for int8 calibration: the pedestrian clip of Debian's opencv-doc when installed,
# and the photos ultralytics ships (always in the build venv).
CALIBRATION_CLIP = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
CALIBRATION_ASSETS = ["ultralytics/assets/bus.jpg", "ultralytics/assets/zidane.jpg"]
# torch pinned to the release this project is tested with; other versions download gigabytes.
TORCH_PINS = ["torch==2.14.1", "torchvision==0.29.1", "ultralytics"]
EXPORT_TOOLS = ["onnx>=1.12,<2", "onnxslim>=0.1.82", "onnxruntime"]

Log = Callable[[str], None]


class BuildError(RuntimeError):
    pass


def _run(cmd: list[str], log: Log) -> str:
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BuildError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc.stdout


def ensure_build_venv(manifests: list[Manifest], venv: Path, log: Log) -> Path:
    """Create the build venv and install torch, ultralytics and the weight packages (no deps)."""
    py = venv / "bin" / "python"
    if not py.exists():
        _run([sys.executable, "-m", "venv", str(venv)], log)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    probe = subprocess.run(
        [str(py), "-c", "import ultralytics, onnx, onnxslim"], capture_output=True
    )
    if probe.returncode != 0:
        _run(pip + TORCH_PINS, log)
        _run(pip + EXPORT_TOOLS, log)
    wanted = sorted(
        {
            f"{m.source['package']}=={m.source['version']}"
            for m in manifests
            if m.source.get("kind") == "package"
        }
    )
    missing = [w for w in wanted if not _has_dist(py, w)]
    if missing:  # --no-deps: each of these pulls torch + CUDA wheels otherwise
        _run(pip + ["--no-deps", *missing], log)
    return py


def _has_dist(py: Path, req: str) -> bool:
    name, version = req.split("==")
    code = f"import importlib.metadata as m,sys; sys.exit(m.version({name!r}) != {version!r})"
    return subprocess.run([str(py), "-c", code], capture_output=True).returncode == 0


def _quiet(_: str) -> None:
    pass


def package_file(py: Path, package_file_rel: str) -> Path:
    out = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], _quiet)
    path = Path(out.strip()) / package_file_rel
    if not path.exists():
        raise BuildError(f"{package_file_rel} not found in the build venv's site-packages")
    return path


def verify_onnx(path: Path, manifest: Manifest, size: int, shown: str = "") -> dict[str, object]:
    """Load in onnxruntime, run one zero image, check the class count against the manifest."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    side = inp.shape[2] if isinstance(inp.shape[2], int) else size
    out = sess.run(None, {inp.name: np.zeros((1, 3, side, side), np.float32)})[0]
    if out.shape[1] - 4 != len(manifest.classes):
        raise BuildError(
            f"{shown or path.name}: {out.shape[1] - 4} classes in the ONNX, "
            f"{len(manifest.classes)} in its manifest"
        )
    return {
        "input": [d if isinstance(d, int) else str(d) for d in inp.shape],
        "classes": out.shape[1] - 4,
    }


def record(
    cache: Path,
    path: Path,
    manifest: Manifest,
    size: int,
    info: dict[str, object],
    precision: str = "fp32",
) -> None:
    lock = read_lock(cache)
    lock[str(path.relative_to(cache))] = {
        "model": manifest.name,
        "size": path.stat().st_size,
        "imgsz": size,
        "precision": precision,
        "sha256": sha256_file(path),
        "source": manifest.source,
        "licence": manifest.licence,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **info,
    }
    write_lock(cache, lock)


def build(
    cache: Path, names: list[str] | None = None, venv: Path = BUILD_VENV, log: Log = print
) -> int:
    """Export every package model (or ``names``) at its sizes; skip files already verified."""
    cache.mkdir(parents=True, exist_ok=True)
    manifests = [m for m in all_manifests(cache) if not m.user and (not names or m.name in names)]
    if names and len(manifests) != len(set(names)):
        known = [m.name for m in all_manifests(cache)]
        raise BuildError(f"unknown model in {names}; known: {known}")
    lock = read_lock(cache)
    todo = [
        (m, s, p)
        for m in manifests
        for s in m.sizes
        for p in m.precisions
        if status(cache, m, s, lock, p) != "ok"
    ]
    if not todo:
        log(f"models up to date in {cache}")
        return 0
    t0 = time.monotonic()
    py = ensure_build_venv([m for m, _, _ in todo], venv, log)
    # fp32 exports first: the int8 and fp16 files are made from them
    for m, size, _ in [t for t in todo if t[2] == "fp32"]:
        src = package_file(py, m.source["file"])
        out = model_file(cache, m, size)
        cmd = [str(py), str(EXPORT_SCRIPT), str(src), str(out), "--imgsz", str(size)]
        if m.dynamic_batch:
            cmd.append("--dynamic")
        for mod in m.source.get("imports", []):
            cmd += ["--import", mod]
        meta = json.loads(_run(cmd, _quiet).strip().splitlines()[-1])
        if meta["classes"] != [c.name for c in m.classes]:
            out.unlink(missing_ok=True)
            raise BuildError(f"{m.name}: weights have classes {meta['classes']}, manifest differs")
        record(cache, out, m, size, verify_onnx(out, m, size))
        log(f"built {out.name} ({out.stat().st_size // 1024} KiB)")
    calib = calibration_sources(py)
    for m, size, precision in [t for t in todo if t[2] != "fp32"]:
        src = model_file(cache, m, size)
        out = model_file(cache, m, size, precision)
        cmd = [str(py), str(QUANTIZE_SCRIPT), str(src), str(out), "--mode", precision]
        cmd += ["--imgsz", str(size)]
        for c in calib if precision == "int8" else []:
            cmd += ["--calib", str(c)]
        info = json.loads(_run(cmd, _quiet).strip().splitlines()[-1])
        record(cache, out, m, size, verify_onnx(out, m, size) | info, precision)
        log(f"built {out.name} ({out.stat().st_size // 1024} KiB)")
    log(f"built {len(todo)} model file(s) in {time.monotonic() - t0:.0f} s")
    return len(todo)


def calibration_sources(py: Path) -> list[Path]:
    """Real frames for int8 calibration: the CCTV clip if installed, and ultralytics' photos."""
    out = [CALIBRATION_CLIP] if CALIBRATION_CLIP.is_file() else []
    for rel in CALIBRATION_ASSETS:
        try:
            out.append(package_file(py, rel))
        except BuildError:
            continue
    return out


def add_user_model(
    cache: Path,
    src: Path,
    name: str,
    classes: list[str],
    labels: list[str] | None = None,
    licence: str = "user-supplied",
) -> Path:
    """Copy a user's ONNX into the cache with a manifest; verify it before recording it."""
    if not name.isidentifier():
        raise ManifestError(f"model name {name!r} must be a plain identifier")
    labels = labels or classes
    if len(labels) != len(classes):
        raise ManifestError("--labels needs one label per class")
    if not src.is_file():
        raise ManifestError(f"{src}: no such file")
    user = cache / USER_DIR
    user.mkdir(parents=True, exist_ok=True)
    dest = user / f"{name}.onnx"
    toml = user / f"{name}.toml"
    lines = [
        f'name = "{name}"',
        f'description = "user model from {src.name}"',
        f"licence = {json.dumps(licence)}",
        "dynamic_batch = false",
        "",
        "[source]",
        'kind = "user"',
        f"file = {json.dumps(src.name)}",
        "",
    ]
    for c, lab in zip(classes, labels, strict=True):
        lines += ["[[classes]]", f"name = {json.dumps(c)}", f"label = {json.dumps(lab)}", ""]
    tmp_onnx = dest.with_suffix(".onnx.tmp")
    shutil.copyfile(src, tmp_onnx)
    tmp_toml = toml.with_suffix(".toml.tmp")
    tmp_toml.write_text("\n".join(lines))
    from .manifest import parse_manifest

    manifest = parse_manifest(tmp_toml)
    try:
        info = verify_onnx(tmp_onnx, manifest, 640, shown=src.name)
    except BuildError as exc:
        tmp_onnx.unlink()
        tmp_toml.unlink()
        raise ManifestError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises many kinds for a bad file
        tmp_onnx.unlink()
        tmp_toml.unlink()
        raise ManifestError(f"{src}: not a loadable ONNX detector ({exc})") from None
    tmp_onnx.replace(dest)
    tmp_toml.replace(toml)
    record(cache, dest, parse_manifest(toml), 0, info)
    return dest
