"""The cluster's parts without the processes: fair-share planning, leases in a real database,
the alarm and SIP wire forms, the roles' component lists, and the bus against nats-server."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from analyzers.events import AlarmEvent, AlarmStatus
from sip.channel_ref import ChannelRef
from sip.media_api import (
    MediaAnswer,
    MediaOffer,
    MediaTransport,
    PlayMode,
    PlayRequest,
    PlaySession,
)
from storage.cluster_models import ClusterNode
from storage.db import Database
from vms.cluster.alarm_bus import decode_event, encode_event
from vms.cluster.leases import plan
from vms.cluster.registry import Registry
from vms.cluster.remote_sip import (
    answer_from_wire,
    request_from_wire,
    request_to_wire,
    session_to_wire,
)
from vms.components import for_role

CAMS = [ChannelRef("34020000001320000001", f"3402000000132{n:07d}") for n in range(1, 41)]


# --- planning (pure) ----------------------------------------------------------------------


def run_rounds(nodes: list[str], wanted: list[ChannelRef], rounds: int = 6) -> dict[str, set]:
    """Nodes taking turns, each seeing the others' leases, as over the database."""
    held: dict[str, set] = {n: set() for n in nodes}
    for _ in range(rounds):
        for me in nodes:
            leases = {c: (n, True) for n, cs in held.items() for c in cs}
            release, claim = plan(me, nodes, wanted, leases, held[me])
            held[me] -= release
            for c in claim:
                if c not in {x for cs in held.values() for x in cs}:
                    held[me].add(c)
    return held


def test_cameras_are_shared_fairly_and_completely() -> None:
    held = run_rounds(["a", "b"], CAMS)
    assert {len(v) for v in held.values()} == {20}
    assert set().union(*held.values()) == set(CAMS)
    held = run_rounds(["a", "b", "c"], CAMS[:7])
    assert sorted(len(v) for v in held.values()) == [2, 2, 3]


def test_a_node_that_joins_late_gets_its_share_and_nothing_flaps() -> None:
    held = {"a": set(CAMS), "b": set()}
    for _ in range(4):
        for me in ("a", "b"):
            leases = {c: (n, True) for n, cs in held.items() for c in cs}
            release, claim = plan(me, ["a", "b"], CAMS, leases, held[me])
            held[me] = (held[me] - release) | set(claim)
    assert len(held["a"]) == len(held["b"]) == 20
    before = {k: set(v) for k, v in held.items()}
    for me in ("a", "b"):
        leases = {c: (n, True) for n, cs in held.items() for c in cs}
        assert plan(me, ["a", "b"], CAMS, leases, held[me]) == (set(), [])
    assert held == before


def test_a_dead_nodes_cameras_are_taken_and_unwanted_ones_let_go() -> None:
    mine = set(CAMS[:20])
    leases = {c: ("a", True) for c in mine} | {c: ("dead", False) for c in CAMS[20:]}
    release, claim = plan("a", ["a"], CAMS, leases, mine)
    assert release == set() and set(claim) == set(CAMS[20:])
    release, claim = plan("a", ["a"], CAMS[:10], leases, mine)
    assert release == set(CAMS[10:20]) and claim == []


def test_share_is_a_ceiling() -> None:
    _, claim = plan("a", ["a", "b", "c"], CAMS[:10], {}, set())
    assert len(claim) == math.ceil(10 / 3)


# --- leases in the database -----------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def lease_db(request: pytest.FixtureRequest, tmp_path) -> Database:
    url = (
        f"sqlite:///{tmp_path / 'c.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    db = Database(url)
    db.open()
    yield db
    db.close()


def test_a_lease_has_one_holder_until_it_runs_out(lease_db: Database) -> None:
    a = Registry(lease_db, "a", "media", "10.0.0.1", 3)
    b = Registry(lease_db, "b", "media", "10.0.0.2", 3)
    cam = CAMS[0]
    with lease_db.session() as s:
        a.heartbeat(s, {"cameras": 0})
        b.heartbeat(s, {})
        assert a.alive(s, "media") == ["a", "b"]
    with lease_db.session() as s:
        assert a.claim(s, "media", cam)
    with lease_db.session() as s:
        assert not b.claim(s, "media", cam)  # a valid lease of another node
        assert a.renew(s, "media") == {cam} and b.renew(s, "media") == set()
        assert a.claim(s, "analysis", cam) is not False  # kinds are separate leases
    with lease_db.session() as s:  # a stops beating: its leases are free
        s.execute(
            update(ClusterNode)
            .where(ClusterNode.name == "a")
            .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=10))
        )
    with lease_db.session() as s:
        assert b.leases(s, "media")[cam] == ("a", False)
        assert b.claim(s, "media", cam)
        assert a.renew(s, "media") == set()
        assert b.leases(s, "media")[cam] == ("b", True)
    with lease_db.session() as s:  # a comes back: its first beat forgets its old leases
        a2 = Registry(lease_db, "a", "media", "10.0.0.1", 3)
        a2.heartbeat(s, {})
    with lease_db.session() as s:
        assert a2.renew(s, "analysis") == set()
    with lease_db.session() as s:
        b.leave(s)
    with lease_db.session() as s:
        assert cam not in b.leases(s, "media")  # let go at once
        assert a.alive(s, "media") == ["a"]
        assert [n.alive for n in a.nodes(s)] == [True, False]


# --- wire forms -------------------------------------------------------------------------------


def test_alarm_events_cross_the_bus_whole_and_garbage_is_refused() -> None:
    ev = AlarmEvent(
        alarm_id="0b4b6a55-2d43-4f0e-8c38-5c2c0b4bd7a1",
        status=AlarmStatus.alarm,
        channel_id=CAMS[0].channel_id,
        profile="enterprise",
        rule="intrusion",
        alarm_type="9",
        at=datetime(2026, 12, 6, 8, 0, tzinfo=UTC),
        snapshot_jpeg=b"\xff\xd8snap",
        raw_jpeg=b"\xff\xd8raw",
        detail={"boxes": [[1, 2, 3, 4]], "zone": "院子"},
        device_id=CAMS[0].device_id,
    )
    assert decode_event(encode_event(ev)) == ev
    data = encode_event(ev)
    for bad in (b"", data[:5], data[:12], b"\x00\x00\x00\x05\x00\x00\x00\x00{bad}"):
        with pytest.raises(ValueError):
            decode_event(bad)


def test_play_requests_and_sessions_cross_the_bus_whole() -> None:
    req = PlayRequest(
        CAMS[0].device_id,
        CAMS[0].channel_id,
        PlayMode.playback,
        datetime(2026, 12, 6, 8, tzinfo=UTC),
        datetime(2026, 12, 6, 9, tzinfo=UTC),
        download_speed=4,
    )
    assert request_from_wire(request_to_wire(req)) == req
    answer = MediaAnswer("127.0.0.1", 15060, "0100000001", MediaTransport.udp, None, {96: "PS"})
    session = PlaySession(
        "call-1", req, MediaOffer("127.0.0.1", 30000, "1100000001"), answer, datetime.now(UTC)
    )
    assert answer_from_wire(session_to_wire(session)["answer"]) == answer


def test_each_role_builds_its_part() -> None:
    names = {r: [s.name for s in for_role(r)] for r in ("all", "control", "media", "analyzer")}
    assert "cluster-media" not in names["all"] and "sip" in names["all"]
    assert names["control"][:3] == ["sip", "alarms", "cluster-control"]
    assert names["media"][:2] == ["cluster-media", "media"] and "sip" not in names["media"]
    assert names["analyzer"] == ["cluster-analyzer", "analyzers"]
    with pytest.raises(ValueError, match="unknown role"):
        for_role("gpu")


# --- the bus against a real nats-server -----------------------------------------------------


async def test_alarms_wait_in_the_spool_while_nats_is_away(tmp_path) -> None:
    from vms.cluster.alarm_bus import AlarmConsumer, BusAlarmSink
    from vms.cluster.bus import Bus

    from .cluster_support import NatsServer

    nats = NatsServer().start()
    stored: list[AlarmEvent] = []

    class Alarms:
        async def handle(self, event: AlarmEvent) -> None:
            stored.append(event)

    def event(n: int) -> AlarmEvent:
        return AlarmEvent(
            alarm_id=f"0b4b6a55-2d43-4f0e-8c38-5c2c0b4bd7{n:02d}",
            status=AlarmStatus.alarm,
            channel_id=CAMS[0].channel_id,
            profile="enterprise",
            rule="intrusion",
            alarm_type="9",
            at=datetime.now(UTC),
            snapshot_jpeg=b"\xff\xd8" + bytes(1024 * 1024),  # a big picture still fits
        )

    sender, receiver = Bus(nats.url, "analyzer"), Bus(nats.url, "control")
    sink = BusAlarmSink(sender, tmp_path / "spool", ack_timeout_s=1)
    try:
        await sender.connect()
        await receiver.connect()
        await sender.ensure_alarm_stream()
        await sink.start()
        await sink.handle(event(1))
        consumer = AlarmConsumer(receiver, Alarms())
        await consumer.start()
        for _ in range(100):
            if stored:
                break
            await asyncio.sleep(0.05)
        assert [e.alarm_id for e in stored] == [event(1).alarm_id]
        await sender.client.close()  # the analyzer loses NATS
        await sink.handle(event(2))
        assert sink.spooled == 1 and len(list((tmp_path / "spool").glob("*.alarm"))) == 1
        await sender.connect()  # back
        assert await sink.flush_spool() == 1
        for _ in range(100):
            if len(stored) == 2:
                break
            await asyncio.sleep(0.05)
        assert [e.alarm_id for e in stored] == [event(1).alarm_id, event(2).alarm_id]
        assert stored[1].snapshot_jpeg == event(2).snapshot_jpeg
        await consumer.stop()
    finally:
        await sink.stop()
        await sender.close()
        await receiver.close()
        nats.stop()


def test_table3_run_status_of_a_control_node_follows_the_leases(lease_db: Database) -> None:
    from storage.models import Channel, Device
    from vms.cluster.status import analysis_running

    cam = CAMS[0]
    with lease_db.session() as s:
        device = Device(device_id=cam.device_id, name="NVR", online=True)
        device.channels.append(
            Channel(channel_id=cam.channel_id, name="c", analysis={"enabled": True, "rules": []})
        )
        s.add(device)
    media = Registry(lease_db, "media-1", "media", "", 3)
    analyzer = Registry(lease_db, "analyzer-1", "analyzer", "", 3)
    with lease_db.session() as s:
        assert analysis_running(s, 3) is False  # no analyzer host
        media.heartbeat(s, {})
        analyzer.heartbeat(s, {})
    with lease_db.session() as s:
        assert analysis_running(s, 3) is False  # the analysed camera is held by nobody
        assert media.claim(s, "media", cam) and analyzer.claim(s, "analysis", cam)
    with lease_db.session() as s:
        assert analysis_running(s, 3) is True
        assert analysis_running(s, 3, {"34020000001320000099"}) is True  # another site
        s.execute(
            update(ClusterNode)
            .where(ClusterNode.name == "media-1")
            .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=10))
        )
    with lease_db.session() as s:
        assert analysis_running(s, 3) is False  # its media node died: not analysing
