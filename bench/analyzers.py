"""Analyzer pipeline throughput vs bare onnxruntime, person model at 640 and 320 px.

Pipeline = the real AnalyzerPool: H.264 access units through the media hub's Subscription →
worker process (PyAV decode, letterbox, ORT inference, NMS) → shared-memory ring → rules on the
event loop.  Bare = ``session.run`` on the same frames, already decoded and letterboxed, in this
process with the same thread count.  One worker, one ORT thread.  Figures are frames per
CPU-second (worker + event loop for the pipeline, this process for bare), so they stay
comparable on a shared, loaded machine; wall-clock fps is printed too.

    .venv/bin/python bench/analyzers.py [--quick] [--sizes 320 640] [--providers NAME ...]

Needs ``make models``.  Every frame of the clip is a keyframe so that each access unit is one
analysed frame; units are fed one at a time (the next once the last is analysed): none dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from analyzers.config import AnalysisConfig  # noqa: E402
from analyzers.detector import OrtDetector, letterbox, to_blob  # noqa: E402
from analyzers.manifest import all_manifests, verified_path  # noqa: E402
from analyzers.pool import AnalyzerPool  # noqa: E402
from vms.config import load_settings  # noqa: E402
from vms.logging import setup_logging  # noqa: E402
from vms.media.frames import AccessUnit  # noqa: E402
from vms.media.hub import StreamHub  # noqa: E402
from vms.services import Services  # noqa: E402

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
CHANNEL = "37010000001320000001"
MODELS = REPO / "var" / "models"


def clip(n: int) -> tuple[list[AccessUnit], list]:
    """n real frames (vtest.avi, 768×576) as all-keyframe H.264 units, plus the decoded frames."""
    frames = []
    with av.open(str(VTEST)) as src:
        for f in src.decode(video=0):
            frames.append(f.to_ndarray(format="bgr24"))
            if len(frames) >= n:
                break
    h, w = frames[0].shape[:2]
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, 10)
    enc.gop_size = 1
    enc.options = {"preset": "veryfast", "x264-params": "repeat-headers=1:keyint=1"}
    units = []
    for i, img in enumerate([*frames, None]):
        if img is None:
            packets = enc.encode(None)
        else:
            vf = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
            vf.pts = i
            packets = enc.encode(vf)
        units += [AccessUnit(CHANNEL, int(p.pts) * 9000, p.is_keyframe, bytes(p)) for p in packets]
    decoded = []
    dec = av.CodecContext.create("h264", "r")
    for u in units:
        decoded += [f.to_ndarray(format="bgr24") for f in dec.decode(av.Packet(u.data))]
    decoded += [f.to_ndarray(format="bgr24") for f in dec.decode(None)]
    return units, decoded


def bare(size: int, frames: list, providers: list[str]) -> tuple[float, float]:
    """(session.run, letterbox+run+NMS) frames per CPU-second on the decoded frames."""
    m = {m.name: m for m in all_manifests(MODELS)}["person"]
    path = verified_path(MODELS, m, size)
    det = OrtDetector("person", path, m.class_map(), providers, 1, size=size)
    blobs = [to_blob([letterbox(f, size)[0]]) for f in frames]
    det.infer_blob(blobs[0])  # warm-up
    t0 = time.process_time()
    for b in blobs:
        det.infer_blob(b)
    run_fps = len(blobs) / (time.process_time() - t0)
    t0 = time.process_time()
    for f in frames:
        det.detect([f])
    return run_fps, len(frames) / (time.process_time() - t0)


async def pipeline(size: int, units: list[AccessUnit], providers: list[str]) -> tuple[float, ...]:
    """(wall frames/s, frames per CPU-second of worker + loop, worker ms/frame, loop ms/frame).

    The loop's CPU includes this benchmark's own feeding and polling, so it is an upper bound.
    """
    data = Path(tempfile.mkdtemp(prefix="vms-bench-"))
    settings = load_settings(
        server={"data_dir": data},
        analyzers={"models_dir": str(MODELS), "workers": 1, "threads": 1, "providers": providers},
    )
    services = Services(settings, None, None)  # type: ignore[arg-type]
    hub = StreamHub(services)
    pool = AnalyzerPool(settings, hub, emit=None, models_dir=MODELS)
    await pool.start()
    config = AnalysisConfig.model_validate(
        {
            "enabled": True,
            "input_size": size,
            "zones": {"all": [[0, 0], [1, 0], [1, 1], [0, 1]]},
            "rules": [{"type": "intrusion", "zones": ["all"], "confirm_s": 1, "clear_s": 1}],
        }
    )
    try:
        await pool.configure(CHANNEL, "enterprise", config)
        worker = psutil.Process(pool._procs[0].pid)
        me = psutil.Process(os.getpid())

        def st() -> dict:
            return pool.stats()[CHANNEL]

        hub.publish(units[0])  # warm-up frame: loads the model in the worker
        while st()["analysed"] < 1:
            await asyncio.sleep(0.01)
        w0, m0 = sum(worker.cpu_times()[:2]), sum(me.cpu_times()[:2])
        t0 = time.perf_counter()
        published = 1
        for u in units:
            # one unit in flight: a second one would replace the first before inference (stale)
            while published - st()["analysed"] - st()["dropped_stale"] >= 1:
                await asyncio.sleep(0.01)
            hub.publish(u)
            published += 1
        while st()["analysed"] + st()["dropped_stale"] < published:
            await asyncio.sleep(0.01)
        wall = time.perf_counter() - t0
        w_cpu = sum(worker.cpu_times()[:2]) - w0
        m_cpu = sum(me.cpu_times()[:2]) - m0
        s = st()
        assert s["dropped_queue"] == 0, s
        n = s["analysed"] - 1
        assert s["dropped_stale"] == 0, s
        return n / wall, n / (w_cpu + m_cpu), w_cpu / n * 1000, m_cpu / n * 1000
    finally:
        await pool.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer frames (< 60 s)")
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    p.add_argument("--providers", nargs="*", default=["CPUExecutionProvider"])
    a = p.parse_args()
    setup_logging("warning")
    n = {320: 24, 640: 10} if a.quick else {320: 120, 640: 40}
    print(f"person model, 768x576 H.264 (vtest.avi), providers {a.providers}, 1 worker, 1 thread")
    print("frames per CPU-second; 'wall' = pipeline frames per second of wall time")
    print(f"{'size':>5} {'frames':>6} {'bare run':>9} {'bare det':>9} {'pipeline':>9} "
          f"{'wall':>9} {'ratio':>6} {'overhead':>8}  worker/loop ms per frame")  # fmt: skip
    for size in a.sizes:
        units, frames = clip(n.get(size, 20))
        run_fps, det_fps = bare(size, frames, a.providers)
        wall_fps, per_cpu, w_ms, m_ms = asyncio.run(pipeline(size, units, a.providers))
        ratio = per_cpu / run_fps
        print(
            f"{size:>5} {len(frames):>6} {run_fps:>8.1f}/s {det_fps:>8.1f}/s {per_cpu:>8.1f}/s "
            f"{wall_fps:>8.1f}/s {ratio:>6.2f} {1 - ratio:>8.1%}  {w_ms:.1f} / {m_ms:.1f}"
            f" (bare {1000 / run_fps:.1f})"
        )
    print("ratio = pipeline / bare session.run, same frames, same run (goal: overhead < 15%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
