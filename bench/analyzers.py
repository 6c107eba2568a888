"""Analyzer pipeline throughput vs bare onnxruntime, person model at 640 and 320 px, fp32 and int8.

Pipeline = the real AnalyzerPool: H.264 access units through the media hub's Subscription →
worker process (PyAV decode, letterbox, ORT inference, NMS) → shared-memory ring → rules on the
event loop.  Bare = ``session.run`` on the same frames, already decoded and letterboxed, in this
process with the same thread count.  One worker, one ORT thread.  Figures are frames per
CPU-second (worker + event loop for the pipeline, this process for bare), so they stay
comparable on a shared, loaded machine; wall-clock fps is printed too.

    .venv/bin/python bench/analyzers.py [--quick] [--sizes 320 640] [--precisions fp32 int8]
        [--providers NAME ...] [--threads 1 2]

Cameras per core at 1 keyframe / 2 s = 2 s × pipeline frames per CPU-second.  ``--threads``
also times bare inference with more intra-op threads (frames per wall- and per CPU-second),
which is how the thread default was chosen.

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
from sip.channel_ref import ChannelRef  # noqa: E402
from vms.config import load_settings  # noqa: E402
from vms.logging import setup_logging  # noqa: E402
from vms.media.frames import AccessUnit  # noqa: E402
from vms.media.hub import StreamHub  # noqa: E402
from vms.services import Services  # noqa: E402

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
CHANNEL = "37010000001320000001"
CAMERA = ChannelRef("37010000001180000001", CHANNEL)  # the hub and the pool name (device, channel)
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


def bare(
    size: int, frames: list, providers: list[str], precision: str, threads: int = 1
) -> tuple[float, float, float]:
    """(session.run, letterbox+run+NMS) frames per CPU-second, session.run per wall-second."""
    m = {m.name: m for m in all_manifests(MODELS)}["person"]
    path = verified_path(MODELS, m, size, precision)
    det = OrtDetector("person", path, m.class_map(), providers, threads, size=size)
    blobs = [to_blob([letterbox(f, size, det.rect)[0]]) for f in frames]
    det.infer_blob(blobs[0])  # warm-up
    t0, w0 = time.process_time(), time.perf_counter()
    for b in blobs:
        det.infer_blob(b)
    run_fps = len(blobs) / (time.process_time() - t0)
    wall_fps = len(blobs) / (time.perf_counter() - w0)
    t0 = time.process_time()
    for f in frames:
        det.detect([f])
    return run_fps, len(frames) / (time.process_time() - t0), wall_fps


async def pipeline(
    size: int, units: list[AccessUnit], providers: list[str], precision: str
) -> tuple[float, ...]:
    """(wall frames/s, frames per CPU-second of worker + loop, worker ms/frame, loop ms/frame).

    The loop's CPU includes this benchmark's own feeding and polling, so it is an upper bound.
    """
    data = Path(tempfile.mkdtemp(prefix="vms-bench-"))
    settings = load_settings(
        server={"data_dir": data},
        analyzers={
            "models_dir": str(MODELS),
            "workers": 1,
            "threads": 1,
            "providers": providers,
            "precision": precision,
        },
    )
    services = Services(settings, None, None)  # type: ignore[arg-type]
    hub = StreamHub(services)
    pool = AnalyzerPool(
        settings.analyzers, hub, models_dir=MODELS, timezone=settings.server.timezone
    )
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
        await pool.configure(CAMERA, "enterprise", config)
        worker = psutil.Process(pool._procs[0].pid)
        me = psutil.Process(os.getpid())

        def st() -> dict:
            return pool.stats()[CAMERA]

        hub.publish(CAMERA, units[0])  # warm-up frame: loads the model in the worker
        while st()["analysed"] < 1:
            await asyncio.sleep(0.01)
        w0, m0 = sum(worker.cpu_times()[:2]), sum(me.cpu_times()[:2])
        t0 = time.perf_counter()
        published = 1
        for u in units:
            # one unit in flight: a second one would replace the first before inference (stale)
            while published - st()["analysed"] - st()["dropped_stale"] >= 1:
                await asyncio.sleep(0.01)
            hub.publish(CAMERA, u)
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
    p.add_argument("--quick", action="store_true", help="fewer frames (< 90 s)")
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    p.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    p.add_argument("--providers", nargs="*", default=["CPUExecutionProvider"])
    p.add_argument("--threads", type=int, nargs="*", default=[], help="also time bare ORT with N")
    a = p.parse_args()
    setup_logging("warning")
    n = {320: 24, 640: 12} if a.quick else {320: 120, 640: 40}
    print(f"person model, 768x576 H.264 (vtest.avi), providers {a.providers}, 1 worker, 1 thread")
    print("frames per CPU-second; 'wall' = pipeline frames per second of wall time;")
    print("cams/core = cameras one core serves at 1 keyframe / 2 s (2 s x pipeline frames/CPU-s)")
    head = f"{'size':>5} {'prec':>5} {'frames':>6} {'bare run':>9} {'bare det':>9} {'pipeline':>9}"
    print(f"{head} {'wall':>9} {'ratio':>6} {'overhead':>8} {'cams/core':>9}  worker/loop ms/frame")
    base: dict[int, float] = {}
    for size in a.sizes:
        units, frames = clip(n.get(size, 20))
        for precision in a.precisions:
            run_fps, det_fps, _ = bare(size, frames, a.providers, precision)
            wall_fps, per_cpu, w_ms, m_ms = asyncio.run(
                pipeline(size, units, a.providers, precision)
            )
            base.setdefault(size, run_fps)
            ratio = per_cpu / run_fps
            print(
                f"{size:>5} {precision:>5} {len(frames):>6} {run_fps:>8.1f}/s {det_fps:>8.1f}/s "
                f"{per_cpu:>8.1f}/s {wall_fps:>8.1f}/s {ratio:>6.2f} {1 - ratio:>8.1%} "
                f"{2 * per_cpu:>9.1f}  {w_ms:.1f} / {m_ms:.1f} (bare {1000 / run_fps:.1f}; "
                f"{run_fps / base[size]:.2f}x the {a.precisions[0]} bare run)"
            )
        for threads in a.threads:
            run_fps, _, wall = bare(size, frames, a.providers, a.precisions[-1], threads)
            print(
                f"{size:>5} {a.precisions[-1]:>5} bare, {threads} intra-op threads: "
                f"{run_fps:.1f} frames per CPU-second, {wall:.1f} per wall-second"
            )
    print("ratio = pipeline / bare session.run, same frames, same run (goal: overhead < 15%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
