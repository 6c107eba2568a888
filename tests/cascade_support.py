"""Helpers for the cascade tests: whole nodes of this project (database, object store, SIP,
media hub, optional recorder) on loopback, and frame checks against the simulated NVR's clip."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from simdevice.video_source import clip_for
from sip.channel_ref import ChannelRef
from storage.db import Database
from storage.objects import LocalObjectStore
from vms.config import load_settings
from vms.media.frames import AccessUnit
from vms.media.hub import StreamHub
from vms.recording.recorder import Recorder
from vms.services import Services
from vms.sip_component import SipComponent

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
JWT = "cascade-test-secret-0123456789-abcdefgh"


@dataclass
class Node:
    services: Services
    sip_component: SipComponent
    hub: StreamHub
    recorder: Recorder | None

    @property
    def sip(self) -> Any:
        return self.services.sip

    @property
    def cascade(self) -> Any:
        return self.services.cascade


def settings_for(
    data: Path,
    *,
    server_id: str,
    domain: str,
    password: str,
    ports: tuple[int, int],
    transport: str = "udp",
    upstreams: list[dict[str, Any]] | None = None,
    **sip: Any,
) -> Any:
    return load_settings(
        server={"data_dir": data},
        auth={"jwt_secret": JWT},
        sip={
            "host": "127.0.0.1",
            "port": 0,
            "server_id": server_id,
            "domain": domain,
            "password": password,
            "upstreams": upstreams or [],
            "query_timeout_s": 8,
            "catalog_timeout_s": 8,
            "invite_timeout_s": 8,
            **sip,
        },
        media={
            "rtp_port_min": ports[0],
            "rtp_port_max": ports[1],
            "transport": transport,
            "idle_close_s": 0,
            "stream_timeout_s": 10,
        },
        recording={"segment_s": 2, "refresh_s": 1},
    )


@contextlib.asynccontextmanager
async def running_node(
    settings: Any,
    seed: Callable[[Database], None],
    record: bool = False,
    prepare: Callable[[Services], Awaitable[None]] | None = None,
) -> AsyncIterator[Node]:
    """A node; ``prepare`` runs on its services before anything starts (recordings made)."""
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    seed(db)
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    if prepare is not None:
        await prepare(services)
    sip = SipComponent(services)
    hub = StreamHub(services)
    recorder = Recorder(services) if record else None
    started: list[Any] = []
    try:
        for part in (sip, hub, recorder):
            if part is not None:
                await part.start()
                started.append(part)
        if recorder is not None:
            services.recorder = recorder
        yield Node(services, sip, hub, recorder)
    finally:
        for part in reversed(started):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(part.stop(), 20)
        db.close()


def frame_md5(frame: av.VideoFrame) -> str:
    return hashlib.md5(frame.to_ndarray(format="yuv420p").tobytes()).hexdigest()


@functools.lru_cache(maxsize=2)
def clip_md5s(video: Path | None) -> frozenset[str]:
    """The decoded pixels of every frame of the simulated NVR's clip."""
    clip = clip_for(video)
    ctx = av.CodecContext.create("h264", "r")
    out: set[str] = set()
    for frame in clip.frames:
        for decoded in ctx.decode(av.Packet(frame.data)):
            out.add(frame_md5(decoded))
    for decoded in ctx.decode(None):
        out.add(frame_md5(decoded))
    return frozenset(out)


def decode(units: list[AccessUnit]) -> list[str]:
    """Decode received units (from a keyframe on) with PyAV: one digest per picture."""
    ctx = av.CodecContext.create("h264", "r")
    out = []
    for au in units:
        for frame in ctx.decode(av.Packet(au.data)):
            out.append(frame_md5(frame))
    for frame in ctx.decode(None):
        out.append(frame_md5(frame))
    return out


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll a condition (sync or async) until it holds; generous deadlines, shared CPUs."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def record_clip(services: Services, camera: ChannelRef, wall0: float) -> None:
    """Real segments of the pedestrian clip in the node's index, as if recorded at ``wall0``:
    the units go through the hub into the recorder (no SIP: ``publish``)."""
    from .recording_support import encode_clip

    clip = encode_clip()
    services.settings.recording.segment_s = 2
    hub = StreamHub(services)
    await hub.start()
    recorder = Recorder(services)
    await recorder.start()
    try:
        await recorder.refresh()
        assert camera in recorder.channels, "the channel must be recordable (device online)"
        for i, unit in enumerate(clip.access_units(camera.channel_id, wall0)):
            hub.publish(camera, unit)
            if i % 32 == 0:
                await asyncio.sleep(0)
        await asyncio.wait_for(recorder.flush(camera), 30)
    finally:
        await asyncio.wait_for(recorder.stop(), 20)
        await asyncio.wait_for(hub.stop(), 20)
    services.media = services.recorder = None
