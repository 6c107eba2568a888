"""Live-view benchmark: server CPU per WebRTC viewer with H.264 passthrough (our path) against
the reference of aiortc re-encoding the same video for each viewer, measured in the same run.

    .venv/bin/python bench/live_fanout.py [--quick] [--viewers N] [--height 720]

The server (LiveService + a hub fed at 25 fps) runs in a child process so its CPU time is
measured alone; the viewers are aiortc peers on 127.0.0.1 in this process and decode the video
(so every viewer is checked to really receive frames).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402

from sip.channel_ref import ChannelRef  # noqa: E402
from vms.live import ice  # noqa: E402

FPS = 25
MARK = "@@live-bench "
CLIP_FRAMES = 50
CAMERA = ChannelRef("34020000001180000001", "34020000001320000001")  # (device, channel)


def encode_clip(width: int, height: int) -> tuple[list[tuple[bool, bytes]], list[av.VideoFrame]]:
    """A 2 s moving pattern: its H.264 access units and the decoded frames they came from."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.bit_rate = 2_000_000
    codec.options = {"preset": "veryfast", "x264-params": "keyint=50:bframes=0:repeat-headers=1"}
    ys, xs = np.mgrid[0:height, 0:width]
    units, frames = [], []
    for i in range(CLIP_FRAMES):
        rgb = np.stack([(xs + 6 * i) % 256, (ys + 3 * i) % 256, np.full_like(xs, 90)], -1)
        frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        frames.append(frame)
        units += [(p.is_keyframe, bytes(p)) for p in codec.encode(frame)]
    units += [(p.is_keyframe, bytes(p)) for p in codec.encode(None)]
    return units, frames


# --- the server process ---------------------------------------------------------------


class FrameTrack(MediaStreamTrack):
    """Reference: decoded frames at 25 fps, which aiortc encodes once per viewer."""

    kind = "video"

    def __init__(self, frames: list[av.VideoFrame]) -> None:
        super().__init__()
        self.frames = frames
        self.i = 0
        self.t0 = time.monotonic()

    async def recv(self) -> av.VideoFrame:
        self.i += 1
        await asyncio.sleep(max(0.0, self.t0 + self.i / FPS - time.monotonic()))
        frame = self.frames[self.i % len(self.frames)]
        frame.pts, frame.time_base = self.i * 90000 // FPS, fractions.Fraction(1, 90000)
        return frame


async def serve(mode: str, height: int) -> None:
    from vms.config import load_settings
    from vms.live.service import LiveService, h264_preferences
    from vms.media.frames import AccessUnit, Subscription
    from vms.services import Services

    width = (height * 16 // 9) & ~1
    units, frames = encode_clip(width, height)
    subs: list[Subscription] = []

    class Hub:
        def subscribe(
            self, channel: ChannelRef, name: str, maxlen: int = 256, *, audio: bool = False
        ) -> Subscription:
            assert isinstance(channel, ChannelRef), channel  # as the real hub insists
            sub = Subscription(channel.channel_id, name, maxlen, on_close=subs.remove, audio=audio)
            subs.append(sub)
            return sub

    settings = load_settings(live={"ice_addresses": ["127.0.0.1"]})
    services = Services(settings=settings, db=None, objects=None)  # type: ignore[arg-type]
    services.media = Hub()
    live = LiveService(services, settings.live)
    await live.start()
    peers: list[RTCPeerConnection] = []

    async def feed() -> None:
        t0, i = time.monotonic(), 0
        while True:
            key, data = units[i % len(units)]
            for sub in tuple(subs):
                sub.offer(AccessUnit(CAMERA.channel_id, i * 90000 // FPS, key, data))
            i += 1
            await asyncio.sleep(max(0.0, t0 + i / FPS - time.monotonic()))

    async def answer(sdp: str) -> str:
        if mode == "passthrough":
            return (await live.answer(CAMERA, sdp)).answer_sdp
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peers.append(pc)
        sender = pc.addTrack(FrameTrack(frames))
        t = next(t for t in pc.getTransceivers() if t.sender is sender)
        t.setCodecPreferences(h264_preferences())
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    feeder = asyncio.create_task(feed())
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        msg = json.loads(line)
        if msg["cmd"] == "offer":
            reply: dict[str, Any] = {"sdp": await answer(msg["sdp"])}
        elif msg["cmd"] == "measure":
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(msg["seconds"])
            reply = {"cpu": time.process_time() - cpu0, "wall": time.monotonic() - wall0}
        else:
            break
        sys.stdout.write(MARK + json.dumps(reply) + "\n")
        sys.stdout.flush()
    feeder.cancel()
    for pc in peers:
        await pc.close()
    await live.stop()


# --- the viewers (this process) ---------------------------------------------------------


class Server:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def call(self, **msg: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        await self.proc.stdin.drain()
        while True:  # the server's log lines share its stdout; replies carry MARK
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 120)).decode()
            if not line:
                raise RuntimeError("the server process died (see its error above)")
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])


async def viewer(server: Server, counts: list[int], index: int) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def read() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    counts[index] += 1

        asyncio.ensure_future(read())

    with ice.host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    reply = await server.call(cmd="offer", sdp=pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    return pc


async def run_mode(mode: str, viewers: int, height: int, seconds: float) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", mode, "--height", str(height),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    server = Server(proc)
    counts = [0] * viewers
    pcs = [await viewer(server, counts, i) for i in range(viewers)]
    try:
        deadline = time.monotonic() + 30
        while min(counts) < FPS and time.monotonic() < deadline:  # warm up: 1 s of video each
            await asyncio.sleep(0.1)
        if min(counts) < FPS:
            raise RuntimeError(f"{mode}: viewers did not all receive video: {counts}")
        before = list(counts)
        m = await server.call(cmd="measure", seconds=seconds)
        fps = min(c - b for c, b in zip(counts, before, strict=True)) / m["wall"]
    finally:
        for pc in pcs:
            await pc.close()
        if proc.stdin is not None:
            proc.stdin.close()  # EOF: the server stops its peers and exits
        await asyncio.wait_for(proc.wait(), 30)
    return {"cpu_pct": 100 * m["cpu"] / m["wall"], "min_fps": fps}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run (< 60 s)")
    ap.add_argument("--viewers", type=int, default=0)
    ap.add_argument("--height", type=int, default=0)
    ap.add_argument("--serve", choices=["passthrough", "encode"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        await serve(args.serve, args.height or 720)
        return
    viewers = args.viewers or (2 if args.quick else 4)
    height = args.height or (480 if args.quick else 720)
    seconds = 5.0 if args.quick else 15.0
    print(
        f"{viewers} viewers, {(height * 16 // 9) & ~1}x{height} H.264 at {FPS} fps, {seconds:.0f} s"
    )
    ours = await run_mode("passthrough", viewers, height, seconds)
    ref = await run_mode("encode", viewers, height, seconds)
    for name, r in (("passthrough (vms.live)", ours), ("aiortc re-encode (reference)", ref)):
        per = r["cpu_pct"] / viewers
        print(f"  {name:30s} server CPU {r['cpu_pct']:6.1f}% of a core, {per:5.1f}% per viewer, "
              f"slowest viewer {r['min_fps']:4.1f} fps")  # fmt: skip
    print(
        f"  ratio: passthrough uses {ours['cpu_pct'] / ref['cpu_pct']:.3f} x the CPU of re-encoding"
    )


if __name__ == "__main__":
    asyncio.run(main())
