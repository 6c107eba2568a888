"""Analyzer worker process: decode (PyAV) → sample → motion gate → batched inference (ORT).

Runs in its own process (spawned), so decoding and inference never touch the event loop.
Inside it, decoding runs on its own thread and inference on the main one (both release the
GIL), so a GPU is fed while the next frames decode.  Per camera it keeps only the newest sampled
frame waiting for inference: when inference falls behind, older frames are dropped (counted as
stale), never queued.  One inference pass takes every waiting camera's crops, whole frames and
person windows alike, into one batch per model.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from .camera_detector import CameraDetector, DetectOptions, ModelRef
from .detector import ClassMap, Detection, OrtDetector
from .ring import FrameRing

THUMB = (64, 36)
FFMPEG_DECODER = {"h264": "h264", "h265": "hevc"}  # AccessUnit.codec → FFmpeg decoder name


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str
    classes: ClassMap
    size: int


@dataclass(frozen=True)
class CameraSpec:
    """What a worker needs to know about a camera (sent when its config changes)."""

    fps: float  # 0 → keyframes only
    models: list[ModelSpec]
    gate: bool = False
    gate_threshold: float = 2.0
    detect: DetectOptions = DetectOptions()

    def camera_detector(self) -> CameraDetector:
        refs = [ModelRef(m.path, m.size, frozenset(m.classes.labels)) for m in self.models]
        return CameraDetector(refs, self.detect)


@dataclass
class _Camera:
    spec: CameraSpec
    detector: CameraDetector
    codec: str = ""
    decoder: Any = None
    next_due: float = -1.0
    thumb: np.ndarray | None = None
    last_dets: list[Detection] = field(default_factory=list)
    pending: tuple[np.ndarray, int, float] | None = None  # frame, pts, wallclock
    stale: int = 0
    errors: int = 0
    reset_detector: bool = False  # a gap: the inference thread resets motion and tracks


DETECT_FLOOR = 0.2  # detector score cut: the tracker continues people on weak evidence


class Worker:
    def __init__(
        self, out: Any, ring: FrameRing, providers: list[str], threads: int, device_id: int = 0
    ) -> None:
        self.out = out
        self.ring = ring
        self.providers = providers
        self.threads = threads
        self.device_id = device_id
        self.cams: dict[str, _Camera] = {}
        self.detectors: dict[str, OrtDetector] = {}
        self.lock = threading.Lock()  # cams and their pending frames: decode vs infer thread
        self.waiting = threading.Event()  # a frame is pending

    def detector(self, m: ModelSpec) -> OrtDetector:
        if m.path not in self.detectors:
            self.detectors[m.path] = OrtDetector(
                m.name,
                Path(m.path),
                m.classes,
                self.providers,
                self.threads,
                conf=DETECT_FLOOR,
                size=m.size,
                device_id=self.device_id,
            )
        return self.detectors[m.path]

    def handle(self, msg: tuple[Any, ...]) -> bool:
        kind = msg[0]
        if kind == "stop":
            return False
        if kind == "config":
            _, cid, spec = msg
            for m in spec.models:  # sessions load outside the lock: inference goes on meanwhile
                try:
                    self.detector(m)
                except Exception as exc:  # noqa: BLE001 - report, keep serving other cameras
                    self.out.put(("error", cid, f"model {m.name}: {exc}"))
            with self.lock:
                cam = self.cams.get(cid)
                if cam is None:
                    self.cams[cid] = _Camera(spec, spec.camera_detector())
                else:
                    cam.spec, cam.next_due, cam.thumb = spec, -1.0, None
                    cam.detector = spec.camera_detector()
        elif kind == "drop":
            with self.lock:
                self.cams.pop(msg[1], None)
        elif kind == "au":
            self.decode(*msg[1:])
        elif kind == "reset":  # a gap in the stream: start again at the next keyframe
            with self.lock:
                cam = self.cams.get(msg[1])
                if cam is not None:
                    cam.decoder, cam.next_due, cam.thumb = None, -1.0, None
                    cam.reset_detector = True
        return True

    def decode(self, cid: str, pts: int, keyframe: bool, data: bytes, codec: str, wall: float):
        cam = self.cams.get(cid)
        if cam is None:
            return
        if cam.decoder is None or cam.codec != codec:
            if not keyframe:
                return
            cam.decoder = av.CodecContext.create(FFMPEG_DECODER.get(codec, codec), "r")
            cam.codec = codec
            if cam.spec.fps == 0:
                cam.decoder.skip_frame = "NONKEY"
        try:
            frames = cam.decoder.decode(av.Packet(data))
        except av.error.FFmpegError as exc:
            cam.errors += 1
            cam.decoder = None
            self.out.put(("error", cid, f"decode: {exc}"))
            return
        t = pts / 90000.0
        for frame in frames:
            if cam.spec.fps > 0:
                period = 1 / cam.spec.fps
                if cam.next_due - t > 2 * period:  # timestamps went back: a restarted stream
                    cam.next_due = -1.0
                if t < cam.next_due - 0.1 * period:  # tolerance for timestamp jitter
                    continue
                behind = cam.next_due < 0 or t - cam.next_due > period
                cam.next_due = t + period if behind else cam.next_due + period
            image = frame.to_ndarray(format="bgr24")
            with self.lock:
                if cam.pending is not None:
                    cam.stale += 1
                cam.pending = (image, pts, wall)
            self.waiting.set()

    def infer(self) -> None:
        """One pass over every camera with a waiting frame; one batch per model."""
        with self.lock:
            self.waiting.clear()
            ready = []
            for cid, cam in self.cams.items():
                if cam.pending is not None:
                    if cam.reset_detector:
                        cam.detector.reset()
                        cam.reset_detector = False
                    # the detector as of now: a new config may replace it while we infer
                    ready.append((cid, cam, cam.pending, cam.stale, cam.detector))
                    cam.pending, cam.stale = None, 0
        if not ready:
            return
        jobs: dict[str, list[tuple[str, int, np.ndarray]]] = {}  # model → (camera, job, crop)
        planned: dict[str, int] = {}
        results: dict[str, list[Detection]] = {}
        gated: set[str] = set()
        for cid, cam, (img, _, _), _, detector in ready:
            if cam.spec.gate:
                thumb = cv2.cvtColor(cv2.resize(img, THUMB), cv2.COLOR_BGR2GRAY).astype(np.int16)
                moved = cam.thumb is None or float(np.abs(thumb - cam.thumb).mean()) >= (
                    cam.spec.gate_threshold
                )
                if not moved:
                    gated.add(cid)
                    results[cid] = list(cam.last_dets)
                    continue
                cam.thumb = thumb
            crops = detector.plan(img)
            planned[cid] = len(crops)
            for j, (key, crop) in enumerate(crops):
                jobs.setdefault(key, []).append((cid, j, crop))
        t0 = time.perf_counter()
        per_job: dict[str, list[list[Detection]]] = {
            c: [[] for _ in range(n)] for c, n in planned.items()
        }
        for path, items in jobs.items():
            det = self.detectors.get(path)
            if det is None:  # did not load: reported when the camera was configured
                continue
            for (cid, j, _), dets in zip(items, det.detect([c for _, _, c in items]), strict=True):
                per_job[cid][j] = dets
        for cid, _, _, _, detector in ready:
            if cid in planned:
                results[cid] = detector.finish(per_job[cid])
        infer_ms = (time.perf_counter() - t0) * 1000 / max(1, len(ready) - len(gated))
        for cid, cam, (img, pts, wall), stale, _ in ready:
            cam.last_dets = results[cid]
            slot, seq = self.ring.write(img)
            self.out.put(
                (
                    "result",
                    cid,
                    slot,
                    seq,
                    pts,
                    wall,
                    results[cid],
                    cid in gated,
                    stale,
                    infer_ms,
                )
            )


def worker_main(
    index: int,
    inq: Any,
    out: Any,
    ring_name: str,
    slots: int,
    slot_bytes: int,
    providers: list[str],
    threads: int,
    device_id: int = 0,
) -> None:
    cv2.setNumThreads(1)  # one core per worker: no hidden thread pools competing with ORT
    # spawned children share the parent's resource tracker: the parent unlinks the segment
    ring = FrameRing(ring_name, slots, slot_bytes)
    worker = Worker(out, ring, providers, threads, device_id)
    stopping = threading.Event()
    decoder = threading.Thread(
        target=_decode_loop, args=(worker, inq, stopping), name="decode", daemon=True
    )
    decoder.start()
    out.put(("ready", index, providers))
    while not stopping.is_set():
        if not worker.waiting.wait(0.5):
            continue
        try:
            worker.infer()
        except Exception as exc:  # noqa: BLE001 - one bad frame must not kill the worker
            with worker.lock:
                for cam in worker.cams.values():
                    cam.pending = None
            out.put(("error", "", f"inference: {exc!r}"))
    decoder.join(5)
    ring.close()


def _decode_loop(worker: Worker, inq: Any, stopping: threading.Event) -> None:
    """Thread: messages from the pool (configs, access units) → decoded frames for inference."""
    try:
        while True:
            try:
                msg = inq.get(timeout=0.5)
            except queue.Empty:
                continue
            except (OSError, ValueError, EOFError):
                return
            try:
                if not worker.handle(msg):
                    return
            except Exception as exc:  # noqa: BLE001 - keep decoding the other cameras
                worker.out.put(("error", str(msg[1]) if len(msg) > 1 else "", f"decode: {exc!r}"))
    finally:
        stopping.set()
        worker.waiting.set()
