"""Live view over real WebRTC: an aiortc browser stand-in on 127.0.0.1 negotiates through the
HTTP signalling endpoint, receives the hub's H.264 and decodes it; the server only packetizes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiortc import RTCSessionDescription
from aiortc.codecs.h264 import H264Encoder

from api.app import create_app
from sip.channel_ref import ChannelRef
from vms.live.service import LiveService, create_live
from vms.media.hub import StreamHub
from vms.services import Services

from .live_media import (
    CAMERA,
    CHANNEL_ID,
    FPS,
    HEIGHT,
    OTHER_CHANNEL_ID,
    WIDTH,
    FakeHub,
    access_unit,
    encoded_units,
    login,
    make_offer,
    seed_cameras,
)

Node = tuple[Services, LiveService, httpx.AsyncClient]


@pytest.fixture
async def node(services: Services) -> AsyncIterator[Node]:
    seed_cameras(services.db)
    services.media = FakeHub()
    live = create_live(services)
    assert live is not None and services.live is live
    await live.start()
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://vms.test") as client:
        yield services, live, client
    await live.stop()


async def feed(hub: Any, camera: ChannelRef, stop: asyncio.Event) -> None:
    """Publish a looping clip at twice real time until told to stop."""
    units = encoded_units()
    i = 0
    while not stop.is_set():
        hub.publish(camera, access_unit(camera.channel_id, i, units))
        i += 1
        await asyncio.sleep(0.5 / FPS)


@contextlib.asynccontextmanager
async def feeding(hub: Any, camera: ChannelRef) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(feed(hub, camera, stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def test_browser_peer_receives_camera_h264_without_reencode(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    services, live, client = node
    hub = StreamHub(services)  # the media engineer's hub; no SIP here, so units come by publish()
    await hub.start()
    assert services.media is hub
    packed: list[bytes] = []
    encoded: list[Any] = []
    original_pack = H264Encoder.pack

    def spy_pack(self: H264Encoder, packet: Any) -> Any:
        packed.append(bytes(packet))
        return original_pack(self, packet)

    def spy_encode(self: H264Encoder, frame: Any, force_keyframe: bool = False) -> Any:
        encoded.append(frame)
        raise AssertionError("the live path must never encode")

    monkeypatch.setattr(H264Encoder, "pack", spy_pack)
    monkeypatch.setattr(H264Encoder, "encode", spy_encode)

    headers = await login(client, "operator")
    pc = await make_offer()
    frames: list[Any] = []
    got_track = asyncio.Event()

    @pc.on("track")
    def _on_track(track: Any) -> None:
        async def read() -> None:
            with contextlib.suppress(Exception):
                while True:
                    frames.append(await track.recv())

        asyncio.ensure_future(read())
        got_track.set()

    r = await client.post(
        f"/api/live/{CHANNEL_ID}/offer", json={"sdp": pc.localDescription.sdp}, headers=headers
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["type"] == "answer" and "H264/90000" in answer["sdp"]
    assert "VP8" not in answer["sdp"]  # H.264 is the only codec we can send without re-encoding
    assert "127.0.0.1" in answer["sdp"]  # our host candidate, loopback as configured
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    try:
        async with feeding(hub, CAMERA), asyncio.timeout(20):
            await got_track.wait()
            while len(frames) < 20:
                await asyncio.sleep(0.05)
        assert pc.connectionState == "connected"
        assert {(f.width, f.height) for f in frames} == {(WIDTH, HEIGHT)}

        # The forwarded bytes are the published access units, in order, from a keyframe on.
        units = encoded_units()
        first = next(i for i, (key, data) in enumerate(units) if data == packed[0])
        assert units[first][0], "a viewer starts at a keyframe"
        expected = [units[(first + k) % len(units)][1] for k in range(len(packed))]
        assert packed == expected
        assert encoded == []
        session = next(iter(live.sessions.values()))
        sender = session.pc.getSenders()[0]
        assert sender._RTCRtpSender__encoder.codec is None  # no x264 context opened
        assert session.track.units >= 20
    except BaseException:
        await pc.close()
        raise

    r = await client.delete(f"/api/live/sessions/{answer['session_id']}", headers=headers)
    assert r.status_code == 204
    await pc.close()
    assert live.sessions == {}
    assert hub.stats(CAMERA)["consumers"] == []  # the relay let go with its last viewer
    await hub.stop()


class Viewer:
    """An aiortc peer standing in for a browser tile; collects decoded frames."""

    def __init__(self, pc: Any, answer: dict[str, Any]) -> None:
        self.pc = pc
        self.answer = answer
        self.frames: list[Any] = []

        @pc.on("track")
        def _on_track(track: Any) -> None:
            async def read() -> None:
                with contextlib.suppress(Exception):
                    while True:
                        self.frames.append(await track.recv())

            asyncio.ensure_future(read())

    @classmethod
    async def connect(
        cls, client: httpx.AsyncClient, headers: dict[str, str], channel_id: str
    ) -> Viewer:
        pc = await make_offer()
        r = await client.post(
            f"/api/live/{channel_id}/offer", json={"sdp": pc.localDescription.sdp}, headers=headers
        )
        if r.status_code != 200:
            await pc.close()
            raise AssertionError(f"offer refused: {r.status_code} {r.text}")
        viewer = cls(pc, r.json())
        await pc.setRemoteDescription(RTCSessionDescription(viewer.answer["sdp"], "answer"))
        return viewer

    async def frames_at_least(self, n: int) -> None:
        while len(self.frames) < n:
            await asyncio.sleep(0.05)


async def test_viewers_of_one_camera_share_one_hub_subscription(node: Node) -> None:
    services, live, client = node
    hub: FakeHub = services.media
    headers = await login(client, "operator")
    a = await Viewer.connect(client, headers, CHANNEL_ID)
    b = await Viewer.connect(client, headers, CHANNEL_ID)
    try:
        async with feeding(hub, CAMERA), asyncio.timeout(20):
            await a.frames_at_least(5)
            await b.frames_at_least(5)
            assert hub.subscribe_calls == 1 and hub.consumers(CAMERA) == 1
            assert live.relays.stats()[0]["viewers"] == 2

            # One viewer leaves: the other keeps receiving, the hub keeps its one consumer.
            r = await client.delete(f"/api/live/sessions/{a.answer['session_id']}", headers=headers)
            assert r.status_code == 204
            seen = len(b.frames)
            await b.frames_at_least(seen + 5)
            assert hub.consumers(CAMERA) == 1
    finally:
        await a.pc.close()
        await b.pc.close()
    await live.hangup(b.answer["session_id"])
    assert hub.consumers(CAMERA) == 0 and live.relays.stats() == []


async def test_answer_offers_only_configured_host_candidates(node: Node) -> None:
    services, live, client = node
    headers = await login(client, "operator")
    viewer = await Viewer.connect(client, headers, CHANNEL_ID)
    try:
        candidates = [
            line for line in viewer.answer["sdp"].splitlines() if line.startswith("a=candidate")
        ]
        assert candidates and all(" 127.0.0.1 " in c and " typ host" in c for c in candidates)
        assert "a=sendonly" in viewer.answer["sdp"]
    finally:
        await viewer.pc.close()


async def test_channel_scoping_and_bad_requests(node: Node) -> None:
    services, live, client = node
    ent_b = await login(client, "ent_b")
    pc = await make_offer()
    offer = {"sdp": pc.localDescription.sdp}
    try:
        # Another enterprise's camera looks exactly like a missing one.
        r = await client.post(f"/api/live/{CHANNEL_ID}/offer", json=offer, headers=ent_b)
        assert r.status_code == 404
        r = await client.post("/api/live/34020000001310009999/offer", json=offer, headers=ent_b)
        assert r.status_code == 404
        r = await client.post(f"/api/live/{CHANNEL_ID}/offer", json=offer)
        assert r.status_code == 401
        r = await client.post("/api/live/not-a-gb-id/offer", json=offer, headers=ent_b)
        assert r.status_code == 422

        # Its own camera: garbage SDP and an offer without video are clear 400s, nothing leaks.
        url = f"/api/live/{OTHER_CHANNEL_ID}/offer"
        r = await client.post(url, json={"sdp": "v=0 this is not sdp"}, headers=ent_b)
        assert r.status_code == 400 and "video" in r.json()["detail"]
        bad = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 RTP/AVP 96\r\n"
        r = await client.post(url, json={"sdp": bad}, headers=ent_b)
        assert r.status_code == 400 and "cannot answer" in r.json()["detail"]
        assert live.sessions == {} and live.relays.stats() == []

        # A session can only be hung up by its owner (or an admin).
        r = await client.post(url, json=offer, headers=ent_b)
        assert r.status_code == 200
        session_id = r.json()["session_id"]
        r = await client.delete(
            f"/api/live/sessions/{session_id}", headers=await login(client, "operator")
        )
        assert r.status_code == 404
        r = await client.delete(f"/api/live/sessions/{session_id}", headers=ent_b)
        assert r.status_code == 204
    finally:
        await pc.close()


async def test_limits_and_missing_parts_answer_503(node: Node) -> None:
    services, live, client = node
    headers = await login(client, "operator")
    live.settings = live.settings.model_copy(update={"max_sessions": 2, "max_sessions_per_user": 1})
    first = await Viewer.connect(client, headers, CHANNEL_ID)
    pc = await make_offer()
    try:
        r = await client.post(
            f"/api/live/{CHANNEL_ID}/offer", json={"sdp": pc.localDescription.sdp}, headers=headers
        )
        assert r.status_code == 429 and "operator already watches 1" in r.json()["detail"]
        other = await Viewer.connect(client, await login(client, "ent_a"), CHANNEL_ID)
        await other.pc.close()
        r = await client.post(
            f"/api/live/{CHANNEL_ID}/offer",
            json={"sdp": pc.localDescription.sdp},
            headers=await login(client, "ent_b"),
        )
        assert r.status_code == 404  # scope is checked before any limit
        live.settings = live.settings.model_copy(update={"max_sessions_per_user": 5})
        r = await client.post(
            f"/api/live/{CHANNEL_ID}/offer", json={"sdp": pc.localDescription.sdp}, headers=headers
        )
        assert r.status_code == 503 and "limit of 2" in r.json()["detail"]
        await live.hangup(other.answer["session_id"])
        await live.hangup(first.answer["session_id"])

        services.media.codecs[CAMERA] = "h265"
        r = await client.post(
            f"/api/live/{CHANNEL_ID}/offer", json={"sdp": pc.localDescription.sdp}, headers=headers
        )
        assert r.status_code == 415 and "H.265" in r.json()["detail"]
        services.media.codecs.clear()

        hub, services.media = services.media, None
        r = await client.post(
            f"/api/live/{CHANNEL_ID}/offer", json={"sdp": pc.localDescription.sdp}, headers=headers
        )
        assert r.status_code == 503 and "media hub" in r.json()["detail"]
        services.media = hub

        services.live = None
        r = await client.post(
            f"/api/live/{CHANNEL_ID}/offer", json={"sdp": pc.localDescription.sdp}, headers=headers
        )
        assert r.status_code == 503
        services.live = live
    finally:
        await first.pc.close()
        await pc.close()


async def test_keyframe_requests_reach_the_hub_rate_limited(node: Node) -> None:
    services, live, client = node
    hub: FakeHub = services.media
    headers = await login(client, "operator")
    viewer = await Viewer.connect(client, headers, CHANNEL_ID)
    try:
        session = live.sessions[viewer.answer["session_id"]]
        sender = session.pc.getSenders()[0]
        assert hub.keyframe_requests == [CAMERA]  # asked for the new viewer
        # What aiortc calls on an incoming PLI/FIR (RTCRtpSender._handle_rtcp_packet).
        sender._send_keyframe()
        sender._send_keyframe()
        assert session.track.keyframe_requests == 2
        assert hub.keyframe_requests == [CAMERA]  # at most one a second per channel
        live._last_keyframe_request.clear()
        sender._send_keyframe()
        assert hub.keyframe_requests == [CAMERA, CAMERA]
    finally:
        await viewer.pc.close()


async def test_unconnected_peers_are_swept_and_stop_closes_everything(node: Node) -> None:
    services, live, client = node
    hub: FakeHub = services.media
    headers = await login(client, "operator")
    pc = await make_offer()  # offers, but never applies the answer: ICE cannot complete
    try:
        r = await client.post(
            f"/api/live/{CHANNEL_ID}/offer", json={"sdp": pc.localDescription.sdp}, headers=headers
        )
        assert r.status_code == 200
        live.settings = live.settings.model_copy(update={"connect_timeout_s": 0.01})
        await asyncio.sleep(0.05)
        await live.sweep()
        assert live.sessions == {} and hub.consumers(CAMERA) == 0

        live.settings = live.settings.model_copy(update={"connect_timeout_s": 20})
        viewer = await Viewer.connect(client, headers, CHANNEL_ID)
        await live.stop()
        assert live.sessions == {} and hub.consumers(CAMERA) == 0
        await viewer.pc.close()
    finally:
        await pc.close()
