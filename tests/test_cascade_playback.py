"""A superior replays and downloads from our own recordings through the cascade, steering it
with MANSRTSP (pause, resume, Scale, seek), and gets MediaStatus 121 at the end; it asks
RecordInfo (answered from our index); channels it may not see are refused.  The superior is a
second SIP server of this project receiving on a real UDP socket; the node is whole."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sip.channel_ref import ChannelRef
from sip.media_api import MediaOffer, PlayError, PlayRequest
from sip.server import SipServer
from sip.settings import UpstreamConfig
from sip.store import MemoryDeviceStore
from storage.db import Database
from storage.models import Channel, Device, OrgKind
from storage.org_tree import create_org
from vms.cascade.selection import set_selection
from vms.media.frames import AccessUnit
from vms.media.ps import PsDemuxer
from vms.media.receiver import RtpIngest, UdpReceiver
from vms.media.stats import StreamStats

from .cascade_support import record_clip, running_node, settings_for, until
from .media_support import Collector
from .recording_support import decode_md5s, encode_clip
from .sip_support import running_server, server_config

NODE_ID, NODE_DOMAIN = "34020000002000000001", "3402000000"
SUP_ID, SUP_DOMAIN = "34000000002000000001", "3400000000"
NVR = "34020000001180000001"
CH, SECRET, HIDDEN = (f"3402000000132000000{n}" for n in (1, 2, 3))
PASSWORD = "up-secret-1"
WALL0 = time.time() - 7200  # the recording is two hours old


def seed(db: Database) -> None:
    with db.session() as s:
        county = create_org(s, "县", OrgKind.county, None, "340200")
        plant = create_org(s, "厂", OrgKind.enterprise, county, "340200001")
        s.add(
            Device(
                device_id=NVR,
                org_id=plant.id,
                online=True,  # recorded (prepare); it never registers here: replays are ours
                channels=[
                    Channel(channel_id=CH, name="罐区"),
                    Channel(channel_id=SECRET, secrecy=1, record_enabled=False),
                    Channel(channel_id=HIDDEN, record_enabled=False),
                ],
            )
        )
        set_selection(s, SUP_ID, False, [CH, SECRET])


async def prepare(services) -> None:
    await record_clip(services, ChannelRef(NVR, CH), WALL0)


def free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def cascade(tmp_path: Path):
    store = MemoryDeviceStore({NODE_ID: PASSWORD})
    async with running_server(
        store, server_id=SUP_ID, domain=SUP_DOMAIN, auto_create_devices=False
    ) as superior:
        upstream = {
            "server_id": SUP_ID,
            "domain": SUP_DOMAIN,
            "host": "127.0.0.1",
            "port": superior.port,
            "password": PASSWORD,
            "keepalive_interval_s": 1,
            "retry_s": 1,
        }
        settings = settings_for(
            tmp_path / "node",
            server_id=NODE_ID,
            domain=NODE_DOMAIN,
            password="devices-pass",
            ports=(36400, 36599),
            upstreams=[upstream],
            catalog_on_register=False,
        )
        async with running_node(settings, seed, prepare=prepare) as node:
            await until(lambda: superior.registrations.online(NODE_ID), 20, "registered upward")
            yield superior, node


class Receiver:
    """The superior's RTP receive: a UDP port, the node's own PS demuxer."""

    def __init__(self, ssrc: str) -> None:
        self.ssrc = ssrc
        self.sink = Collector()
        self.ingest = RtpIngest(PsDemuxer(CH), self.sink, int(ssrc), StreamStats())
        self.port = free_udp()
        self.udp: UdpReceiver | None = None

    async def __aenter__(self) -> Receiver:
        self.udp = await UdpReceiver.open(self.ingest, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.udp is not None
        self.udp.close()

    @property
    def offer(self) -> MediaOffer:
        return MediaOffer("127.0.0.1", self.port, self.ssrc)

    @property
    def units(self) -> list[AccessUnit]:
        return self.sink.units


def range_of(start_s: float, end_s: float) -> tuple[datetime, datetime]:
    return (
        datetime.fromtimestamp(int(WALL0 + start_s), UTC),
        datetime.fromtimestamp(int(WALL0 + end_s), UTC),
    )


async def test_playback_steered_by_mansrtsp_and_ended_by_121(cascade) -> None:
    superior, node = cascade
    ended: list[str] = []
    superior.add_session_listener(lambda session, reason: ended.append(reason))
    start, end = range_of(-30, 30)  # the minute around the 10 s recorded
    async with Receiver("1340000001") as rx:
        session = await superior.play(PlayRequest(NODE_ID, CH, "playback", start, end), rx.offer)
        forward = node.cascade.forwards[session.call_id]
        assert forward.source.kind == "recording"
        await until(lambda: len(rx.units) >= 10, 20, "replayed frames")

        await superior.control_playback(session, pause=True)
        await asyncio.sleep(0.3)
        paused_at = forward.sender.stats.frames
        await asyncio.sleep(1.0)
        assert forward.sender.stats.frames - paused_at <= 1  # at most a frame in flight
        await superior.control_playback(session, pause=False)
        await until(lambda: forward.sender.stats.frames > paused_at + 5, 10, "resumed")

        await superior.control_playback(session, scale=4.0)
        await asyncio.sleep(0.2)
        p0, t0 = forward.source.position, time.monotonic()
        await asyncio.sleep(1.0)
        assert forward.source.position - p0 >= 1.5 * (time.monotonic() - t0)  # faster than 1x
        assert forward.source.speed == 4.0

        await superior.control_playback(session, scale=1.0, seek_s=31)  # npt from the start
        await until(lambda: forward.source.position < WALL0 + 2.5, 10, "the seek back to second 1")
        await until(lambda: ended, 40, "MediaStatus 121 at the end of the range")
    assert ended == ["media-status-121"]
    assert forward.state == "ended" and session.call_id not in node.cascade.forwards
    clip = encode_clip()
    got = rx.units
    assert got[0].keyframe
    assert set(decode_md5s(b"".join(u.data for u in got), "h264")) <= set(clip.checksums)


async def test_download_at_four_times_with_file_size(cascade) -> None:
    superior, node = cascade
    ended: list[str] = []
    superior.add_session_listener(lambda session, reason: ended.append(reason))
    start, end = range_of(0, 10)
    async with Receiver("1340000002") as rx:
        request = PlayRequest(NODE_ID, CH, "download", start, end, download_speed=4)
        session = await superior.play(request, rx.offer)
        assert session.answer.file_size and session.answer.file_size > 10_000
        forward = node.cascade.forwards[session.call_id]
        assert forward.source.speed == 4
        await until(lambda: ended, 40, "the download's end")
    assert len(rx.units) >= 200  # of the 250 frames recorded (the last waits for a next one)


async def test_record_info_from_our_index(cascade) -> None:
    superior, _ = cascade
    start, end = range_of(-600, 600)
    result = await superior.record_info(NODE_ID, CH, start, end)
    assert result.complete and len(result.items) == 1
    item = result.items[0]
    assert abs(item.start.timestamp() - WALL0) < 1 and 8 < (item.end - item.start).seconds <= 11
    assert item.file_size > 0
    nothing = await superior.record_info(NODE_ID, HIDDEN, start, end)
    assert nothing.items == []  # not shared with this superior


@pytest.mark.parametrize("channel", [SECRET, HIDDEN, "34020000001329999999"])
async def test_channels_it_may_not_see_are_refused(cascade, channel: str) -> None:
    superior, _ = cascade
    with pytest.raises(PlayError) as err:
        await superior.play(PlayRequest(NODE_ID, channel), MediaOffer("127.0.0.1", 9, "0340000009"))
    assert err.value.status == 404


async def test_bye_stops_the_forward_and_frees_the_subscription(cascade) -> None:
    superior, node = cascade
    start, end = range_of(0, 10)
    async with Receiver("1340000003") as rx:
        session = await superior.play(PlayRequest(NODE_ID, CH, "playback", start, end), rx.offer)
        await until(lambda: len(rx.units) >= 5, 20, "frames")
        await superior.stop(session)
        await until(lambda: session.call_id not in node.cascade.forwards, 10, "forward gone")
        sent = node.cascade.finished[-1]
        assert sent.state == "stopped"
        frames = sent.sender.stats.frames
        await asyncio.sleep(0.5)
        assert sent.sender.stats.frames == frames  # nothing sent after the BYE


async def test_several_superiors_each_its_own_view_and_a_lost_one_stops(cascade) -> None:
    superior, node = cascade
    sup2_id = "34010000002000000001"
    store = MemoryDeviceStore({NODE_ID: "second-secret"})
    second = SipServer(
        server_config(server_id=sup2_id, domain="3401000000", auto_create_devices=False), store
    )
    await second.start()
    try:
        with node.services.db.session() as s:
            set_selection(s, sup2_id, False, [HIDDEN])
        up = node.sip.add_upstream(
            UpstreamConfig(
                sup2_id,
                "3401000000",
                "127.0.0.1",
                second.port,
                "second-secret",
                keepalive_interval_s=0.5,
                keepalive_misses=2,
                retry_s=0.5,
            ),
            node.cascade,
        )
        await up.start()
        await until(lambda: second.registrations.online(NODE_ID), 20, "registered with both")
        first_view = [i.device_id for i in (await superior.catalog(NODE_ID)).items if i.is_channel]
        second_view = [i.device_id for i in (await second.catalog(NODE_ID)).items if i.is_channel]
        assert (first_view, second_view) == ([CH], [HIDDEN])

        with node.services.db.session() as s:
            set_selection(s, sup2_id, True, [])
        start, end = range_of(0, 10)
        async with Receiver("1340000004") as rx:
            session = await second.play(PlayRequest(NODE_ID, CH, "playback", start, end), rx.offer)
            await until(lambda: len(rx.units) >= 3, 20, "frames to the second superior")
            # it restarts: it forgot our registration and its sessions, and sends no BYE;
            # our keepalive is answered 404, we register again, the stream must stop
            second.registry.pop(NODE_ID)
            await until(
                lambda: session.call_id not in node.cascade.forwards,
                20,
                "the stream to the superior that lost us stopped",
            )
            assert up.agent.state.losses >= 1 and node.cascade.finished[-1].state == "stopped"
            await until(lambda: second.registrations.online(NODE_ID), 20, "registered again")
        assert superior.registrations.online(NODE_ID)  # the first one is not affected
    finally:
        await second.close()
