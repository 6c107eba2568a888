"""Scale-out benchmark: what the cluster's own machinery costs per camera.

    .venv/bin/python bench/cluster.py [--quick] [--db-url postgresql+psycopg://...]

Real peers: nats-server (Debian) and PostgreSQL (a private one unless ``--db-url``).
Measured, each with a reference in the same run:

1. lease rounds: N cameras shared by 4 media nodes and 2 analyzer hosts (registries in this
   process, each its own database session); CPU and wall time of one node's round (heartbeat +
   renew + plan + claims) in steady state, per 1,000 cameras — reference: a bare SELECT of the
   lease table.
2. SIP over the bus: a media node's INVITE through ``RemoteSip`` → NATS → ``SipGateway`` → a
   SIP server stub that answers at once; CPU per INVITE — reference: the stub called directly.
3. keyframes to the analyzers: 60 kB keyframes through ``FramePublisher``'s encoding and a
   ``BusSubscription``; CPU per keyframe, cameras per core at 1 keyframe / 2 s — reference:
   bare NATS publish + subscribe of the same bytes.
4. alarms through JetStream: ``BusAlarmSink`` → ``AlarmConsumer`` with 200 kB pictures,
   alarms/s acknowledged after a (no-op) store — reference: bare core-NATS publish.

The control node's share per 1,000 cameras adds the SIP keepalive figure of
``bench/sip_register.py`` (162 µs per keepalive); see README, Scale-out, for the projection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import insert, select  # noqa: E402

from analyzers.events import AlarmEvent, AlarmStatus  # noqa: E402
from rtp.units import AccessUnit  # noqa: E402
from sip.channel_ref import ChannelRef  # noqa: E402
from sip.media_api import (  # noqa: E402
    MediaAnswer,
    MediaOffer,
    MediaTransport,
    PlayRequest,
    PlaySession,
)
from storage.cluster_models import CameraLease  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import Channel, Device, DeviceStatus  # noqa: E402
from tests.cluster_support import NatsServer  # noqa: E402
from tests.pg import PrivatePostgres  # noqa: E402
from vms.cluster.alarm_bus import AlarmConsumer, BusAlarmSink  # noqa: E402
from vms.cluster.bus import Bus, frame_subject  # noqa: E402
from vms.cluster.component import analysis_wanted, media_wanted  # noqa: E402
from vms.cluster.frames import BusFrames, frame_headers  # noqa: E402
from vms.cluster.leases import LeaseKeeper  # noqa: E402
from vms.cluster.registry import Registry  # noqa: E402
from vms.cluster.remote_sip import RemoteSip, SipGateway  # noqa: E402


def cpu() -> float:
    return time.process_time()


def seed(db: Database, cameras: int) -> None:
    per_nvr = 64
    with db.session() as s:
        for n in range(0, cameras, per_nvr):
            dev = Device(
                device_id=f"3701020000118{n // per_nvr:07d}",
                name="NVR",
                online=True,
                status=DeviceStatus.active,
            )
            s.add(dev)
            s.flush()
            s.execute(
                insert(Channel),
                [
                    {
                        "device_pk": dev.id,
                        "channel_id": f"3701020000132{i:07d}",
                        "name": f"cam {i}",
                        "analysis": {"enabled": True, "rules": [{"type": "intrusion"}]}
                        if i % 4 == 0
                        else {},
                    }
                    for i in range(n, min(n + per_nvr, cameras))
                ],
            )


async def bench_leases(db: Database, cameras: int) -> None:
    async def nothing(gained: set, lost: set) -> None:
        return None

    keepers = []
    for n in range(4):
        reg = Registry(db, f"media-{n}", "media", "10.0.0.1", 30)
        keepers.append((reg, LeaseKeeper(reg, "media", "media", media_wanted, nothing)))
    for n in range(2):
        reg = Registry(db, f"analyzer-{n}", "analyzer", "", 30)
        keepers.append((reg, LeaseKeeper(reg, "analysis", "analyzer", analysis_wanted, nothing)))
    t0 = time.perf_counter()
    for _ in range(6):
        for reg, keeper in keepers:
            await db.run(lambda s, r=reg: r.heartbeat(s, {}))
            await keeper.round()
    converge = time.perf_counter() - t0
    held = {reg.name: len(k.held) for reg, k in keepers}
    print(f"  converged in 6 rounds ({converge:.1f} s wall): {held}")
    rounds, wall, c0 = 0, 0.0, cpu()
    for _ in range(5):
        for reg, keeper in keepers[:4]:
            w0 = time.perf_counter()
            load = {"media": len(keeper.held)}
            await db.run(lambda s, r=reg, load=load: r.heartbeat(s, load))
            await keeper.round()
            wall += time.perf_counter() - w0
            rounds += 1
    per_round_cpu = (cpu() - c0) / rounds
    per_round_wall = wall / rounds
    per_k = 1000 / cameras
    print(
        f"  media node round, {cameras} cameras over 4 nodes: {per_round_cpu * 1e3:.1f} ms CPU, "
        f"{per_round_wall * 1e3:.1f} ms wall → per 1,000 cameras {per_round_cpu * per_k * 1e3:.1f}"
        f" ms CPU per heartbeat ({per_round_cpu * per_k / 2 * 100:.2f} % of a core at 2 s)"
    )

    def bare(s) -> int:
        return len(s.execute(select(CameraLease.device_id, CameraLease.node)).all())

    c0, w0 = cpu(), time.perf_counter()
    for _ in range(rounds):
        await db.run(bare)
    ref = (cpu() - c0) / rounds
    print(
        f"  reference: bare SELECT of the lease table: {ref * 1e3:.1f} ms CPU, "
        f"{(time.perf_counter() - w0) / rounds * 1e3:.1f} ms wall → round = "
        f"{per_round_cpu / ref:.1f}× the bare read"
    )


class StubSip:
    """Answers every INVITE at once, like a device on loopback with no network."""

    def __init__(self) -> None:
        self.n = 0

    async def play(self, request: PlayRequest, offer: MediaOffer) -> PlaySession:
        self.n += 1
        answer = MediaAnswer("127.0.0.1", 15060, offer.ssrc, MediaTransport.udp, None, {96: "PS"})
        return PlaySession(f"call-{self.n}", request, offer, answer, datetime.now(UTC))

    async def stop(self, session: PlaySession) -> None:
        return None

    def add_session_listener(self, listener) -> None:
        return None

    def add_connect_listener(self, listener) -> None:
        return None


async def bench_sip(url: str, n: int) -> None:
    control, media = Bus(url, "control"), Bus(url, "media")
    await control.connect()
    await media.connect()
    stub = StubSip()
    gateway = SipGateway(control, stub)
    await gateway.start()
    remote = RemoteSip(media, "media-1", 10, 10)
    await remote.start()
    offer = MediaOffer("127.0.0.1", 30000, "0100000001")
    req = PlayRequest("37010200001180000001", "37010200001320000001")
    c0, w0 = cpu(), time.perf_counter()
    for _ in range(n):
        session = await remote.play(req, offer)
        await remote.stop(session)
    bus_cpu = (cpu() - c0) / n
    bus_wall = (time.perf_counter() - w0) / n
    c0 = cpu()
    for _ in range(n):
        session = await stub.play(req, offer)
        await stub.stop(session)
    direct = (cpu() - c0) / n
    print(
        f"  INVITE + BYE through the bus: {bus_cpu * 1e6:.0f} µs CPU (both ends), "
        f"{bus_wall * 1e3:.2f} ms round trip; reference: direct call {direct * 1e6:.1f} µs "
        f"→ {bus_cpu / max(direct, 1e-9):.0f}× (what the split adds per pull)"
    )
    await media.close()
    await control.close()


async def bench_frames(url: str, n: int, size: int = 60_000) -> None:
    pub, sub_bus = Bus(url, "media"), Bus(url, "analyzer")
    await pub.connect()
    await sub_bus.connect()
    cam = ChannelRef("37010200001180000001", "37010200001320000001")
    subject = frame_subject(cam.device_id, cam.channel_id)
    data = os.urandom(size)
    frames = BusFrames(sub_bus, maxlen=n + 8)
    sub = frames.subscribe(cam, "bench")
    await asyncio.sleep(0.2)  # the subscription is open
    c0, w0 = cpu(), time.perf_counter()
    for i in range(n):
        au = AccessUnit(cam.channel_id, i * 3600, True, data, wallclock=time.time())
        await pub.publish(subject, au.data, frame_headers(au))
    got = 0
    async for _item in sub:
        got += 1
        if got == n:
            break
    ours = (cpu() - c0) / n
    wall = time.perf_counter() - w0
    sub.close()

    received = 0
    done = asyncio.Event()

    async def on_msg(msg) -> None:
        nonlocal received
        received += 1
        if received == n:
            done.set()

    bare_sub = await sub_bus.client.subscribe(subject + ".bare", cb=on_msg)
    await sub_bus.client.flush()
    c0 = cpu()
    for _ in range(n):
        await pub.client.publish(subject + ".bare", data)
    await asyncio.wait_for(done.wait(), 30)
    bare = (cpu() - c0) / n
    await bare_sub.unsubscribe()
    per_core = 1 / (ours / 2)  # one keyframe every 2 s per camera
    print(
        f"  {size // 1000} kB keyframes media → analyzer: {ours * 1e6:.0f} µs CPU each "
        "(both ends), "
        f"{n / wall:.0f}/s; {per_core:,.0f} cameras per core at 1 keyframe / 2 s; "
        f"reference: bare NATS {bare * 1e6:.0f} µs → {ours / bare:.2f}×"
    )
    await pub.close()
    await sub_bus.close()


async def bench_alarms(url: str, n: int, tmp: Path) -> None:
    analyzer, control = Bus(url, "analyzer"), Bus(url, "control")
    await analyzer.connect()
    await control.connect()
    await analyzer.ensure_alarm_stream()
    done = asyncio.Event()

    class Alarms:
        count = 0

        async def handle(self, event: AlarmEvent) -> None:
            Alarms.count += 1
            if Alarms.count == n:
                done.set()

    sink = BusAlarmSink(analyzer, tmp / "spool")
    await sink.start()
    consumer = AlarmConsumer(control, Alarms())
    await consumer.start()
    picture = os.urandom(200_000)
    c0, w0 = cpu(), time.perf_counter()
    for _ in range(n):
        await sink.handle(
            AlarmEvent(
                alarm_id=str(uuid.uuid4()),
                status=AlarmStatus.alarm,
                channel_id="37010200001320000001",
                profile="enterprise",
                rule="intrusion",
                alarm_type="9",
                at=datetime.now(UTC),
                snapshot_jpeg=picture,
            )
        )
    await asyncio.wait_for(done.wait(), 60)
    ours_cpu = (cpu() - c0) / n
    rate = n / (time.perf_counter() - w0)
    c0, w0 = cpu(), time.perf_counter()
    for _ in range(n):
        await analyzer.client.publish("vms.bench.bare", picture)
    await analyzer.client.flush()
    bare_rate = n / (time.perf_counter() - w0)
    print(
        f"  alarms with a 200 kB picture, JetStream on disk, acked after the store: "
        f"{rate:.0f}/s, {ours_cpu * 1e3:.2f} ms CPU each; reference: bare core-NATS publish "
        f"{bare_rate:.0f}/s → {rate / bare_rate:.2f}×"
    )
    await consumer.stop()
    await sink.stop()
    await analyzer.close()
    await control.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--db-url", default="")
    args = ap.parse_args()
    cameras = 1000 if args.quick else 5000
    pg = None
    url = args.db_url
    if not url:
        pg = PrivatePostgres()
        pg.start()
        url = pg.create_database(f"bench_cluster_{os.getpid()}")
    nats = NatsServer().start()
    try:
        db = Database(url)
        db.open()
        seed(db, cameras)
        print(f"1. lease rounds ({cameras} cameras, a quarter analysed):")
        await bench_leases(db, cameras)
        db.close()
        print("2. SIP over the bus:")
        await bench_sip(nats.url, 300 if args.quick else 2000)
        print("3. keyframes over the bus:")
        await bench_frames(nats.url, 300 if args.quick else 2000)
        print("4. alarms over JetStream:")
        with tempfile.TemporaryDirectory() as tmp:
            await bench_alarms(nats.url, 200 if args.quick else 1000, Path(tmp))
    finally:
        nats.stop()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
