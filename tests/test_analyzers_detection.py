"""Detection on real CCTV frames: motion windows, the ByteTrack-style tracker, rectangular input,
per-class score floors, int8/fp16 files, provider choice and IO binding (on the CPU provider),
and the acceptance figure on labelled frames of vtest.avi (person recall and precision ≥ 0.9 at
the default settings).  The ONNX files come from ``make models``; the clip and its labels from
the test-data cache (``tests/testdata.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from analyzers.bytetrack import ByteTracker
from analyzers.camera_detector import CameraDetector, DetectOptions, ModelRef
from analyzers.config import AnalysisConfig
from analyzers.detector import ClassMap, Detection, OrtDetector, input_shape, letterbox
from analyzers.evaluate import evaluate
from analyzers.manifest import all_manifests, read_lock, verified_path
from analyzers.providers import (
    BoundRunner,
    choose_providers,
    precision_for,
    provider_options,
)
from analyzers.tiling import MotionRegions, Window, cut_at_edge, merge, plan_windows, to_frame
from vms.cli import main as vms_main

from .analyzers_support import MODELS, require_model
from .testdata import vision, vtest


def det(box, score: float = 0.9, label: str = "person", hint: str = "") -> Detection:
    return Detection(label, "Normal", score, tuple(box), "person", hint)


# --- windows and motion -------------------------------------------------------------------


def test_windows_cover_only_the_regions_that_moved() -> None:
    shape = (576, 768, 3)
    assert plan_windows(shape, [(0, 0, 1, 1)], 320, max_tiles=16) and all(
        w.w == 320 and w.h == 320 for w in plan_windows(shape, [(0, 0, 1, 1)], 320, max_tiles=16)
    )
    full = plan_windows(shape, [(0, 0, 1, 1)], 320, max_tiles=16)
    assert len(full) == 6  # 3 × 2 grid at the camera's own scale, 20 % overlap
    one = plan_windows(shape, [(0.05, 0.05, 0.1, 0.1)], 320)
    assert one == [Window(0, 0, 320, 320)]
    assert plan_windows(shape, [], 320) == []  # nothing moved: no window
    assert plan_windows((300, 300, 3), [(0, 0, 1, 1)], 320) == []  # the full pass sees it all
    assert len(plan_windows(shape, [(0, 0, 1, 1)], 320, max_tiles=2)) == 2
    assert plan_windows(shape, [(0, 0, 1, 1)], 320, scale=2.0, max_tiles=1)[0].w == 160


def test_window_boxes_map_back_and_cut_people_are_dropped() -> None:
    shape = (576, 768, 3)
    win = Window(256, 0, 320, 320)
    d = to_frame(det((0.5, 0.5, 0.75, 1.0)), win, shape)
    assert d.box == pytest.approx((416 / 768, 160 / 576, 496 / 768, 320 / 576))
    assert cut_at_edge(det((0.0, 0.2, 0.2, 0.6)), win, shape)  # left edge inside the frame
    assert not cut_at_edge(det((0.2, 0.0, 0.4, 0.5)), win, shape)  # top edge is the frame's
    a, b = det((0.1, 0.1, 0.2, 0.4), 0.9), det((0.11, 0.1, 0.2, 0.38), 0.5)
    part = det((0.1, 0.1, 0.2, 0.2), 0.6)  # the head half of a
    assert merge([a, b, part]) == [a]
    other = det((0.1, 0.1, 0.2, 0.4), 0.7, label="helmet")
    assert merge([a, other]) == [a, other]  # classes never suppress each other


def test_motion_regions_find_what_changed() -> None:
    rng = np.random.default_rng(3)
    scene = rng.integers(90, 110, (576, 768, 3), dtype=np.uint8)
    motion = MotionRegions()
    assert motion.update(scene) == [(0.0, 0.0, 1.0, 1.0)]  # no background yet: all of it
    assert motion.update(scene) == []
    moved = scene.copy()
    moved[300:400, 500:540] = 250  # someone walked in
    (region,) = motion.update(moved)
    x1, y1, x2, y2 = region
    assert x1 < 500 / 768 < 540 / 768 < x2 and y1 < 300 / 576 < 400 / 576 < y2
    motion.reset()
    assert motion.update(scene) == [(0.0, 0.0, 1.0, 1.0)]


# --- tracker ----------------------------------------------------------------------------------


def test_tracker_continues_people_on_weak_evidence_and_adds_no_ghosts() -> None:
    t = ByteTracker(high=0.4, low=0.2)
    walker = [det((0.1 + 0.03 * i, 0.2, 0.15 + 0.03 * i, 0.5), s) for i, s in enumerate(
        [0.6, 0.3, 0.25, 0.55])]  # fmt: skip
    out = [t.update([d]) for d in walker]
    assert [len(o) for o in out] == [1, 1, 1, 1]
    assert [o[0].score for o in out] == [0.6, 0.6, 0.6, 0.6]  # the track's best score
    assert t.update([]) == []  # gone: held for a keyframe, but not reported
    assert len(t.tracks) == 1
    assert t.update([]) == [] and t.tracks == []
    junk = det((0.8, 0.8, 0.9, 0.9), 0.3)
    assert t.update([junk]) == [junk]  # weak and new: passed on as it is, no track
    assert t.tracks == []
    far = ByteTracker()
    far.update([det((0.10, 0.2, 0.15, 0.5), 0.6)])
    (moved,) = far.update([det((0.16, 0.2, 0.21, 0.5), 0.3)])  # no overlap: a 2 s step
    assert moved.score == 0.6


def test_camera_detector_plans_windows_and_tracks(tmp_path: Path) -> None:
    img = np.zeros((576, 768, 3), np.uint8)
    ref = ModelRef("person.onnx", 320, frozenset({"person"}))
    other = ModelRef("fire.onnx", 320, frozenset({"fire", "smoke"}))
    cam = CameraDetector([ref, other], DetectOptions(tiles="grid", max_tiles=6))
    jobs = cam.plan(img)
    assert [k for k, _ in jobs] == ["person.onnx"] * 7 + ["fire.onnx"]
    assert jobs[1][1].shape == (320, 320, 3)
    results: list[list[Detection]] = [[] for _ in jobs]
    results[0] = [det((0.1, 0.1, 0.15, 0.3), 0.5)]
    results[1] = [det((0.24, 0.18, 0.36, 0.54), 0.7)]  # window (0, 0): the same person
    results[7] = [det((0.5, 0.5, 0.6, 0.6), 0.8, label="fire")]
    out = cam.finish(results)
    assert sorted(d.label for d in out) == ["fire", "person"]
    (p,) = [d for d in out if d.label == "person"]
    assert p.score == 0.7
    off = CameraDetector([ref], DetectOptions(tiles="off", track=False))
    assert len(off.plan(img)) == 1


# --- detector input, class floors ---------------------------------------------------------------


def test_rectangular_input_keeps_the_camera_aspect() -> None:
    assert input_shape(576, 768, 640, True) == (480, 640)
    assert input_shape(1080, 1920, 640, True) == (384, 640)
    assert input_shape(1080, 1920, 640, False) == (640, 640)
    sq, r, left, top = letterbox(np.zeros((576, 768, 3), np.uint8), 640, rect=True)
    assert sq.shape == (480, 640, 3) and r == pytest.approx(640 / 768) and left == top == 0


@pytest.fixture(scope="module")
def person() -> dict:
    require_model("person", 640)
    require_model("person", 640, "int8")
    return {m.name: m for m in all_manifests(MODELS)}["person"]


def test_per_class_floor_drops_the_lying_class_on_a_cloth_but_keeps_people(person) -> None:
    """The Fall class scores a yellow cloth in vtest.avi ~0.5: its floor (0.6) drops it."""
    frame = cv2.VideoCapture(str(vtest() / "vtest.avi")).read()[1]
    path = verified_path(MODELS, person, 640)
    plain = ClassMap(*person.class_map().__dict__.values())
    plain = ClassMap(plain.names, plain.labels, plain.hints, None)
    raw = OrtDetector("person", path, plain, conf=0.4, size=640).detect([frame])[0]
    floored = OrtDetector("person", path, person.class_map(), conf=0.4, size=640).detect([frame])[0]
    cloth = [d for d in raw if d.hint == "lying" and d.box[1] > 0.8]
    assert cloth and all(d.score < 0.6 for d in cloth)
    assert not [d for d in floored if d.hint == "lying" and d.box[1] > 0.8]
    assert len([d for d in floored if not d.hint]) == len([d for d in raw if not d.hint]) >= 3


def test_int8_and_fp16_files_are_built_calibrated_and_agree_with_fp32(person) -> None:
    lock = read_lock(MODELS)
    entry = lock["person-640.int8.onnx"]
    assert entry["precision"] == "int8" and entry["calibration_frames"] >= 3
    assert lock["person-640.fp16.onnx"]["precision"] == "fp16"
    bus = cv2.imread(str(vision() / "bus.jpg"))
    counts = {}
    for precision in ("fp32", "int8", "fp16"):
        path = verified_path(MODELS, person, 640, precision)
        d = OrtDetector("person", path, person.class_map(), conf=0.4, size=640)
        counts[precision] = len(d.detect([bus])[0])
    assert counts["fp32"] >= 3 and abs(counts["int8"] - counts["fp32"]) <= 1
    assert counts["fp16"] == counts["fp32"]


# --- providers and IO binding ---------------------------------------------------------------------


def test_provider_choice_and_the_model_file_each_provider_gets() -> None:
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers([], gpu) == gpu
    assert choose_providers(["CUDAExecutionProvider"], gpu) == gpu[1:]  # CPU kept as fallback
    assert choose_providers([], ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="none of the providers"):
        choose_providers(["CUDAExecutionProvider"], ["CPUExecutionProvider"])
    built = ["fp32", "int8", "fp16"]
    assert precision_for(["CPUExecutionProvider"], "auto", built) == "int8"
    assert precision_for(gpu[1:], "auto", built) == "fp16"
    assert precision_for(gpu, "auto", built) == "fp32"  # TensorRT makes its own fp16 engine
    assert precision_for(["CPUExecutionProvider"], "auto", ["fp32"]) == "fp32"
    assert precision_for(gpu[1:], "fp32", built) == "fp32"
    with pytest.raises(ValueError, match="not built"):
        precision_for(gpu[1:], "int8", ["fp32"])
    trt, cuda, cpu = provider_options(gpu, Path("/models"), device_id=1, size=640)
    assert trt["trt_fp16_enable"] == "True" and trt["trt_engine_cache_path"] == "/models"
    assert trt["trt_profile_max_shapes"] == "images:16x3x640x640" and trt["device_id"] == "1"
    assert cuda["device_id"] == "1" and cpu == {}


def test_bound_runner_reuses_buffers_and_matches_session_run(person) -> None:
    path = verified_path(MODELS, person, 640, "int8")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    runner = BoundRunner(sess, "cpu")
    blob = np.random.default_rng(0).random((2, 3, 480, 640), np.float32)
    want = sess.run(None, {"images": blob})[0]
    assert np.allclose(runner.run(blob), want, atol=1e-4)
    blob2 = blob[::-1].copy()
    assert np.allclose(runner.run(blob2), sess.run(None, {"images": blob2})[0], atol=1e-4)
    assert list(runner.buffers) == [(2, 3, 480, 640)]  # one buffer per shape, reused


def test_one_batch_holds_several_cameras_of_one_shape(person, monkeypatch) -> None:
    d = OrtDetector("person", verified_path(MODELS, person, 640, "int8"), person.class_map())
    shapes: list[tuple] = []
    real = d.infer_blob
    monkeypatch.setattr(d, "infer_blob", lambda b: shapes.append(b.shape) or real(b))
    a = np.zeros((576, 768, 3), np.uint8)
    wide = np.zeros((1080, 1920, 3), np.uint8)
    d.detect([a, a, wide])
    assert sorted(shapes) == [(1, 3, 384, 640), (2, 3, 480, 640)]


# --- acceptance on real CCTV frames ---------------------------------------------------------------


def test_person_recall_and_precision_on_labelled_cctv_frames_at_the_defaults(person) -> None:
    """vtest.avi, 11 frames counted by eye (64 people), keyframes every 2 s in between."""
    d = AnalysisConfig().detect
    report = evaluate(
        vtest(), MODELS, AnalysisConfig().input_size, 0.4, d.options(), ["person"], "int8"
    )
    s = report.scores["person"]
    assert s.tp + s.fn == 64 and report.frames == 41
    assert s.recall >= 0.9 and s.precision >= 0.9, report.format()


def test_the_old_default_missed_nearly_everyone(person) -> None:
    """Why the default changed: the whole frame at 320 finds almost none of these people."""
    require_model("person", 320)
    opts = DetectOptions(tiles="off", track=False)
    s = evaluate(vtest(), MODELS, 320, 0.4, opts, ["person"]).scores["person"]
    assert s.recall < 0.3


def test_eval_person_count_min_and_cli_flags(person, tmp_path: Path, capsys) -> None:
    data = tmp_path / "crowd"
    data.mkdir()
    (data / "bus.jpg").write_bytes((vision() / "bus.jpg").read_bytes())
    (data / "labels.json").write_text(json.dumps({"bus.jpg": {"person_count_min": 2}}))
    report = evaluate(data, MODELS, 640, 0.4, DetectOptions(track=False), ["person"])
    s = report.scores["person"]
    assert s.tp == 2 and s.fp == 0 and s.fn == 0  # more than 2 found: not false positives
    args = ["eval", "--data", str(vtest()), "--models-dir", str(MODELS), "--models", "person"]
    assert vms_main([*args, "--precision", "int8", "--no-track", "--size", "640"]) == 0
    out = capsys.readouterr().out
    assert "640px int8" in out and "tracker off" in out and "frame 720" in out
    (data / "labels.json").write_text("{not json")
    assert vms_main(["eval", "--data", str(data), "--models-dir", str(MODELS)]) == 2
    assert "labels.json" in capsys.readouterr().err
