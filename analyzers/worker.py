"""Analyzer worker process: decode (PyAV) → sample → motion gate → batched inference (ORT).

Runs in its own process (spawned), so decoding and inference never touch the event loop.
Per camera it keeps only the newest sampled frame waiting for inference: when inference
falls behind, older frames are dropped (counted as stale), never queued.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from .detector import ClassMap, Detection, OrtDetector
from .ring import FrameRing

THUMB = (64, 36)
FFMPEG_DECODER = {"h264": "h264", "h265": "hevc"}  # AccessUnit.codec → FFmpeg decoder name
DRAIN_MAX = 256  # messages handled between two inference passes


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


@dataclass
class _Camera:
    spec: CameraSpec
    codec: str = ""
    decoder: Any = None
    next_due: float = -1.0
    thumb: np.ndarray | None = None
    last_dets: list[Detection] = field(default_factory=list)
    pending: tuple[np.ndarray, int, float] | None = None  # frame, pts, wallclock
    stale: int = 0
    errors: int = 0


class Worker:
    def __init__(self, out: Any, ring: FrameRing, providers: list[str], threads: int) -> None:
        self.out = out
        self.ring = ring
        self.providers = providers
        self.threads = threads
        self.cams: dict[str, _Camera] = {}
        self.detectors: dict[str, OrtDetector] = {}

    def detector(self, m: ModelSpec) -> OrtDetector:
        if m.path not in self.detectors:
            self.detectors[m.path] = OrtDetector(
                m.name, Path(m.path), m.classes, self.providers, self.threads, size=m.size
            )
        return self.detectors[m.path]

    def handle(self, msg: tuple[Any, ...]) -> bool:
        kind = msg[0]
        if kind == "stop":
            return False
        if kind == "config":
            _, cid, spec = msg
            cam = self.cams.get(cid)
            if cam is None:
                self.cams[cid] = _Camera(spec)
            else:
                cam.spec, cam.next_due, cam.thumb = spec, -1.0, None
            for m in spec.models:
                try:
                    self.detector(m)
                except Exception as exc:  # noqa: BLE001 - report, keep serving other cameras
                    self.out.put(("error", cid, f"model {m.name}: {exc}"))
        elif kind == "drop":
            self.cams.pop(msg[1], None)
        elif kind == "au":
            self.decode(*msg[1:])
        elif kind == "reset":  # a gap in the stream: start again at the next keyframe
            cam = self.cams.get(msg[1])
            if cam is not None:
                cam.decoder, cam.next_due, cam.thumb = None, -1.0, None
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
            if cam.pending is not None:
                cam.stale += 1
            cam.pending = (frame.to_ndarray(format="bgr24"), pts, wall)

    def infer(self) -> None:
        """One pass over every camera with a waiting frame; one batch per model."""
        ready = [(cid, cam) for cid, cam in self.cams.items() if cam.pending is not None]
        if not ready:
            return
        jobs: dict[str, list[tuple[str, np.ndarray]]] = {}
        results: dict[str, list[Detection]] = {}
        gated: set[str] = set()
        for cid, cam in ready:
            img = cam.pending[0]  # type: ignore[index]
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
            results[cid] = []
            for m in cam.spec.models:
                jobs.setdefault(m.path, []).append((cid, img))
        t0 = time.perf_counter()
        specs = {m.path: m for _, cam in ready for m in cam.spec.models}
        for path, items in jobs.items():
            det = self.detector(specs[path])
            per_frame = det.detect([img for _, img in items])
            for (cid, _), dets in zip(items, per_frame, strict=True):
                results[cid].extend(dets)
        infer_ms = (time.perf_counter() - t0) * 1000 / max(1, len(ready) - len(gated))
        for cid, cam in ready:
            img, pts, wall = cam.pending  # type: ignore[misc]
            cam.pending = None
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
                    cam.stale,
                    infer_ms,
                )
            )
            cam.stale = 0


def worker_main(
    index: int,
    inq: Any,
    out: Any,
    ring_name: str,
    slots: int,
    slot_bytes: int,
    providers: list[str],
    threads: int,
) -> None:
    cv2.setNumThreads(1)  # one core per worker: no hidden thread pools competing with ORT
    # spawned children share the parent's resource tracker: the parent unlinks the segment
    ring = FrameRing(ring_name, slots, slot_bytes)
    worker = Worker(out, ring, providers, threads)
    out.put(("ready", index, providers))
    running = True
    while running:
        try:
            msgs = [inq.get(timeout=0.5)]
        except queue.Empty:
            continue
        while len(msgs) < DRAIN_MAX:
            try:
                msgs.append(inq.get_nowait())
            except queue.Empty:
                break
        for msg in msgs:
            if not worker.handle(msg):
                running = False
                break
        if running:
            try:
                worker.infer()
            except Exception as exc:  # noqa: BLE001 - one bad frame must not kill the worker
                for cam in worker.cams.values():
                    cam.pending = None
                out.put(("error", "", f"inference: {exc!r}"))
    ring.close()
