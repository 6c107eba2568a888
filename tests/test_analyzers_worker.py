"""The worker's data path in-process (no spawn): keyframe-only decode, N-fps sampling, stale-frame
dropping, motion gating and one inference batch across cameras per model."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import pytest

from analyzers.manifest import all_manifests, verified_path
from analyzers.ring import FrameRing
from analyzers.worker import CameraSpec, ModelSpec, Worker

from .analyzers_support import MODELS, VISION, pedestrian_clip, require_model

CAM_A, CAM_B = "37010000001320000001", "37010000001320000002"


class Out(list):
    def put(self, item) -> None:
        self.append(item)


@pytest.fixture
def worker():
    require_model("person", 640, "int8")  # the serving default on CPU
    m = {m.name: m for m in all_manifests(MODELS)}["person"]
    spec = ModelSpec("person", str(verified_path(MODELS, m, 640, "int8")), m.class_map(), 640)
    ring = FrameRing(None, 8, create=True)
    out = Out()
    w = Worker(out, ring, ["CPUExecutionProvider"], 1)
    yield w, out, spec
    ring.close(unlink=True)


def results(out: Out) -> list[tuple]:
    return [m for m in out if m[0] == "result"]


def feed(w: Worker, units, cid: str) -> None:
    for u in units:
        w.handle(("au", cid, u.pts, u.keyframe, u.data, "h264", u.wallclock))


@pytest.fixture(scope="module")
def units():
    return pedestrian_clip(people_s=2.0, empty_s=0.0)  # 20 frames, keyframes at 0 s and 1 s


def test_one_batch_across_cameras_and_results_in_the_ring(worker, units) -> None:
    w, out, spec = worker
    for cid in (CAM_A, CAM_B):
        w.handle(("config", cid, CameraSpec(fps=0, models=[spec])))
    det = w.detector(spec)
    calls: list[int] = []
    real = det.detect
    det.detect = lambda frames: calls.append(len(frames)) or real(frames)  # type: ignore[method-assign]
    feed(w, units[:1], CAM_A)
    feed(w, units[:1], CAM_B)
    w.infer()
    assert calls == [2]  # both cameras' frames in one session.run
    got = {r[1]: r for r in results(out)}
    assert set(got) == {CAM_A, CAM_B}
    _, _, slot, seq, pts, _, dets, gated, stale, _ = got[CAM_A]
    assert pts == 0 and not gated and stale == 0 and any(d.label == "person" for d in dets)
    frame = w.ring.read(slot, seq)
    assert frame is not None and frame.shape == (576, 768, 3)


def test_keyframes_only_skips_other_frames_and_newest_frame_wins(worker, units) -> None:
    w, out, spec = worker
    w.handle(("config", CAM_A, CameraSpec(fps=0, models=[spec])))
    feed(w, units, CAM_A)  # both keyframes decoded before inference: the older one is stale
    w.infer()
    (r,) = results(out)
    assert r[4] == 90000 and r[8] == 1  # pts of the 1 s keyframe, one stale drop


def test_fps_sampling_and_motion_gate(worker, units) -> None:
    w, out, spec = worker
    w.handle(("config", CAM_A, CameraSpec(fps=5, models=[spec], gate=True, gate_threshold=50)))
    for u in units:
        feed(w, [u], CAM_A)
        w.infer()
    rs = results(out)
    assert [r[4] for r in rs] == [i * 18000 for i in range(10)]  # 5 of 10 fps, by pts
    gated = [r[7] for r in rs]
    assert gated[0] is False and all(gated[1:])  # a walking crowd moves < 50 grey levels
    assert all(r[6] == rs[0][6] for r in rs[1:])  # gated frames reuse the last detections


def test_decoder_waits_for_keyframe_after_reset(worker, units) -> None:
    w, out, spec = worker
    w.handle(("config", CAM_A, CameraSpec(fps=30, models=[spec])))
    w.handle(("reset", CAM_A))
    feed(w, units[1:10], CAM_A)  # no keyframe among these: nothing decodable
    w.infer()
    assert results(out) == []
    feed(w, units[10:11], CAM_A)
    w.infer()
    assert [r[4] for r in results(out)] == [90000]


def test_unknown_model_file_is_reported_not_fatal(worker, tmp_path: Path) -> None:
    w, out, spec = worker
    broken = ModelSpec("x", str(tmp_path / "missing.onnx"), spec.classes, 320)
    w.handle(("config", CAM_A, CameraSpec(fps=0, models=[broken])))
    assert out and out[0][0] == "error" and "model x" in out[0][2]


def test_h265_keyframes_decode(worker) -> None:
    w, out, spec = worker
    img = cv2.imread(str(VISION / "zidane.jpg"))
    enc = av.CodecContext.create("libx265", "w")
    enc.width, enc.height, enc.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
    enc.time_base = Fraction(1, 10)
    enc.options = {"x265-params": "keyint=1:repeat-headers=1:log-level=error"}
    vf = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
    vf.pts = 0
    packets = [*enc.encode(vf), *enc.encode(None)]
    w.handle(("config", CAM_A, CameraSpec(fps=0, models=[spec])))
    w.handle(("au", CAM_A, 0, True, bytes(packets[0]), "h265", 0.0))
    w.infer()
    (r,) = results(out)
    assert any(d.label == "person" for d in r[6])


def test_restarted_stream_with_timestamps_from_zero_is_sampled_again(worker, units) -> None:
    w, out, spec = worker
    w.handle(("config", CAM_A, CameraSpec(fps=2, models=[spec])))
    for restart in (False, True):
        if restart:
            w.handle(("reset", CAM_A))
        for u in units[:10]:
            feed(w, [u], CAM_A)
            w.infer()
    assert [r[4] for r in results(out)] == [0, 45000, 0, 45000]
