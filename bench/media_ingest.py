"""Benchmark: K simulated cameras (4 Mbit/s 1080p H.264 as PS over RTP/UDP) into one server.

A real clip (vtest.avi upscaled to 1080p, or a moving test pattern) is encoded once with
libx264 at ~4 Mbit/s, muxed to PS as NVRs send it, and packetized to RTP.  A separate
sender process blasts it at real-time rate on loopback to the ports the server's stream
hub offers (through a PlayController stand-in, so the hub's whole on-demand path runs).
The server runs receive + reorder + PS demux + hub fan-out (+ the recorder with
``--record``) under uvloop.  K steps up; the highest K held for the window with < 0.1 %
loss is printed with the server's CPU per stream, and the ratio to a raw UDP receive of
the same packets (a uvloop protocol that only counts) measured in the same run.

    .venv/bin/python bench/media_ingest.py            # 60 s window per step
    .venv/bin/python bench/media_ingest.py --quick    # 10 s window, fewer steps
    .venv/bin/python bench/media_ingest.py --quick --audio pcma   # with G.711A in the PS
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if TYPE_CHECKING:
    from sip.channel_ref import ChannelRef

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
FPS = 25
CLIP_S = 8
CHANNEL_BASE = 34020000001320000000
DEVICE_BASE = 34020000001110000000
DEVICE_HOST = "127.0.0.1"  # where the devices "registered" from: the hub takes RTP from there


def camera(i: int) -> ChannelRef:
    """The i-th simulated camera (0-based): the hub names a camera by (device, channel)."""
    from sip.channel_ref import ChannelRef

    return ChannelRef(str(DEVICE_BASE + i + 1), str(CHANNEL_BASE + i + 1))


# --- the clip ------------------------------------------------------------------------


def encode_clip(workdir: Path, audio: str = "") -> list[tuple[int, bytes]]:
    """(pts, PS bytes) per frame of an 8 s 1080p ~4 Mbit/s H.264 clip, NVR-style PS; with
    ``audio`` (pcma, pcmu, aac) each frame is followed by the audio packs of its 40 ms."""
    from rtp.ps_mux import mux_audio, mux_frame
    from simdevice.audio_source import audio_clip
    from vms.media.frames import Codec
    from vms.media.h26x import nal_type

    src = ["-i", str(VTEST)] if VTEST.exists() else ["-f", "lavfi", "-i", "testsrc2=rate=25"]
    h264 = workdir / "clip.h264"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *src, "-t", str(CLIP_S),
         "-vf", "scale=1920:1080,fps=25", "-c:v", "libx264", "-preset", "ultrafast",
         "-b:v", "4M", "-maxrate", "4M", "-bufsize", "4M", "-g", "50", "-bf", "0",
         "-x264-params", "repeat-headers=1", "-f", "h264", str(h264)],
        check=True,
    )  # fmt: skip
    import av

    frames = []
    sound = audio_clip(audio) if audio else None
    audio_type = sound.stream_type if sound else None
    with av.open(str(h264), format="h264") as container:
        for i, packet in enumerate(container.demux(video=0)):
            if not packet.size:
                continue
            data = bytes(packet)
            key = any(nal_type(Codec.h264, data[j + 3]) == 5 for j in _starts(data))
            ps = mux_frame(data, i * 3600, key, audio_type=audio_type)
            for apts, frame in sound.frames_between(i * 3600, (i + 1) * 3600) if sound else ():
                ps += mux_audio(frame, apts)
            frames.append((i * 3600, ps))
    return frames


def _starts(data: bytes) -> list[int]:
    out, i = [], data.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(data):
        out.append(i)
        i = data.find(b"\x00\x00\x01", i + 3)
    return out


# --- sender process ----------------------------------------------------------------------


def sender_main(clip_path: str, conn: mp.connection.Connection) -> None:
    """Real-time paced RTP for every (port, ssrc) the server asks for; counts what it sent."""
    import pickle

    frames: list[tuple[int, bytes]] = pickle.loads(Path(clip_path).read_bytes())
    span = len(frames) * 3600
    chunked = [
        (pts, [data[i : i + 1400] for i in range(0, len(data), 1400)]) for pts, data in frames
    ]
    from rtp.packet import header
    from rtp.packetizer import PT_PS

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    sock.bind((DEVICE_HOST, 0))  # the devices' host: the hub pins each stream to it
    streams: list[list] = []  # [port, ssrc, start_time, frame_index, seq]
    sent = 0
    lag = 0.0  # how late the most delayed frame left, since the last report
    while True:
        if conn.poll(0):
            msg = conn.recv()
            if msg[0] == "start":
                _, port, ssrc = msg
                phase = random.randrange(len(frames))
                streams.append([port, ssrc, time.monotonic() - phase / FPS, phase, 0])
            elif msg[0] == "stop":
                streams.clear()
                conn.send(("sent", sent, lag))
                sent, lag = 0, 0.0
            elif msg[0] == "count":
                conn.send(("sent", sent, lag))
                lag = 0.0
            elif msg[0] == "exit":
                return
        now = time.monotonic()
        for st in streams:
            port, ssrc, t0, idx, seq = st
            while t0 + idx / FPS <= now:
                lag = max(lag, now - (t0 + idx / FPS))
                pts, chunks = chunked[idx % len(chunked)]
                ts = (pts + (idx // len(chunked)) * span) & 0xFFFFFFFF
                last = len(chunks) - 1
                for n, chunk in enumerate(chunks):
                    packet = header(PT_PS, seq, ts, ssrc, n == last) + chunk
                    sock.sendto(packet, ("127.0.0.1", port))
                    seq += 1
                sent += len(chunks)
                idx += 1
            st[3], st[4] = idx, seq
        time.sleep(0.004)


# --- server side -----------------------------------------------------------------------


class BenchSip:
    """A PlayController stand-in: "INVITE" = tell the sender process to stream to the offer."""

    def __init__(self, conn: mp.connection.Connection) -> None:
        self.conn = conn
        self.listeners: list = []

    def add_session_listener(self, listener) -> None:
        self.listeners.append(listener)

    async def play(self, request, offer):
        from sip.media_api import MediaAnswer, PlaySession

        self.conn.send(("start", offer.port, int(offer.ssrc)))
        answer = MediaAnswer(DEVICE_HOST, 0, None, offer.transport)
        return PlaySession(f"bench-{offer.port}", request, offer, answer, datetime.now(UTC))

    async def stop(self, session) -> None:
        return None

    async def control_playback(self, session, **kw) -> None:
        return None


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def run_step(services, conn, k: int, window: float, record: bool) -> dict:
    """K streams through the hub for one window: CPU, loss, frames."""
    from sqlalchemy import update

    from storage.models import Device
    from vms.media.hub import StreamHub

    def only_first_k(session) -> None:  # the recorder records online devices' channels
        session.execute(update(Device).values(online=False))
        session.execute(update(Device).where(Device.id <= k).values(online=True))

    await services.db.run(only_first_k)
    hub = StreamHub(services)
    await hub.start()
    recorder = None
    subs = []
    counts = [0] * k
    if record:
        from vms.recording.recorder import Recorder

        recorder = Recorder(services)
        await recorder.start()
        await recorder.refresh()
    channels = [camera(i) for i in range(k)]

    async def count(i: int, sub) -> None:
        async for item in sub:
            if hasattr(item, "keyframe"):
                counts[i] += 1

    tasks = []
    for i, ch in enumerate(channels):
        sub = hub.subscribe(ch, "counter", maxlen=512)
        subs.append(sub)
        tasks.append(asyncio.create_task(count(i, sub)))
    await asyncio.sleep(2.0)  # INVITEs, first keyframes
    base = {ch: dict(hub.stats(ch)) for ch in channels}
    conn.send(("count",))
    sent0 = conn.recv()[1]
    c0, t0, f0 = cpu_s(), time.monotonic(), sum(counts)
    await asyncio.sleep(window)
    c1, t1, f1 = cpu_s(), time.monotonic(), sum(counts)
    conn.send(("stop",))
    _, sent1, sender_lag = conn.recv()
    lost = recv = 0
    for ch in channels:
        s = hub.stats(ch)
        lost += s["lost"] - base[ch]["lost"]
        recv += s["packets"] - base[ch]["packets"]
    for sub in subs:
        sub.close()
    for t in tasks:
        t.cancel()
    if recorder is not None:
        await recorder.stop()
    await hub.stop()
    sent = sent1 - sent0
    missing = max(0, sent - recv)
    loss = max(lost, missing) / max(1, sent)
    return {
        "k": k,
        "cpu_pct_per_stream": 100 * (c1 - c0) / (t1 - t0) / k,
        "cpu_pct_total": 100 * (c1 - c0) / (t1 - t0),
        "loss": loss,
        "fps_per_stream": (f1 - f0) / (t1 - t0) / k,
        "mbit_per_stream": 0.0,
        "packets": recv,
        "sender_lag_s": sender_lag,
    }


class _Count(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.n = 0
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.n += 1


async def raw_step(conn, k: int, window: float, first_port: int) -> dict:
    """The reference: the same packets into K plain uvloop UDP sockets that only count."""
    loop = asyncio.get_running_loop()
    protos = []
    for i in range(k):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(("127.0.0.1", first_port + i))
        _, proto = await loop.create_datagram_endpoint(_Count, sock=sock)
        protos.append(proto)
        conn.send(("start", first_port + i, 1000 + i))
    await asyncio.sleep(2.0)
    n0, c0, t0 = sum(p.n for p in protos), cpu_s(), time.monotonic()
    await asyncio.sleep(window)
    n1, c1, t1 = sum(p.n for p in protos), cpu_s(), time.monotonic()
    conn.send(("stop",))
    conn.recv()
    for p in protos:
        if p.transport is not None:
            p.transport.close()
    return {"k": k, "cpu_pct_per_stream": 100 * (c1 - c0) / (t1 - t0) / k, "packets": n1 - n0}


async def main_async(args: argparse.Namespace) -> None:
    from storage.db import Database
    from storage.models import Channel, Device
    from storage.objects import LocalObjectStore
    from vms.config import load_settings
    from vms.logging import setup_logging
    from vms.services import Services

    setup_logging("warning")
    work = Path(tempfile.mkdtemp(prefix="media-bench-"))
    t = time.monotonic()
    frames = encode_clip(work, args.audio)
    total = sum(len(d) for _, d in frames)
    mbit = total * 8 / (len(frames) / FPS) / 1e6
    print(f"clip: {len(frames)} frames 1920x1080 @ {FPS} fps, {mbit:.2f} Mbit/s as PS "
          f"(encoded in {time.monotonic() - t:.1f} s)")  # fmt: skip
    import pickle

    clip_path = work / "clip.pkl"
    clip_path.write_bytes(pickle.dumps(frames))
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    sender = ctx.Process(target=sender_main, args=(str(clip_path), child), daemon=True)
    sender.start()

    settings = load_settings(
        server={"data_dir": work / "data"},
        media={"rtp_port_min": args.port, "rtp_port_max": args.port + 999,
               "stream_timeout_s": 30, "idle_close_s": 0},
        recording={"segment_s": 10},
    )  # fmt: skip
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    with db.session() as s:
        for i in range(max(args.steps)):
            cam = camera(i)  # registered from DEVICE_HOST: its RTP must come from there
            s.add(Device(device_id=cam.device_id, online=True, remote_host=DEVICE_HOST,
                         channels=[Channel(channel_id=cam.channel_id)]))  # fmt: skip
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    services.sip = BenchSip(parent)

    best = None
    results = []
    for k in args.steps:
        r = await run_step(services, parent, k, args.window, args.record)
        r["mbit_per_stream"] = mbit
        ok = r["loss"] < 0.001 and r["fps_per_stream"] > FPS * 0.97
        results.append(r)
        verdict = "held" if ok else "NOT held"
        if r["sender_lag_s"] > 0.5:
            verdict += f" (the sender fell {r['sender_lag_s']:.1f} s behind: load-generator bound)"
        print(
            f"K={k:3d}  server CPU {r['cpu_pct_total']:6.1f}% total, "
            f"{r['cpu_pct_per_stream']:5.2f}% of a core per stream, "
            f"loss {100 * r['loss']:.3f}%, {r['fps_per_stream']:.1f} fps/stream  {verdict}",
            flush=True,
        )
        if not ok:
            break
        best = r
    if best is not None:
        raw = await raw_step(parent, best["k"], args.window, args.port + 2000)
        ratio = best["cpu_pct_per_stream"] / max(raw["cpu_pct_per_stream"], 1e-9)
        what = "receive + demux + hub" + (" + record" if args.record else "")
        print(f"\nhighest K held for {args.window:g} s with < 0.1% loss: {best['k']}")
        print(f"{what}: {best['cpu_pct_per_stream']:.2f}% of one core per "
              f"{mbit:.1f} Mbit/s stream (goal < 3%)")  # fmt: skip
        print(f"raw UDP receive of the same packets: {raw['cpu_pct_per_stream']:.2f}% per stream; "
              f"ratio {ratio:.2f}x")  # fmt: skip
    else:
        print("no K held")
    parent.send(("exit",))
    sender.join(5)
    db.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 s window, steps 4 and 16")
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 4, 8, 16, 24, 32, 48, 64])  # fmt: skip
    p.add_argument("--record", action="store_true", help="also record every stream")
    p.add_argument("--audio", choices=["", "pcma", "pcmu", "aac"], default="",
                   help="the cameras also send this audio in their PS")  # fmt: skip
    p.add_argument("--port", type=int, default=41000, help="first RTP port of the server")
    args = p.parse_args()
    if args.quick:
        args.window = min(args.window, 10.0)
        args.steps = [4, 16]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - non-Linux
        asyncio.run(main_async(args))
    else:
        uvloop.run(main_async(args))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
