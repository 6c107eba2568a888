"""Models: manifests, the lock file's checksums, user models, the ONNX detector on real
photos, the frame ring, and ``vms eval`` / ``vms models`` on the shared labelled folder.

The ONNX files come from ``make models`` (var/models); a missing one fails with that hint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from analyzers.build import add_user_model
from analyzers.detector import OrtDetector, letterbox, nms
from analyzers.evaluate import evaluate
from analyzers.manifest import (
    ManifestError,
    ModelMissing,
    all_manifests,
    provider_of,
    read_lock,
    status,
    verified_path,
    write_lock,
)
from analyzers.ring import FrameRing
from vms.cli import main as vms_main

from .testdata import vision

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "var" / "models"
VISION = vision()


@pytest.fixture(scope="module")
def built() -> dict:
    manifests = {m.name: m for m in all_manifests(MODELS)}
    for name in ("person", "helmet", "fire"):
        st = status(MODELS, manifests[name], 320)
        if st != "ok":
            pytest.fail(f"model {name}-320 is {st} in {MODELS}: run `make models` first")
    return manifests


def test_shipped_manifests_declare_sources_classes_and_licences() -> None:
    ms = {m.name: m for m in all_manifests(MODELS)}
    assert {"person", "helmet", "fire"} <= set(ms)
    assert ms["person"].source["file"] == "fall_detection/models/best.pt"
    assert [c.name for c in ms["helmet"].classes] == ["With Helmet", "Without Helmet"]
    assert ms["helmet"].licence == "MIT" and ms["person"].licence == "Apache-2.0"
    assert "not declared" in ms["fire"].licence
    assert ms["fire"].source["imports"] == ["fire_detector"]
    assert provider_of("no_helmet", list(ms.values())).name == "helmet"
    assert provider_of("phone", list(ms.values())) is None  # needs a user model
    assert ms["person"].classes[1].hint == "lying"


def test_lock_detects_tampering_and_missing_files(tmp_path: Path, built: dict) -> None:
    person = built["person"]
    cache = tmp_path / "models"
    cache.mkdir()
    with pytest.raises(ModelMissing, match="make models"):
        verified_path(cache, person, 320)
    shutil.copyfile(MODELS / "person-320.onnx", cache / "person-320.onnx")
    write_lock(cache, {"person-320.onnx": read_lock(MODELS)["person-320.onnx"]})
    assert status(cache, person, 320) == "ok"
    with (cache / "person-320.onnx").open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    assert status(cache, person, 320) == "checksum mismatch"
    with pytest.raises(ModelMissing, match="checksum mismatch"):
        verified_path(cache, person, 320)


def test_user_model_add_list_and_bad_files(tmp_path: Path, built: dict, capsys) -> None:
    cache = tmp_path / "models"
    src = tmp_path / "ppe.onnx"
    shutil.copyfile(MODELS / "person-320.onnx", src)  # any 2-class YOLO-style detector
    dest = add_user_model(cache, src, "ppe", ["phone", "cigarette"], licence="ours")
    assert dest.exists() and status(cache, all_manifests(cache)[-1], 0) == "ok"
    ppe = provider_of("cigarette", all_manifests(cache))
    assert ppe is not None and ppe.user and ppe.name == "ppe"
    with pytest.raises(ManifestError, match="ppe.onnx: 2 classes in the ONNX, 3 in its manifest"):
        add_user_model(cache, src, "bad", ["a", "b", "c"])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ManifestError, match="not a loadable ONNX"):
        add_user_model(cache, junk, "junk", ["a"])
    assert not (cache / "user" / "junk.onnx").exists()
    assert vms_main(["models", "list", "--dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "ppe" in out and "label cigarette" in out and "ppe.onnx: ok" in out
    assert "person-320.onnx: missing" in out  # shipped models not built in this cache
    rc = vms_main(
        ["models", "add", str(junk), "--name", "x", "--classes", "a", "--dir", str(cache)]
    )
    assert rc == 2 and "not a loadable ONNX" in capsys.readouterr().err


def test_letterbox_and_nms() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    sq, r, left, top = letterbox(img, 320)
    assert sq.shape == (320, 320, 3) and r == 1.6 and left == 0 and top == 80
    assert sq[0, 0, 0] == 114 and sq[160, 160, 0] == 0
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5) == [0, 2]


def test_person_detector_finds_people_in_real_photos(built: dict) -> None:
    m = built["person"]
    det = OrtDetector("person", verified_path(MODELS, m, 320), m.class_map(), conf=0.45, size=320)
    bus, zidane = (cv2.imread(str(VISION / n)) for n in ("bus.jpg", "zidane.jpg"))
    found = det.detect([bus, zidane])  # one batch of two (dynamic batch axis)
    assert len(found[0]) >= 2 and len(found[1]) >= 1  # at 320 px; 640 finds 3 and 2
    for d in found[1]:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 and d.label == "person"


@pytest.fixture(scope="module")
def report(built: dict):
    """At 640 px: the accuracy reference (320 px trades recall for 4x speed, see `vms eval`)."""
    for name in ("person", "helmet", "fire"):
        st = status(MODELS, built[name], 640)
        if st != "ok":
            pytest.fail(f"model {name}-640 is {st} in {MODELS}: run `make models` first")
    return evaluate(VISION, MODELS, 640, 0.45)


def test_eval_recall_person_and_no_helmet_on_labelled_photos(report) -> None:
    person, no_helmet = report.scores["person"], report.scores["no_helmet"]
    assert person.recall is not None and person.recall >= 0.75
    assert no_helmet.recall is not None and no_helmet.recall >= 0.4
    assert no_helmet.precision == 1.0
    assert "confusion summary" in report.format()


def test_fire_and_smoke_no_false_alarms_on_photos_without_fire_no_positive_images_exist(
    report,
) -> None:
    """No real fire/smoke photos ship anywhere we found: only the negative side is testable."""
    assert report.scores["fire"].fp == 0 and report.scores["smoke"].fp == 0
    assert report.scores["helmet"].fp == 0  # nobody in these photos wears a helmet


def test_vms_eval_command_prints_table(built: dict, tmp_path: Path, capsys) -> None:
    data = tmp_path / "vision"  # a two-image subset keeps the CLI test quick
    data.mkdir()
    labels = json.loads((VISION / "labels.json").read_text())
    for name in ("zidane.jpg", "coffee.png"):
        shutil.copyfile(VISION / name, data / name)
    subset = {n: labels[n] for n in ("zidane.jpg", "coffee.png")}
    (data / "labels.json").write_text(json.dumps(subset))
    args = ["eval", "--data", str(data), "--models-dir", str(MODELS), "--size", "640"]
    assert vms_main(args) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "zidane.jpg" in out and "person 2/2" in out
    assert vms_main(["eval", "--data", str(VISION.parent), "--models-dir", str(MODELS)]) == 2
    assert "labels.json" in capsys.readouterr().err


def test_frame_ring_detects_overwritten_slots() -> None:
    ring = FrameRing(None, slots=2, slot_bytes=64 * 48 * 3, create=True)
    try:
        reader = FrameRing(ring.name, 2, 64 * 48 * 3)
        a = np.full((48, 64, 3), 1, np.uint8)
        slot, seq = ring.write(a)
        assert np.array_equal(reader.read(slot, seq), a)
        ring.write(np.full((48, 64, 3), 2, np.uint8))
        ring.write(np.full((48, 64, 3), 3, np.uint8))  # wraps onto slot 0
        assert reader.read(slot, seq) is None
        big = ring.write(np.zeros((480, 640, 3), np.uint8))  # downscaled to fit a slot
        assert reader.read(*big).nbytes <= 64 * 48 * 3
        reader.close()
    finally:
        ring.close(unlink=True)
