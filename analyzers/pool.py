"""The analyzer pool: hub subscriptions → worker processes → rules → AlarmEvents.

Event loop side only moves bytes and small results: each camera's feed task forwards access
units (keyframes only, or all of them when a rule wants N fps) to the camera's worker through
a bounded queue; a full queue drops units and waits for the next keyframe.  Workers decode,
infer and put the analysed frame in a shared-memory ring; the loop runs the rules on the
detections and reads pixels from the ring only to draw the alarm pictures (in a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import structlog

from rtp.units import AccessUnit, Gap
from sip.channel_ref import ChannelRef

from .catalog import REPORT_REASON
from .config import AnalysisConfig
from .detector import choose_providers
from .engine import ActiveAlarm, CameraEngine, ConfigRejected, Fired
from .events import AlarmEvent, AlarmStatus
from .frame_source import FrameSource, FrameSubscription
from .manifest import all_manifests, built_precisions, provider_of, verified_path
from .providers import precision_for
from .ring import DEFAULT_SLOT_BYTES, FrameRing
from .rules import FrameView
from .settings import AnalyzerSettings
from .snapshot import pictures
from .worker import CameraSpec, ModelSpec, worker_main

log = structlog.get_logger("analyzers.pool")

Emit = Callable[[AlarmEvent], Awaitable[None]]
FPS_WINDOW_S = 10.0
RESUMED_NOT_TAKEN = "rule no longer analysed"


class ResumeSource(Protocol):
    """Where a restarted pool finds the alarms still active (the node's database)."""

    async def active(self, channel: ChannelRef) -> list[ActiveAlarm]: ...

    async def orphaned(
        self, channel: ChannelRef | None, alarms: list[ActiveAlarm], reason: str
    ) -> None:
        """Clear alarms that no analysed rule continues (system clear with a note)."""


PLACEHOLDER = np.full((360, 640, 3), 96, np.uint8)  # when the frame left the ring already


@dataclass
class CameraStats:
    received: int = 0  # access units from the hub
    sent: int = 0  # forwarded to the worker
    dropped_queue: int = 0  # worker queue full → dropped until the next keyframe
    dropped_stale: int = 0  # decoded but replaced by a newer frame before inference
    gated: int = 0  # motion gate skipped inference
    analysed: int = 0
    alarms: int = 0
    clears: int = 0
    errors: int = 0
    last_error: str = ""
    infer_ms: float = 0.0
    times: deque[float] = field(default_factory=lambda: deque(maxlen=1024))

    def fps(self, now: float) -> float:
        recent = [t for t in self.times if now - t <= FPS_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)


@dataclass
class _Camera:
    channel: ChannelRef
    profile: str
    config: AnalysisConfig
    engine: CameraEngine
    worker: int
    sub: FrameSubscription | None = None
    task: asyncio.Task[None] | None = None
    need_key: bool = True
    last_frame: tuple[int, int] | None = None  # (slot, seq) in the worker's ring
    last_t: float = 0.0
    stats: CameraStats = field(default_factory=CameraStats)

    @property
    def channel_id(self) -> str:
        return self.channel.channel_id

    @property
    def key(self) -> str:
        """The camera's name in the worker processes (a plain string crosses the pipe)."""
        return self.channel.slug


class AnalyzerPool:
    name = "analyzers"

    def __init__(
        self,
        cfg: AnalyzerSettings,
        frames: FrameSource | None,
        *,
        models_dir: Path,
        timezone: str,
        emit: Emit | None = None,
        resume: ResumeSource | None = None,
    ) -> None:
        """``timezone``: the sites' local time, in which rule schedules are written."""
        self.cfg = cfg
        self.frames = frames
        self.emit = emit
        self.models_dir = models_dir
        self.tz = ZoneInfo(timezone)
        self.cams: dict[ChannelRef, _Camera] = {}
        self.providers: list[str] = []
        self._procs: list[Any] = []
        self._inqs: list[Any] = []
        self._rings: list[FrameRing] = []
        self._out: Any = None
        self._results: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._dispatch: asyncio.Task[None] | None = None
        self._ready: set[int] = set()
        self.resume = resume
        self._background: set[asyncio.Task[None]] = set()

    # --- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        self.providers = choose_providers(self.cfg.providers)
        ctx = mp.get_context("spawn")  # fork would copy the loop's threads and ORT state
        self._out = ctx.Queue()
        for i in range(self.cfg.workers):
            ring = FrameRing(None, self.cfg.ring_slots, DEFAULT_SLOT_BYTES, create=True)
            inq = ctx.Queue(maxsize=self.cfg.queue_size)
            args = (i, inq, self._out, ring.name, ring.slots, ring.slot_bytes, self.providers)
            proc = ctx.Process(
                target=worker_main,
                args=(*args, self.cfg.threads, self.cfg.device_id),
                name=f"analyzer-{i}",
                daemon=True,
            )
            proc.start()
            self._rings.append(ring)
            self._inqs.append(inq)
            self._procs.append(proc)
        loop = asyncio.get_running_loop()
        self._reader = threading.Thread(target=self._read, args=(loop,), daemon=True)
        self._reader.start()
        self._dispatch = asyncio.create_task(self._run_dispatch(), name="analyzer-dispatch")
        deadline = time.monotonic() + 60
        while len(self._ready) < len(self._procs):
            if time.monotonic() > deadline or any(not p.is_alive() for p in self._procs):
                await self.stop()
                raise RuntimeError("analyzer workers did not start")
            await asyncio.sleep(0.05)
        log.info("analyzer pool started", workers=len(self._procs), providers=self.providers)

    async def stop(self) -> None:
        """Stop without clearing: active alarms stay active in the database on purpose.

        A shutdown is not the end of the condition; faking clears would tell the province
        that a fire or an intrusion ended when nobody looked.  The next start seeds the
        cameras' state machines from the database (``ResumeSource``), so the same ALARM_ID
        is cleared once the rule has really been false for its clear time.
        """
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for cid in list(self.cams):
            await self.remove(cid, emit_clears=False)
        for inq in self._inqs:
            with contextlib.suppress(Exception):
                inq.put(("stop",), timeout=1)
        for proc in self._procs:
            await asyncio.to_thread(proc.join, 10)
            if proc.is_alive():
                proc.terminate()
                await asyncio.to_thread(proc.join, 5)
        self._stop.set()
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 2)
        if self._dispatch is not None:
            self._dispatch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatch
        for q in [*self._inqs, self._out]:
            if q is not None:
                q.close()
                q.cancel_join_thread()
        for ring in self._rings:
            ring.close(unlink=True)
        self._procs, self._inqs, self._rings, self._out = [], [], [], None

    # --- cameras ------------------------------------------------------------------

    def model_specs(self, config: AnalysisConfig) -> list[ModelSpec]:
        """The ONNX models a config needs; a clear error if one is missing or not built."""
        manifests = all_manifests(self.models_dir)
        specs: dict[str, ModelSpec] = {}
        for label in sorted(config.labels()):
            m = provider_of(label, manifests)
            if m is None:
                raise ConfigRejected(
                    f"no model provides the label {label!r}: register one with "
                    f"`vms models add FILE.onnx --name NAME --classes ... --labels {label}`"
                )
            size = 0 if m.user else config.input_size
            built = built_precisions(self.models_dir, m, size) or ["fp32"]
            try:
                precision = precision_for(self.providers, self.cfg.precision, built)
            except ValueError as exc:
                raise ConfigRejected(f"model {m.name}: {exc}") from None
            path = verified_path(self.models_dir, m, size, precision)
            specs[m.name] = ModelSpec(m.name, str(path), m.class_map(), size or 640)
        return list(specs.values())

    async def configure(self, channel: ChannelRef, profile: str, config: AnalysisConfig) -> None:
        """Apply a camera's config (replacing the old one); raises before touching a working one."""
        if not isinstance(channel, ChannelRef):
            raise TypeError(f"a camera is a ChannelRef (device, channel), not {channel!r}")
        if not config.enabled or not any(r.enabled for r in config.rules):
            await self.remove(channel)
            return
        if self.frames is None:
            raise ConfigRejected("this analyzer pool has no frame source")
        engine = CameraEngine(channel.channel_id, profile, config)
        models = self.model_specs(config)
        await self.remove(channel)  # clears the old engine's alarms (committed when awaited)
        left = await self._seed(channel, engine)
        load = [0] * len(self._procs)
        for cam in self.cams.values():
            load[cam.worker] += 1
        worker = load.index(min(load))
        spec = CameraSpec(
            fps=config.wanted_fps(),
            models=models,
            gate=config.motion_gate.enabled,
            gate_threshold=config.motion_gate.threshold,
            detect=config.detect.options(),
        )
        cam = _Camera(channel, profile, config, engine, worker)
        await asyncio.to_thread(self._inqs[worker].put, ("config", cam.key, spec), True, 10)
        cam.sub = self.frames.subscribe(channel, "analyzer")
        cam.task = asyncio.create_task(self._feed(cam), name=f"analyzer-feed-{channel}")
        self.cams[channel] = cam
        log.info("camera analysis on", channel=str(channel), profile=profile, worker=worker)
        if left and self.resume is not None:  # after the camera is on: the clear gets a frame
            task = asyncio.create_task(
                self.resume.orphaned(channel, left, RESUMED_NOT_TAKEN),
                name=f"analyzer-orphans-{channel}",
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _seed(self, channel: ChannelRef, engine: CameraEngine) -> list[ActiveAlarm]:
        """Continue the camera's still-active alarms; return those no rule takes."""
        if self.resume is None:
            return []
        try:
            found = await self.resume.active(channel)
        except Exception as exc:  # noqa: BLE001 - analysis goes on; a duplicate beats no alarm
            log.error("active alarms not read: not resumed", channel=str(channel), error=repr(exc))
            return []
        left = engine.resume(found)
        if engine.active_ids():
            ids = sorted(engine.active_ids())
            log.info("alarms resumed", channel=str(channel), alarm_ids=ids)
        return left

    def active_alarm_ids(self) -> set[str]:
        """ALARM_IDs the analysed cameras' state machines hold open."""
        return {a for cam in self.cams.values() for a in cam.engine.active_ids()}

    async def latest_frame(self, channel: ChannelRef | None, within_s: float) -> np.ndarray | None:
        """The camera's newest analysed frame, waiting up to ``within_s`` for one to come;
        None at once for a camera that is not analysed (no frames will come)."""
        deadline = time.monotonic() + within_s
        while True:
            cam = self.cams.get(channel) if channel is not None else None
            img = None if cam is None else self._frame(cam, cam.last_frame)
            if img is not None or cam is None or time.monotonic() >= deadline:
                return img
            await asyncio.sleep(0.05)

    async def remove(self, channel: ChannelRef, emit_clears: bool = True) -> None:
        cam = self.cams.pop(channel, None)
        if cam is None:
            return
        if cam.task is not None:
            cam.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cam.task
        if cam.sub is not None:
            cam.sub.close()
        with contextlib.suppress(queue.Full):
            self._inqs[cam.worker].put_nowait(("drop", cam.key))
        fired = cam.engine.close(cam.last_t)
        if emit_clears:
            for f in fired:
                await self._emit(cam, f, self._frame(cam, cam.last_frame), time.time())
        log.info("camera analysis off", channel=str(channel))

    def stats(self) -> dict[ChannelRef, dict[str, Any]]:
        now = time.monotonic()
        out = {}
        for ref, cam in self.cams.items():
            s = cam.stats
            out[ref] = {
                "device_id": ref.device_id,
                "channel_id": ref.channel_id,
                "profile": cam.profile,
                "worker": cam.worker,
                "fps": round(s.fps(now), 3),
                "received": s.received,
                "sent": s.sent,
                "analysed": s.analysed,
                "dropped_queue": s.dropped_queue,
                "dropped_stale": s.dropped_stale,
                "gated": s.gated,
                "alarms": s.alarms,
                "clears": s.clears,
                "errors": s.errors,
                "last_error": s.last_error,
                "infer_ms": round(s.infer_ms, 1),
                "rules": [r.key for r in cam.config.rules if r.enabled],
            }
        return out

    # --- data path ------------------------------------------------------------------

    async def _feed(self, cam: _Camera) -> None:
        inq = self._inqs[cam.worker]
        keyframes_only = cam.config.wanted_fps() == 0
        async for item in cam.sub:
            if isinstance(item, Gap):
                cam.need_key = True
                with contextlib.suppress(queue.Full):
                    inq.put_nowait(("reset", cam.key))
                continue
            assert isinstance(item, AccessUnit)
            cam.stats.received += 1
            if (keyframes_only or cam.need_key) and not item.keyframe:
                continue
            msg = ("au", cam.key, item.pts, item.keyframe, item.data, str(item.codec))
            try:
                inq.put_nowait((*msg, item.wallclock or time.time()))
            except queue.Full:
                cam.stats.dropped_queue += 1
                cam.need_key = True
                continue
            cam.need_key = False
            cam.stats.sent += 1

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thread: results from the workers' shared queue onto the event loop."""
        while not self._stop.is_set():
            try:
                item = self._out.get(timeout=0.2)
            except queue.Empty:
                continue
            except (OSError, ValueError, EOFError):
                return
            try:
                loop.call_soon_threadsafe(self._results.put_nowait, item)
            except RuntimeError:  # loop closed
                return

    async def _run_dispatch(self) -> None:
        while True:
            item = await self._results.get()
            try:
                await self._handle(item)
            except Exception as exc:  # noqa: BLE001 - keep dispatching for the other cameras
                log.error("analyzer result failed", error=repr(exc))

    async def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "ready":
            self._ready.add(item[1])
            return
        if kind == "error":
            cam = self._by_key(item[1])
            if cam is not None:
                cam.stats.errors += 1
                cam.stats.last_error = item[2]
            log.warning("analyzer worker error", channel=item[1], error=item[2])
            return
        _, cid, slot, seq, pts, wall, dets, gated, stale, infer_ms = item
        cam = self._by_key(cid)
        if cam is None:
            return
        s = cam.stats
        s.analysed += 1
        s.dropped_stale += stale
        s.gated += int(gated)
        s.infer_ms = infer_ms if not gated else s.infer_ms
        s.times.append(time.monotonic())
        cam.last_frame = (slot, seq)
        cam.last_t = pts / 90000.0
        cache: list[np.ndarray | None] = []

        def image() -> np.ndarray | None:
            if not cache:
                cache.append(self._rings[cam.worker].read(slot, seq))
            return cache[0]

        frame = FrameView(
            t=cam.last_t,
            local_time=datetime.fromtimestamp(wall, self.tz),
            detections=dets,
            image=image,
        )
        for f in cam.engine.process(frame):
            await self._emit(cam, f, image(), wall)

    def _by_key(self, key: str) -> _Camera | None:
        try:
            return self.cams.get(ChannelRef.from_slug(key))
        except ValueError:
            return None

    def _frame(self, cam: _Camera, where: tuple[int, int] | None) -> np.ndarray | None:
        return None if where is None else self._rings[cam.worker].read(*where)

    async def _emit(self, cam: _Camera, f: Fired, img: np.ndarray | None, wall: float) -> None:
        status = AlarmStatus(f.transition.status)
        title = f"{f.rule} [{f.alarm_type}] {'ALARM' if status else 'CLEAR'} {f.outcome.note}"
        snap, raw = await asyncio.to_thread(
            pictures, PLACEHOLDER if img is None else img, f.outcome.boxes, cam.config, title
        )
        event = AlarmEvent(
            alarm_id=f.transition.alarm_id,
            status=status,
            channel_id=cam.channel_id,
            device_id=cam.channel.device_id,
            profile=cam.profile,
            rule=f.rule,
            alarm_type=f.alarm_type,
            at=datetime.fromtimestamp(wall, UTC),
            snapshot_jpeg=snap,
            raw_jpeg=raw,
            detail={
                "rule_name": f.key,
                "note": f.outcome.note,
                **({"reason": REPORT_REASON[f.rule]} if f.rule in REPORT_REASON else {}),
                "stream_t": round(f.transition.at, 3),
                "boxes": [
                    {
                        "label": d.label,
                        "score": round(d.score, 3),
                        "box": [round(v, 4) for v in d.box],
                    }
                    for d in f.outcome.boxes
                ],
            },
        )
        if status:
            cam.stats.alarms += 1
        else:
            cam.stats.clears += 1
        log.info(
            "alarm" if status else "clear",
            channel=str(cam.channel),
            rule=f.key,
            alarm_type=f.alarm_type,
            alarm_id=event.alarm_id,
        )
        if self.emit is None:
            return
        try:
            await self.emit(event)
        except Exception as exc:  # noqa: BLE001 - the alarm service logs and retries its own way
            log.error("alarm handler failed", alarm_id=event.alarm_id, error=repr(exc))
