"""Audio from PS (G.711A 0x90, G.711U 0x91, AAC 0x0F): demuxed into audio units on the video's
clock, carried by the hub only to the subscriptions that take audio, recorded into the TS
segments and MP4 exports (AAC as is, G.711 transcoded to AAC: TS and MP4 have no G.711), and
sent to a WebRTC peer (aiortc) as PCMA/PCMU exactly as the camera sent it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs.g711 import PcmaEncoder, PcmuEncoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from sqlalchemy import select

from simdevice.audio_source import audio_clip
from sip.channel_ref import ChannelRef
from storage.models import RecordingSegment
from vms.live import ice
from vms.live.audio_track import PassthroughAudioTrack
from vms.live.service import create_live
from vms.media.audio import AdtsHeader, adts_frames
from vms.media.frames import AccessUnit, AudioCodec, AudioUnit, Gap, Subscription
from vms.media.ps import PsDemuxer
from vms.recording.audio import G711ToAac
from vms.recording.export import export_mp4
from vms.recording.recorder import Recorder
from vms.recording.writer import ChannelWriter
from vms.services import Services

from .audio_support import (
    audio_packets,
    decoded_audio,
    ffprobe_streams,
    g711_decode,
    ps_with_audio,
)
from .media_support import collect_units, encode_units, nvr_rig
from .recording_support import encode_clip

CH = "34020000001320000001"
DEVICE = "34020000001180000007"
WRAP = 1 << 33


@pytest.fixture(scope="module")
def units() -> list[tuple[int, bool, bytes]]:
    return encode_units(20, gop=10)


def demux(ps: bytes) -> list[Any]:
    d = PsDemuxer(CH, keep_audio=True)
    out: list[Any] = []
    for i in range(0, len(ps), 1400):
        out += d.feed(ps[i : i + 1400])
    return out + d.flush()


# --- PS demux ----------------------------------------------------------------------------


@pytest.mark.parametrize(("stream_type", "codec"), [(0x90, "pcma"), (0x91, "pcmu")])
def test_g711_units_on_the_video_clock(units: Any, stream_type: int, codec: str) -> None:
    base = WRAP - 3 * 3600  # the 33-bit PTS wraps in the middle of the clip
    frames = [(p & (WRAP - 1), k, d) for p, k, d in ((base + p, k, d) for p, k, d in units)]
    audio = [((base + i * 3600) & (WRAP - 1), bytes([i]) * 320) for i in range(len(units))]
    out = demux(ps_with_audio(frames, stream_type, audio))
    video = [x for x in out if isinstance(x, AccessUnit)]
    sound = [x for x in out if isinstance(x, AudioUnit)]
    assert len(sound) == len(units) and {s.codec for s in sound} == {AudioCodec(codec)}
    assert [s.pts for s in sound] == [base + i * 3600 for i in range(len(units))]  # unwrapped
    assert [s.data for s in sound] == [a for _, a in audio]
    assert video[0].pts == base and sound[0].samples == 320 and sound[0].duration == 3600


def test_aac_split_into_frames_and_missing_pts_follow_on(units: Any) -> None:
    clip = audio_clip("aac")
    two = clip.frames[3] + clip.frames[4]  # one PES with two ADTS frames
    audio = [(0, two)] + [(None, clip.frames[5])] + [(None, f) for f in clip.frames[6:20]]
    out = demux(ps_with_audio(units, 0x0F, audio))
    sound = [x for x in out if isinstance(x, AudioUnit)]
    assert [s.data for s in sound[:3]] == [clip.frames[3], clip.frames[4], clip.frames[5]]
    assert {(s.codec, s.sample_rate, s.channels) for s in sound} == {(AudioCodec.aac, 16000, 1)}
    assert [s.pts for s in sound[:3]] == [0, 5760, 11520]  # 1024 samples at 16 kHz apiece


def test_audio_without_psm_or_of_other_codecs(units: Any) -> None:
    clip = audio_clip("aac")
    out = demux(ps_with_audio(units, None, [(0, clip.frames[1])]))  # no PSM: ADTS is sniffed
    assert [x.codec for x in out if isinstance(x, AudioUnit)] == [AudioCodec.aac]
    d = PsDemuxer(CH, keep_audio=True)
    g711 = ps_with_audio(units, None, [(0, b"\xd5" * 320)])  # G.711 has no signature
    g729 = ps_with_audio(units, 0x99, [(0, b"\x01" * 20)])
    got = d.feed(g711) + d.feed(g729)
    assert not any(isinstance(x, AudioUnit) for x in got) and d.stats.audio_unsupported == 2


def test_adts_header() -> None:
    frame = audio_clip("aac").frames[2]
    header = AdtsHeader.parse(frame)
    assert header is not None and (header.sample_rate, header.channels) == (16000, 1)
    assert header.length == len(frame) and header.profile == 1  # AAC-LC
    assert [f for _, f in adts_frames(frame + frame + frame[:5])] == [frame, frame]
    assert AdtsHeader.parse(b"\xd5" * 10) is None


# --- subscriptions ---------------------------------------------------------------------------


def audio(pts: int) -> AudioUnit:
    return AudioUnit(CH, pts, b"\xd5" * 160, AudioCodec.pcma)


def video(pts: int, key: bool = False) -> AccessUnit:
    return AccessUnit(CH, pts, key, b"\x00\x00\x00\x01\x65")


def test_audio_reaches_only_subscriptions_that_ask() -> None:
    plain = Subscription(CH, "analyzer", maxlen=8)
    both = Subscription(CH, "recorder", maxlen=8, audio=True)
    only = Subscription(CH, "audio", maxlen=8, audio=True, video=False)
    items = [audio(0), video(0, True), audio(1800)] + [video(3600 * i) for i in range(1, 8)]
    items += [audio(3600 * i) for i in range(8, 20)]
    for item in items:
        for sub in (plain, both, only):
            sub.offer(item)
    assert all(isinstance(x, AccessUnit) for x in plain._queue)
    kinds = [type(x).__name__ for x in both._queue]
    assert kinds[0] == "AccessUnit" and kinds.count("AudioUnit") == 13  # after the keyframe
    assert both.dropped == 0  # 8 frames and 13 audio units fit in maxlen 8 video frames
    assert only.pending() <= 8 and isinstance(only._queue[0], Gap)  # oldest half dropped
    assert all(isinstance(x, AudioUnit) for x in list(only._queue)[1:])


def test_g711_transcoder_keeps_time_across_holes() -> None:
    enc = G711ToAac(audio(0))
    packets = []
    for k in range(25):  # 1 s of 40 ms units, then a 1 s hole (silence), then 1 s more
        pts = k * 3600 if k < 12 else k * 3600 + 90000
        packets += enc.packets(pts, AudioUnit(CH, pts, b"\xd5" * 320, AudioCodec.pcma))
    packets += enc.end_run()
    pts = [p for p, _ in packets]
    assert pts == sorted(pts) and all(b - a == 11520 for a, b in zip(pts, pts[1:], strict=False))
    assert pts[-1] >= 1.5 * 90000  # the hole is in the timeline (2 s in all, not 1)


# --- recording -----------------------------------------------------------------------------


def test_bad_audio_never_costs_the_video(tmp_path: Path) -> None:
    closed: list[Any] = []
    camera = ChannelRef(DEVICE, CH)
    writer = ChannelWriter(camera, tmp_path, 2.0, 5.0, closed.append, lambda gap: None, audio=True)
    clip = encode_clip(frames=100)
    for pts, key, data in clip.units:
        writer.handle(AccessUnit(CH, pts, key, data, wallclock=1e9 + pts / 90000))
        writer.handle(AudioUnit(CH, pts, b"\xff\xf1 not really ADTS", AudioCodec.aac, 16000))
    writer.close()
    assert sum(s.frames for s in closed) == 100 and writer.audio_errors > 0
    assert all(s.audio_codec == "" for s in closed)


def segment_rows(services: Services) -> list[RecordingSegment]:
    with services.db.session() as s:
        rows = s.scalars(select(RecordingSegment).order_by(RecordingSegment.start))
        return [r for r in rows if not r.is_gap]


async def record(services: Services, codec: str, seconds: float = 5.0) -> list[RecordingSegment]:
    """``seconds`` of the simulated NVR's channel recorded (the recorder's channel is started
    by hand: the registered device is still pending, so no schedule would pick it)."""
    services.settings.recording.segment_s = 2
    async with nvr_rig(services, DEVICE, channels=1, audio=codec) as rig:
        recorder = Recorder(services)
        try:
            rec = await recorder.start_channel(rig.cameras[0])
            assert rec is not None
            async with asyncio.timeout(30):
                while rec.segments < seconds / 2:
                    await asyncio.sleep(0.1)
            await recorder.flush(rig.cameras[0])
        finally:
            await recorder.stop()
    return segment_rows(services)


@pytest.mark.parametrize("codec", ["pcma", "pcmu", "aac"])
async def test_recordings_keep_the_audio(services: Services, tmp_path: Path, codec: str) -> None:
    rows = await record(services, codec)
    assert len(rows) >= 2 and all(r.audio_codec == "aac" for r in rows)
    rate = 16000 if codec == "aac" else 8000
    for row in rows:
        data = services.objects.get(row.object_key)
        streams = {s["codec_type"]: s for s in ffprobe_streams(data, tmp_path)}
        assert streams["video"]["codec_name"] == "h264"
        assert (
            streams["audio"]["codec_name"] == "aac" and int(streams["audio"]["sample_rate"]) == rate
        )
        samples, got_rate = decoded_audio(data, "mpegts")
        seconds = (row.end - row.start).total_seconds()
        assert got_rate == rate and abs(len(samples) / rate - seconds) < 0.5  # sound all along
        assert float(np.sqrt(np.mean(samples**2))) > 0.1  # the tone, not silence
        if codec == "aac":  # the camera's ADTS frames, byte for byte
            assert set(audio_packets(data)) <= set(audio_clip("aac").frames)
    start, end = rows[0].start, rows[-1].end
    clip = export_mp4(services.objects, rows, start, end, tmp_path / "clip.mp4")
    mp4 = clip.path.read_bytes()
    kinds = {s["codec_type"]: s["codec_name"] for s in ffprobe_streams(mp4, tmp_path, ".mp4")}
    assert kinds == {"video": "h264", "audio": "aac"}
    samples, _ = decoded_audio(mp4)
    assert abs(len(samples) / rate - (clip.end - clip.start).total_seconds()) < 1.0


async def test_no_audio_stream_for_a_camera_without_audio(
    services: Services, tmp_path: Path
) -> None:
    rows = await record(services, "", seconds=2)
    data = services.objects.get(rows[0].object_key)
    assert [s["codec_type"] for s in ffprobe_streams(data, tmp_path)] == ["video"]
    assert rows[0].audio_codec == ""


# --- live ------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def viewer(services: Services, channel: Any) -> Any:
    """An aiortc peer offering to receive video and audio, answered by the live service."""
    live = create_live(services)
    assert live is not None
    await live.start()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    with ice.host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    frames: list[Any] = []

    @pc.on("track")
    def _on_track(track: Any) -> None:
        async def read() -> None:
            with contextlib.suppress(Exception):
                while True:
                    frames.append((track.kind, await track.recv()))

        asyncio.ensure_future(read())

    try:
        session = await live.answer(channel, pc.localDescription.sdp, "tester")
        await pc.setRemoteDescription(RTCSessionDescription(session.answer_sdp, "answer"))
        yield live, session, frames
    finally:
        await pc.close()
        await live.stop()


@pytest.mark.parametrize(
    ("codec", "encoder", "mime", "warm"),
    [("pcma", PcmaEncoder, "PCMA", True), ("pcmu", PcmuEncoder, "PCMU", False)],
)
async def test_webrtc_gets_the_cameras_g711_as_is(
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    codec: str,
    encoder: Any,
    mime: str,
    warm: bool,
) -> None:
    """Warm: the stream already runs, its audio codec is known; cold: the answer waits for
    the first audio of the pull the viewer starts."""
    packed: list[bytes] = []
    original = encoder.pack

    def spy(self: Any, packet: Any) -> Any:
        packed.append(bytes(packet))
        return original(self, packet)

    def never(self: Any, frame: Any, force_keyframe: bool = False) -> Any:
        raise AssertionError("the live path must never encode audio")

    monkeypatch.setattr(encoder, "pack", spy)
    monkeypatch.setattr(encoder, "encode", never)
    async with nvr_rig(services, DEVICE, channels=1, audio=codec) as rig:
        channel = rig.cameras[0]
        running = rig.hub.subscribe(channel, "warm") if warm else None
        if running is not None:
            await collect_units(running, 5)
        async with viewer(services, channel) as (live, session, frames), asyncio.timeout(20):
            assert f"{mime}/8000" in session.answer_sdp
            other = "PCMU" if mime == "PCMA" else "PCMA"
            assert (f"{other}/8000" in session.answer_sdp) is not warm  # cold: both, first decides
            while sum(1 for kind, _ in frames if kind == "audio") < 25:
                await asyncio.sleep(0.05)
            assert session.stats()["audio"] == codec and session.audio.units > 0
        if running is not None:
            running.close()
    source = b"".join(audio_clip(codec).frames)
    assert packed and all(len(p) == 160 for p in packed)  # 20 ms packets
    joined = b"".join(packed)
    assert joined[:1600] in source + source  # the camera's bytes, in order, cut not re-encoded
    heard = np.concatenate([f.to_ndarray().reshape(-1) for kind, f in frames if kind == "audio"])
    sent = g711_decode(codec, joined)
    window = heard[:800]
    starts = range(0, len(sent) - len(window), 160)
    assert len(window) == 800 and any(np.array_equal(sent[i : i + 800], window) for i in starts)


async def test_aac_camera_gets_no_webrtc_audio(services: Services) -> None:
    async with nvr_rig(services, DEVICE, channels=1, audio="aac") as rig:
        channel = rig.cameras[0]
        running = rig.hub.subscribe(channel, "warm")
        await collect_units(running, 5)
        assert rig.hub.stats(channel)["audio_codec"] == "aac"
        async with viewer(services, channel) as (live, session, frames), asyncio.timeout(20):
            assert session.audio is None and session.stats()["audio"] is None
            while not any(kind == "video" for kind, _ in frames):
                await asyncio.sleep(0.05)
            assert "m=audio" in session.answer_sdp and "a=inactive" in session.answer_sdp
        running.close()


async def test_undecided_track_takes_the_first_g711_and_never_sends_aac() -> None:
    """Answered before the camera's audio was known (PCMA and PCMU both negotiated): the first
    G.711 unit makes its codec the sender's; AAC units are never sent."""
    caps = {c.mimeType: c for c in RTCRtpSender.getCapabilities("audio").codecs}
    negotiated = [
        RTCRtpCodecParameters("audio/PCMA", 8000, 1, payloadType=8),
        RTCRtpCodecParameters("audio/PCMU", 8000, 1, payloadType=0),
    ]
    assert "audio/PCMA" in caps and "audio/PCMU" in caps
    sub = Subscription(CH, "audio", 32, audio=True, video=False)
    track = PassthroughAudioTrack(sub, None)
    track.negotiated = negotiated
    sub.offer(AudioUnit(CH, 0, audio_clip("aac").frames[0], AudioCodec.aac, 16000))
    sub.offer(AudioUnit(CH, 3600, b"\x01" * 320, AudioCodec.pcmu))
    first = await asyncio.wait_for(track.recv(), 5)
    assert bytes(first) == b"\x01" * 160 and track.codec is AudioCodec.pcmu
    assert (negotiated[0].mimeType, negotiated[0].payloadType) == ("audio/PCMU", 0)
    assert track.mismatched == 1
    track.stop()
