"""Raw H.264/H.265 over RTP (RFC 6184 / RFC 7798): depacketizing, PT routing, sniffing, hub."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from rtp.packetizer import PT_H264, PT_H265, packetize
from sip import sdp as sdplib
from sip.channel_ref import ChannelRef
from sip.media_api import MediaAnswer, MediaOffer, MediaTransport, PlayRequest, PlaySession
from storage.models import Channel, Device
from vms.media import payload
from vms.media.frames import AccessUnit, Codec, Gap
from vms.media.h26x import H264_PPS, H264_SPS, nal_type, split_annexb
from vms.media.hub import StreamHub
from vms.media.ps import PsDemuxer
from vms.media.receiver import RtpIngest
from vms.media.rtp_h26x import H26xDepacketizer
from vms.media.stats import StreamStats
from vms.services import Services

from .media_support import (
    SSRC,
    Collector,
    collect_units,
    decode_bytes,
    decode_units,
    encode_units,
    h26x_rtp,
    nvr_frame,
    nvr_rig,
)

CH = "34020000001320000001"
DEVICE = "34020000001110000001"
E2E_DEVICE = "34020000001180000002"


@pytest.fixture(scope="module")
def h264_clip() -> list[tuple[int, bool, bytes]]:
    """3 s of 640x360 libx264, GOP 25: P frames exceed the MTU, so FU-A is needed."""
    return encode_units(75, (640, 360), gop=25)


@pytest.fixture(scope="module")
def h265_clip() -> list[tuple[int, bool, bytes]]:
    return encode_units(30, (320, 240), "libx265", gop=10)


def ingest_of(types: dict[int, str] | None = None) -> tuple[RtpIngest, Collector]:
    sink = Collector()
    ingest = RtpIngest(PsDemuxer(CH), sink, SSRC, StreamStats(), False, types)
    return ingest, sink


def feed(ingest: RtpIngest, packets: list[bytes]) -> None:
    for p in packets:
        ingest.on_packet(p, 1.0)
    for item in ingest.flush():
        ingest.sink(item)


def test_h264_roundtrip_pixels_identical(h264_clip) -> None:
    packets = h26x_rtp(h264_clip)
    kinds = {p[12] & 0x1F for p in packets}
    assert {24, 28} <= kinds  # STAP-A (SPS+PPS) and FU-A both in use
    ingest, sink = ingest_of({PT_H264: "H264"})
    feed(ingest, packets)
    assert not sink.gaps
    assert [u.keyframe for u in sink.units] == [k for _, k, _ in h264_clip]
    assert [u.pts for u in sink.units] == [p for p, _, _ in h264_clip]
    assert all(u.codec is Codec.h264 for u in sink.units)
    ref = decode_bytes([d for _, _, d in h264_clip])
    assert len(ref) == 75 and decode_units(sink.units) == ref
    assert ingest.resolution == (640, 360) and ingest.stats.unknown_pt == 0


def test_fu_fragment_loss_drops_frame_until_keyframe(h264_clip) -> None:
    packets = h26x_rtp(h264_clip)
    # a non-start FU-A fragment of frame 5 (a P frame)
    ts5 = h264_clip[5][0]
    frags = [
        i
        for i, p in enumerate(packets)
        if int.from_bytes(p[4:8], "big") == ts5 and p[12] & 0x1F == 28 and not p[13] & 0x80
    ]
    assert frags
    lossy = packets[: frags[0]] + packets[frags[0] + 1 :]
    ingest, sink = ingest_of({PT_H264: "H264"})
    feed(ingest, lossy)
    assert ingest.sequence.lost == 1
    kept = list(range(5)) + list(range(25, 75))  # frame 5 dropped, resume at keyframe 25
    assert [u.pts for u in sink.units] == [h264_clip[i][0] for i in kept]
    gap_at = sink.items.index(sink.gaps[0])
    assert len(sink.gaps) == 1 and sink.gaps[0].reason == "packet-loss" and gap_at == 5
    assert sink.items[gap_at + 1].keyframe
    ref = decode_bytes([h264_clip[i][2] for i in kept])
    assert decode_units(sink.units) == ref


def test_depacketizer_without_sequence_numbers_drops_broken_frame(h264_clip) -> None:
    """A missing FU start (no loss signalled) still drops the frame and waits for a key."""
    dep = H26xDepacketizer(CH, Codec.h264)
    out: list[AccessUnit | Gap] = []
    for p in h26x_rtp(h264_clip[:30]):
        pl = p[12:]
        ts = int.from_bytes(p[4:8], "big")
        if ts == h264_clip[3][0] and pl[0] & 0x1F == 28 and pl[1] & 0x80:
            continue  # the start fragment of frame 3
        out += dep.feed(pl, ts, bool(p[1] & 0x80))
    out += dep.flush()
    units = [x for x in out if isinstance(x, AccessUnit)]
    assert [u.pts for u in units] == [h264_clip[i][0] for i in [0, 1, 2, 25, 26, 27, 28, 29]]
    assert isinstance(out[3], Gap) and dep.stats.dropped_fragments >= 1
    assert dep.stats.skipped_frames == 22  # frame 3 and 4..24 waiting for the key


def test_parameter_sets_cached_and_prepended(h264_clip) -> None:
    """Only the first keyframe has SPS/PPS in band: later ones get the cached copies."""
    stripped = []
    for i, (pts, key, data) in enumerate(h264_clip):
        if key and i:
            nals = [n for n in split_annexb(data) if n[0] & 0x1F not in (H264_SPS, H264_PPS)]
            data = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
        stripped.append((pts, key, data))
    ingest, sink = ingest_of()  # no answer map: PT 98 is H.264 by default
    feed(ingest, h26x_rtp(stripped))
    keys = [u for u in sink.units if u.keyframe]
    assert len(keys) == 3
    for u in keys:
        types = [nal_type(Codec.h264, n[0]) for n in split_annexb(u.data)]
        assert types[:2] == [H264_SPS, H264_PPS]
        assert len(decode_units([u])) == 1  # decodable on its own


def test_h265_roundtrip(h265_clip) -> None:
    packets = h26x_rtp(h265_clip, Codec.h265, payload_type=PT_H265, mtu=600)
    kinds = {(p[12] >> 1) & 0x3F for p in packets}
    assert {48, 49} <= kinds  # AP (VPS+SPS+PPS) and FU
    ingest, sink = ingest_of({PT_H265: "H265/90000"})
    feed(ingest, packets)
    assert [u.keyframe for u in sink.units] == [k for _, k, _ in h265_clip]
    assert all(u.codec is Codec.h265 for u in sink.units)
    ref = decode_bytes([d for _, _, d in h265_clip], Codec.h265)
    assert len(ref) == 30 and decode_units(sink.units, Codec.h265) == ref
    assert ingest.resolution == (320, 240)


def test_rtp_timestamp_wrap_is_unwrapped(h264_clip) -> None:
    base = (1 << 32) - 5 * 3600
    shifted = [(base + pts, k, d) for pts, k, d in h264_clip[:20]]
    ingest, sink = ingest_of()
    feed(ingest, h26x_rtp(shifted))
    pts = [u.pts for u in sink.units]
    assert pts == [base + p for p, _, _ in h264_clip[:20]]  # past 2^32, still monotonic


def test_unknown_payload_types_are_sniffed(h264_clip) -> None:
    ingest, sink = ingest_of()
    raw = h26x_rtp(h264_clip[:30], payload_type=110)
    feed(ingest, raw)
    assert len(sink.units) == 30 and sink.units[0].keyframe
    assert ingest.stats.unknown_pt == len(raw)
    assert ingest.stats.as_dict(1.0)["unknown_pt"] == len(raw)
    ps_frames = [(pts, nvr_frame(d, pts, k)) for pts, k, d in h264_clip[:30]]
    ingest, sink = ingest_of()
    feed(ingest, packetize(ps_frames, SSRC, payload_type=97))
    assert len(sink.units) == 30 and ingest.stats.unknown_pt > 0


def test_answer_remaps_ps_payload_type(h264_clip) -> None:
    """A device that answers ``a=rtpmap:96 H264/90000`` gets H.264 parsing on 96."""
    ingest, sink = ingest_of({96: "H264"})
    feed(ingest, h26x_rtp(h264_clip[:10], payload_type=96))
    assert len(sink.units) == 10 and ingest.demuxer.stats.access_units == 0


def test_sniff_and_encoding_names() -> None:
    assert payload.sniff(b"\x00\x00\x01\xba" + bytes(10)) == payload.PS
    assert payload.sniff(bytes([0x47]) + bytes(187)) == payload.TS
    assert payload.sniff(bytes([0x7C, 0x85]) + bytes(10)) == payload.H264  # FU-A start
    assert payload.sniff(bytes([0x80, 0x00])) is None
    assert payload.encoding_name("hevc/90000") == "H265"
    assert payload.payload_type_map({96: "MP2P/90000"})[96] == "PS"
    ingest, sink = ingest_of()
    ts = [bytes([0x80, 111, 0, i]) + bytes(4) + SSRC.to_bytes(4, "big") + bytes([0x47]) + bytes(187)
          for i in range(3)]  # fmt: skip
    feed(ingest, ts)
    assert sink.items == [] and ingest.stats.unknown_pt == 3  # MPEG-TS: recognised, dropped


def test_sdp_answer_payload_types() -> None:
    body = (
        "v=0\r\no=34020000001320000001 0 0 IN IP4 127.0.0.1\r\ns=Play\r\n"
        "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 15060 RTP/AVP 98\r\n"
        "a=sendonly\r\na=rtpmap:98 H264/90000\r\ny=0200000001\r\n"
    )
    assert sdplib.payload_types(sdplib.parse(body)) == {98: "H264"}
    assert MediaAnswer("127.0.0.1", 1, None, MediaTransport.udp).payload_types == {}


class RawH264Nvr:
    """A PlayController whose device answers ``98 H264/90000`` and sends raw H.264 RTP."""

    def __init__(self, clip: list[tuple[int, bool, bytes]]) -> None:
        self.clip = clip
        self.tasks: list[asyncio.Task[None]] = []

    def add_session_listener(self, listener) -> None:
        pass

    async def play(self, request: PlayRequest, offer: MediaOffer) -> PlaySession:
        answer = MediaAnswer("127.0.0.1", 0, None, offer.transport, payload_types={98: "H264"})
        self.tasks.append(asyncio.create_task(self._send(offer.port, int(offer.ssrc))))
        return PlaySession(f"call-{len(self.tasks)}", request, offer, answer, datetime.now(UTC))

    async def _send(self, port: int, ssrc: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)
        )
        try:
            span = self.clip[-1][0] + 3600
            for round_ in range(100):
                shifted = [(pts + round_ * span, k, d) for pts, k, d in self.clip]
                for i, p in enumerate(h26x_rtp(shifted, ssrc=ssrc, seq=round_ * 1000)):
                    transport.sendto(p)
                    if i % 20 == 19:
                        await asyncio.sleep(0.005)
        finally:
            transport.close()

    async def stop(self, session: PlaySession) -> None:
        for task in self.tasks:
            task.cancel()

    async def control_playback(self, session, **_kw) -> None:
        pass


async def test_hub_pulls_raw_h264_over_udp(services: Services, h264_clip) -> None:
    clip = h264_clip[:50]
    with services.db.session() as s:
        s.add(Device(device_id=DEVICE, channels=[Channel(channel_id=CH)]))
    services.settings.media.rtp_port_min, services.settings.media.rtp_port_max = 32000, 32999
    nvr = RawH264Nvr(clip)
    services.sip = nvr  # type: ignore[assignment]
    hub = StreamHub(services)
    await hub.start()
    try:
        sub = hub.subscribe(ChannelRef(DEVICE, CH), "viewer")
        got: list[AccessUnit] = []
        async with asyncio.timeout(20):
            while len(got) < 50:
                item = await sub.get()
                if isinstance(item, Gap):
                    got.clear()  # a loopback drop: what follows starts at a keyframe again
                else:
                    got.append(item)
        assert got[0].keyframe and got[0].codec is Codec.h264
        first = [p for p, _, _ in clip].index(got[0].pts % (clip[-1][0] + 3600))
        order = [(first + i) % len(clip) for i in range(50)]
        assert [u.keyframe for u in got] == [clip[i][1] for i in order]
        assert decode_units(got) == decode_bytes([clip[i][2] for i in order])
        stats = hub.stats(ChannelRef(DEVICE, CH))
        assert stats is not None and stats["codec"] == "h264"
        assert stats["resolution"] == [640, 360] and stats["unknown_pt"] == 0
        sub.close()
    finally:
        await hub.stop()
        for task in nvr.tasks:
            task.cancel()


async def test_sip_nvr_raw_h264_end_to_end(services: Services) -> None:
    """Real SIP server + simulated NVR answering ``98 H264/90000`` + the hub, over UDP."""
    async with nvr_rig(services, E2E_DEVICE, channels=1, media_payload="h264") as rig:
        hub, channel = rig.hub, rig.cameras[0]
        sub = hub.subscribe(channel, "e2e")
        units = await collect_units(sub, 30)
        assert units[0].keyframe and all(u.codec is Codec.h264 for u in units)
        assert len(decode_units(units)) == len(units)
        stream = hub._live[channel]
        assert stream.session is not None
        assert stream.session.answer.payload_types == {98: "H264"}
        assert stream.ingest is not None and Codec.h264 in stream.ingest.depacketizers
        assert stream.ingest.demuxer.stats.access_units == 0  # nothing went the PS way
        stats = hub.stats(channel)
        assert stats["lost"] == 0 and stats["unknown_pt"] == 0 and stats["codec"] == "h264"
        sub.close()
