"""Benchmark: cascade forwarding CPU per stream, as a ratio to the node's own receive (same run).

K simulated cameras (the 1080p ~4 Mbit/s clip of ``bench/media_ingest.py``, PS over RTP/UDP
from a sender process) are received by the stream hub as usual (RTP → reorder → PS demux →
access units → one counting consumer each).  First window: that alone (the node's own
receive).  Second window, same streams still running: each is also forwarded to a superior
through the real cascade path (``CascadeService.start_send``: a hub subscription, PS mux,
RTP packetizing, UDP send) to a sink process that counts what arrives.  The forwarding's
CPU is the difference of the two windows; the ratio is that over the receive's CPU.

    .venv/bin/python bench/cascade.py            # K=16, 30 s windows
    .venv/bin/python bench/cascade.py --quick    # K=4, 10 s windows
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import pickle
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import media_ingest as ingest  # the clip, the sender process, the SIP stand-in

SINK_PORT = 47000


def sink_main(first_port: int, k: int, conn: mp.connection.Connection) -> None:
    """The superior's side: K UDP ports that count datagrams and bytes."""
    socks = []
    for i in range(k):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        s.bind(("127.0.0.1", first_port + i))
        s.setblocking(False)
        socks.append(s)
    import selectors

    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    packets = size = 0
    conn.send("ready")
    while True:
        if conn.poll(0):
            msg = conn.recv()
            if msg == "count":
                conn.send((packets, size))
            elif msg == "exit":
                return
        for key, _ in sel.select(0.05):
            sock = key.fileobj
            while True:
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    break
                packets += 1
                size += len(data)


async def window(seconds: float, counts: list[int]) -> tuple[float, float, int]:
    c0, t0, f0 = ingest.cpu_s(), time.monotonic(), sum(counts)
    await asyncio.sleep(seconds)
    c1, t1, f1 = ingest.cpu_s(), time.monotonic(), sum(counts)
    return c1 - c0, t1 - t0, f1 - f0


async def main_async(args: argparse.Namespace) -> None:
    from sip import sdp as sdplib
    from sip.cascade_source import SendRequest
    from storage.db import Database
    from storage.models import Channel, Device
    from storage.objects import LocalObjectStore
    from vms.cascade.service import CascadeService
    from vms.config import load_settings
    from vms.logging import setup_logging
    from vms.media.hub import StreamHub
    from vms.services import Services

    setup_logging("warning")
    k = args.k
    work = Path(tempfile.mkdtemp(prefix="cascade-bench-"))
    frames = ingest.encode_clip(work)
    mbit = sum(len(d) for _, d in frames) * 8 / (len(frames) / ingest.FPS) / 1e6
    clip_path = work / "clip.pkl"
    clip_path.write_bytes(pickle.dumps(frames))
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    sender = ctx.Process(target=ingest.sender_main, args=(str(clip_path), child), daemon=True)
    sender.start()
    sink_parent, sink_child = ctx.Pipe()
    sink = ctx.Process(target=sink_main, args=(SINK_PORT, k, sink_child), daemon=True)
    sink.start()
    assert sink_parent.recv() == "ready"

    settings = load_settings(
        server={"data_dir": work / "data"},
        media={"rtp_port_min": args.port, "rtp_port_max": args.port + 999,
               "stream_timeout_s": 30, "idle_close_s": 0},
    )  # fmt: skip
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    cameras = [ingest.camera(i) for i in range(k)]  # the hub names a camera (device, channel)
    with db.session() as s:
        for cam in cameras:  # registered from DEVICE_HOST: the hub takes their RTP from there
            s.add(
                Device(
                    device_id=cam.device_id,
                    remote_host=ingest.DEVICE_HOST,
                    channels=[Channel(channel_id=cam.channel_id)],
                )
            )
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    services.sip = ingest.BenchSip(parent)
    hub = StreamHub(services)
    await hub.start()
    cascade = CascadeService(services)
    counts = [0] * k

    async def count(i: int, sub) -> None:
        async for item in sub:
            if hasattr(item, "keyframe"):
                counts[i] += 1

    subs = [hub.subscribe(cam, "consumer", maxlen=512) for cam in cameras]
    tasks = [asyncio.create_task(count(i, sub)) for i, sub in enumerate(subs)]
    await asyncio.sleep(3.0)  # INVITEs, first keyframes
    print(f"clip: {len(frames)} frames 1920x1080 @ {ingest.FPS} fps, {mbit:.2f} Mbit/s; K={k}")

    cpu_r, wall_r, frames_r = await window(args.window, counts)

    async def ended(call_id: str) -> None:
        return None

    for i, cam in enumerate(cameras):
        offer = sdplib.Sdp(
            session_name="Play", ip="127.0.0.1", port=SINK_PORT + i, ssrc=f"0{440000001 + i}"
        )
        request = SendRequest(
            f"bench-{i}", "44010000002000000001", cam.channel_id, cam.device_id, offer, 96
        )
        await cascade.start_send(request, ended)
        cascade.begin(request.call_id)
    await asyncio.sleep(3.0)  # the forwards start at a keyframe
    sink_parent.send("count")
    p0, b0 = sink_parent.recv()
    cpu_f, wall_f, frames_f = await window(args.window, counts)
    sink_parent.send("count")
    p1, b1 = sink_parent.recv()
    sent_frames = sum(f.sender.stats.frames for f in cascade.forwards.values() if f.sender)

    await cascade.close()
    for sub in subs:
        sub.close()
    for t in tasks:
        t.cancel()
    await hub.stop()
    parent.send(("stop",))
    parent.recv()
    parent.send(("exit",))
    sink_parent.send("exit")
    sender.join(5)
    sink.join(5)
    db.close()

    receive = 100 * cpu_r / wall_r / k
    both = 100 * cpu_f / wall_f / k
    forward = max(both - receive, 0.0)
    fps_in = frames_f / wall_f / k
    arrived = (b1 - b0) * 8 / wall_f / k / 1e6
    print(f"receive (RTP → demux → hub → consumer): {receive:.2f}% of a core per stream, "
          f"{frames_r / wall_r / k:.1f} fps")  # fmt: skip
    print(f"receive + cascade forward:              {both:.2f}% per stream, {fps_in:.1f} fps in")
    print(f"cascade forwarding alone:               {forward:.2f}% per stream "
          f"(PS mux + RTP + UDP send), {arrived:.2f} Mbit/s per stream at the superior, "
          f"{(p1 - p0) / wall_f / k:.0f} packets/s; {sent_frames} frames sent")  # fmt: skip
    print(f"ratio forwarding / own receive: {forward / max(receive, 1e-9):.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="K=4, 10 s windows")
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument("-k", type=int, default=16, help="streams")
    p.add_argument("--port", type=int, default=43000, help="first RTP port of the node")
    args = p.parse_args()
    if args.quick:
        args.window, args.k = min(args.window, 10.0), min(args.k, 4)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - non-Linux
        asyncio.run(main_async(args))
    else:
        uvloop.run(main_async(args))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
