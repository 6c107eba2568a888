"""Scale-out on loopback, every peer real (issue 14): nats-server, PostgreSQL, an S3 server,
one control node, two media nodes and two analyzer hosts, each its own ``vms serve --role``
process, and simulated NVRs registering at the control node.

Cameras spread over both media nodes; a SIGKILLed media node's cameras stream again from the
other (re-INVITEd through the control node) and its recordings show the bounded gap; a
SIGKILLed analyzer host's cameras are analysed by the other, and no alarm is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from simdevice.nvr import NvrConfig, SimulatedNvr
from sip.channel_ref import ChannelRef
from storage.cluster_models import CameraLease, ClusterNode
from storage.db import Database
from storage.models import Alarm, Channel, Device, OrgKind, RecordingSegment, Role, User
from storage.org_tree import create_org
from storage.passwords import hash_password
from vms.recording.index import holes, merge_ranges, rows_between

from . import s3server
from .analyzers_support import FULL_FRAME, MODELS, require_model
from .cluster_support import NatsServer, Node
from .s3server import free_port
from .test_system_e2e import write_clip

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(420)]

ENTERPRISE = "370102001"
PLAIN_NVR = "37010200001180000001"
YARD_NVR = "37010200001180000002"
PLAIN_CAMERAS = [f"{ENTERPRISE}0132{n:07d}" for n in range(1, 39)]  # 38 recorded only
YARD_CAMERAS = [f"{ENTERPRISE}0132{n:07d}" for n in range(101, 103)]  # 2 recorded + analysed
PASSWORD = "cluster-nvr-pass-1"
OPERATOR_PASSWORD = "cluster-operator-pass-1"
MEDIA_PORTS = {"media-1": (34000, 34499), "media-2": (34500, 34999)}
FAILOVER_S = 15

ANALYSIS = {
    "enabled": True,
    "input_size": 320,
    "sample": {"mode": "keyframes"},
    "zones": {"yard": FULL_FRAME},
    "rules": [
        {
            "type": "intrusion",
            "zones": ["yard"],
            "min_score": 0.25,
            "confirm_s": 1,
            "clear_s": 1,
            "cooldown_s": 0,
        }
    ],
}


async def until(check, timeout: float, what: str, nodes: list[Node] = ()) -> float:
    """Seconds it took; on time-out the nodes' log tails explain why."""
    start = time.monotonic()
    while True:
        if await asyncio.to_thread(check):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            logs = "\n".join(f"--- {n.name}\n{n.log_tail(1500)}" for n in nodes)
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{logs}")
        await asyncio.sleep(0.25)


def node_of_port(port: int) -> str | None:
    for name, (low, high) in MEDIA_PORTS.items():
        if low <= port <= high:
            return name
    return None


def streaming(nvrs: list[SimulatedNvr]) -> dict[str, str]:
    """Camera → media node its NVR is sending RTP to (acknowledged dialogs only)."""
    out: dict[str, str] = {}
    for nvr in nvrs:
        for stream in list(nvr.media.streams.values()):
            node = node_of_port(stream.offer.port)
            if stream.acked and node is not None and stream.streamer is not None:
                out[stream.channel_id] = node
    return out


def seed(db: Database) -> None:
    with db.session() as s:
        province = create_org(s, "山东省", OrgKind.province, None, "370000")
        city = create_org(s, "济南市", OrgKind.city, province, "370100")
        county = create_org(s, "历下区", OrgKind.county, city, "370102")
        site = create_org(s, "示例化工", OrgKind.enterprise, county, ENTERPRISE)
        for device_id in (PLAIN_NVR, YARD_NVR):
            s.add(Device(device_id=device_id, name="NVR", org_id=site.id, sip_password=PASSWORD))
        s.add(
            User(
                username="operator",
                password_hash=hash_password(OPERATOR_PASSWORD),
                role=Role.operator,
                org_id=county.id,
            )
        )


def leases(db: Database, kind: str) -> dict[str, str]:
    """Camera → node, for the leases of live nodes."""
    cutoff = datetime.now(UTC) - timedelta(seconds=3)
    with db.session() as s:
        live = set(s.scalars(select(ClusterNode.name).where(ClusterNode.heartbeat_at > cutoff)))
        rows = s.scalars(select(CameraLease).where(CameraLease.kind == kind)).all()
        return {r.channel_id: r.node for r in rows if r.node in live}


async def alarm_queue_empty(url: str) -> bool:
    import nats as nats_client

    nc = await nats_client.connect(url)
    try:
        for _ in range(40):
            info = await nc.jetstream().consumer_info("VMS_ALARMS", "alarm-service")
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return True
            await asyncio.sleep(0.25)
        return False
    finally:
        await nc.close()


async def watch_through_control(
    control: Node, by_name: dict[str, Node], db: Database, spread: dict[str, str]
) -> None:
    """Offer at the control node's API; the answer (and the frames) come from the media node
    that pulls the camera."""
    from aiortc import RTCSessionDescription

    from .live_media import make_offer

    camera = PLAIN_CAMERAS[0]
    holder = spread[camera]
    frames: list = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{control.http_port}") as client:
        r = await client.post(
            "/api/auth/login", json={"username": "operator", "password": OPERATOR_PASSWORD}
        )
        assert r.status_code == 200, r.text
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        pc = await make_offer()

        @pc.on("track")
        def _on_track(track) -> None:
            async def read() -> None:
                with contextlib.suppress(Exception):
                    while True:
                        frames.append(await track.recv())

            asyncio.ensure_future(read())

        r = await client.post(
            f"/api/live/{camera}/offer", json={"sdp": pc.localDescription.sdp}, headers=headers
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        try:
            async with asyncio.timeout(20):
                while len(frames) < 10:
                    await asyncio.sleep(0.05)
        finally:
            r = await client.delete(f"/api/live/sessions/{answer['session_id']}", headers=headers)
            await pc.close()
        assert r.status_code == 204, r.text
    assert frames[-1].width > 0
    log = by_name[holder].log_tail(200_000)
    assert answer["session_id"] in log, f"the session ran on {holder}, the camera's media node"


def alarms(db: Database) -> list[Alarm]:
    with db.session() as s:
        return list(s.scalars(select(Alarm).order_by(Alarm.id)))


async def test_cluster_failover(tmp_path: Path, postgres_url: str) -> None:
    require_model("person", 320)
    s3 = await asyncio.to_thread(s3server.S3Server().start)
    nats = await asyncio.to_thread(NatsServer().start)
    db = Database(postgres_url)
    db.open()
    seed(db)
    sip_port = free_port()
    common = {
        "VMS_DATABASE__URL": postgres_url,
        "VMS_OBJECTS__BACKEND": "s3",
        "VMS_OBJECTS__ENDPOINT": s3.endpoint,
        "VMS_OBJECTS__ACCESS_KEY": s3.access_key,
        "VMS_OBJECTS__SECRET_KEY": s3.secret_key,
        "VMS_AUTH__JWT_SECRET": "cluster-test-secret-not-for-production-01",
        "VMS_CLUSTER__NATS_URL": nats.url,
        "VMS_CLUSTER__HEARTBEAT_S": "1",
        "VMS_CLUSTER__LEASE_TTL_S": "3",
        "VMS_RECORDING__SEGMENT_S": "4",
        "VMS_RECORDING__REFRESH_S": "2",
        "VMS_ANALYZERS__MODELS_DIR": str(MODELS),
        "VMS_SIP__PORT": str(sip_port),
        "VMS_SUPERVISION__ENABLED": "false",
    }
    nodes = [Node("control", "control", tmp_path / "control", common)]
    for name, (low, high) in MEDIA_PORTS.items():
        env = {**common, "VMS_MEDIA__RTP_PORT_MIN": str(low), "VMS_MEDIA__RTP_PORT_MAX": str(high)}
        nodes.append(Node(name, "media", tmp_path / name, env))
    for name in ("analyzer-1", "analyzer-2"):
        nodes.append(Node(name, "analyzer", tmp_path / name, common))
    by_name = {n.name: n for n in nodes}
    nvrs: list[SimulatedNvr] = []
    try:
        nodes[0].start()
        await asyncio.to_thread(nodes[0].wait_ready, 90)  # migrations run once, here
        for node in nodes[1:]:
            node.start()
        for node in nodes[1:]:
            await asyncio.to_thread(node.wait_ready, 90)
        yard = write_clip(tmp_path / "yard.mp4")
        for device_id, cameras, video in (
            (PLAIN_NVR, PLAIN_CAMERAS, None),
            (YARD_NVR, YARD_CAMERAS, yard),
        ):
            nvr = SimulatedNvr(
                NvrConfig(
                    device_id=device_id,
                    server_id="34020000002000000001",
                    server_domain="3402000000",
                    server_host="127.0.0.1",
                    server_port=sip_port,
                    password=PASSWORD,
                    channel_ids=cameras,
                    catalog_per_message=20,
                    video=video,
                )
            )
            await nvr.start(wait=True)
            nvrs.append(nvr)

        def catalogued() -> bool:
            with db.session() as s:
                return len(s.scalars(select(Channel.id)).all()) == 40

        await until(catalogued, 30, "both catalogs", nodes)
        with db.session() as s:
            for row in s.scalars(select(Channel).where(Channel.channel_id.in_(YARD_CAMERAS))):
                row.analysis = ANALYSIS

        # --- 40 cameras, spread over both media nodes; both analyzers working ----------
        everyone = set(PLAIN_CAMERAS + YARD_CAMERAS)
        await until(
            lambda: (
                set(streaming(nvrs)) == everyone
                and set(streaming(nvrs).values()) == set(MEDIA_PORTS)
            ),
            90,
            "all 40 cameras streaming, over both media nodes",
            nodes,
        )
        spread = streaming(nvrs)
        per_node = {n: sum(1 for v in spread.values() if v == n) for n in MEDIA_PORTS}
        assert min(per_node.values()) >= 15, per_node  # fair shares, not all on one
        await until(
            lambda: (
                set(leases(db, "analysis")) == set(YARD_CAMERAS)
                and len(set(leases(db, "analysis").values())) == 2
            ),
            30,
            "each analyzer host holding one analysed camera",
            nodes,
        )
        await until(
            lambda: {a.video_code for a in alarms(db)} == set(YARD_CAMERAS),
            120,
            "an alarm from each analysed camera",
            nodes,
        )

        # --- a browser's live view through the control node, video from the media node -----
        await watch_through_control(by_name["control"], by_name, db, streaming(nvrs))

        # --- SIGKILL a media node --------------------------------------------------------
        victim = "media-1"
        moved = sorted(c for c, n in streaming(nvrs).items() if n == victim)
        camera = ChannelRef(PLAIN_NVR if moved[0] in PLAIN_CAMERAS else YARD_NVR, moved[0])

        def segments(after: datetime) -> bool:
            with db.session() as s:
                stmt = select(RecordingSegment.id).where(
                    RecordingSegment.channel_id == camera.channel_id,
                    RecordingSegment.is_gap.is_(False),
                    RecordingSegment.start > after,
                )
                return s.scalar(stmt) is not None

        started = datetime.now(UTC) - timedelta(minutes=5)
        await until(lambda: segments(started), 30, f"a segment recorded by {victim}", nodes)
        killed_at = datetime.now(UTC)
        by_name[victim].kill()
        took = await until(
            lambda: all(streaming(nvrs).get(c) == "media-2" for c in moved),
            FAILOVER_S,
            f"{len(moved)} cameras of {victim} streaming from media-2",
            nodes,
        )
        assert set(leases(db, "media").values()) == {"media-2"}
        # recording continues on media-2; the hole in the index is bounded
        await until(lambda: segments(killed_at), 30, "a segment recorded by media-2", nodes)
        window = (killed_at - timedelta(seconds=30), datetime.now(UTC))
        with db.session() as s:
            rows = rows_between(s, camera, *window)
            gaps = holes(merge_ranges(rows, *window), rows, *window)
        shown = [(r.start.time(), r.end.time(), r.is_gap, r.reason) for r in rows]
        inner = [g for g in gaps if window[0] < g.start and g.end < window[1]]
        assert len(inner) == 1, (killed_at.time(), gaps, shown)  # the failover, shown as a gap
        length = (inner[0].end - inner[0].start).total_seconds()
        assert length < took + 4 + 6, (took, shown)  # failover + a lost segment + slack
        print(f"media failover: {len(moved)} cameras in {took:.1f} s, recording gap {length:.1f} s")

        # --- SIGKILL an analyzer host ----------------------------------------------------
        held = leases(db, "analysis")
        victim_analyzer = held[YARD_CAMERAS[0]]
        survivor = ({"analyzer-1", "analyzer-2"} - {victim_analyzer}).pop()
        before = {a.alarm_id for a in alarms(db) if a.video_code == YARD_CAMERAS[0]}
        by_name[victim_analyzer].kill()
        took = await until(
            lambda: leases(db, "analysis").get(YARD_CAMERAS[0]) == survivor,
            FAILOVER_S,
            f"{survivor} taking over {YARD_CAMERAS[0]}",
            nodes,
        )
        alarm_s = took + await until(
            lambda: any(
                a.alarm_id not in before for a in alarms(db) if a.video_code == YARD_CAMERAS[0]
            ),
            90,
            "a new alarm from the camera of the killed analyzer",
            nodes,
        )
        print(f"analyzer failover: lease taken in {took:.1f} s, first alarm after {alarm_s:.1f} s")

        # --- no alarm lost: the killed host's alarms are carried on and cleared -----------
        await until(
            lambda: not any(a.active for a in alarms(db) if a.alarm_id in before),
            60,
            "the killed analyzer's alarms cleared by the survivor",
            nodes,
        )
        rows = alarms(db)
        for camera_id in YARD_CAMERAS:  # never two open alarms of one rule on a camera
            assert sum(1 for a in rows if a.video_code == camera_id and a.active) <= 1
        assert await alarm_queue_empty(nats.url), "every alarm on the bus was stored and acked"

        status = subprocess.run(
            [sys.executable, "-m", "vms", "cluster", "status", "--json"],
            env=by_name["control"].env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        shown = {n["name"]: n for n in json.loads(status.stdout)["nodes"]}
        assert shown["media-2"]["alive"] and not shown["media-1"]["alive"]
        assert shown["media-2"]["cameras"]["media"] == 40
    finally:
        for nvr in nvrs:
            await nvr.stop()
        for node in reversed(nodes):
            node.stop()
        db.close()
        nats.stop()
        s3.stop()
