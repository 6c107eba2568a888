"""INVITE/ACK/BYE against the simulated NVR: RTP really arrives (UDP, TCP passive and active),
is PS that PyAV can demux, and playback ends with MediaStatus 121."""

from __future__ import annotations

import asyncio
import io
import socket
import struct
import subprocess
from datetime import UTC, datetime, timedelta

import av
import pytest

from rtp.packetizer import RTP_MTU, packetize
from rtp.ps_mux import mux_frame
from simdevice.video_source import test_pattern as make_pattern
from sip.media_api import MediaOffer, MediaTransport, PlayError, PlayMode, PlayRequest
from sip.store import MemoryDeviceStore

from .sip_support import nvr_config, nvr_id, running_nvr, running_server, wait_until


def parse_rtp(pkt: bytes) -> dict:
    b0, b1, seq, ts, ssrc = struct.unpack(">BBHII", pkt[:12])
    return {
        "v": b0 >> 6,
        "m": b1 >> 7,
        "pt": b1 & 0x7F,
        "seq": seq,
        "ts": ts,
        "ssrc": ssrc,
        "payload": pkt[12:],
    }


def demux_ps(data: bytes) -> list:
    with av.open(io.BytesIO(data), format="mpeg") as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        return [p for p in c.demux(stream) if p.size]


def check_stream(packets: list[bytes], ssrc: int) -> None:
    rtp = [parse_rtp(p) for p in packets]
    assert all(r["v"] == 2 and r["pt"] == 96 and r["ssrc"] == ssrc for r in rtp)
    assert all(len(r["payload"]) <= RTP_MTU for r in rtp)
    assert [r["seq"] for r in rtp] == list(range(rtp[0]["seq"], rtp[0]["seq"] + len(rtp)))
    frames = [r for r in rtp if r["m"]]
    assert len(frames) >= 3
    stamps = [r["ts"] for r in frames]
    assert all(b - a == 3600 for a, b in zip(stamps, stamps[1:], strict=False))  # 25 fps, 90 kHz
    ps = b"".join(r["payload"] for r in rtp)
    assert ps.startswith(b"\x00\x00\x01\xba\x00\x00\x01\xbb") or ps[:4] == b"\x00\x00\x01\xba"
    assert len(demux_ps(ps)) >= len(frames) - 1


def test_ps_and_rtp_packetising_are_demuxable(tmp_path) -> None:
    clip = make_pattern()
    ps = b"".join(mux_frame(f.data, i * 3600, f.keyframe) for i, f in enumerate(clip.frames))
    pkts = demux_ps(ps)
    assert len(pkts) == len(clip.frames)
    assert [p.pts for p in pkts[:3]] == [0, 3600, 7200]
    ps_file = tmp_path / "out.ps"
    ps_file.write_bytes(ps)
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_name,width,nb_read_packets",
            "-of",
            "csv=p=0",
            str(ps_file),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert probe.stdout.strip() == f"h264,640,{len(clip.frames)}"
    big = mux_frame(b"\x00\x00\x00\x01\x65" + b"\x11" * 150_000, 90000, True)  # > 1 PES
    assert big.count(b"\x00\x00\x01\xe0") == 3
    out = packetize([(90000, big)], 0x0BEBC201, 65534)
    assert [parse_rtp(p)["m"] for p in out] == [0] * (len(out) - 1) + [1]
    assert parse_rtp(out[2])["seq"] == 0  # wraps


async def _udp_receiver() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock, sock.getsockname()[1]


async def _recv_udp(sock: socket.socket, count: int, timeout: float = 5.0) -> list[bytes]:
    loop = asyncio.get_running_loop()
    out: list[bytes] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            out.append(await loop.sock_recv(sock, 2048))
    return out


async def test_live_udp_invite_streams_rtp_and_bye_stops_it() -> None:
    async with running_server() as server:
        async with running_nvr(nvr_config(server)) as nvr:
            sock, port = await _udp_receiver()
            try:
                req = PlayRequest(nvr_id(1), nvr.channels[0])
                session = await server.play(req, MediaOffer("127.0.0.1", port, "0200000001"))
                assert session.answer.ssrc == "0200000001" and session.answer.port > 0
                packets = await _recv_udp(sock, 40)
                check_stream(packets, 0x0BEBC201)
                await server.stop(session)
                assert not nvr.media.streams  # BYE tore the stream down
                await asyncio.sleep(0.15)
                while True:  # drain what was in flight, then silence
                    try:
                        sock.recv(2048)
                    except BlockingIOError:
                        break
                await asyncio.sleep(0.2)
                with pytest.raises(BlockingIOError):
                    sock.recv(2048)
            finally:
                sock.close()


async def test_playback_ends_with_media_status_121_and_listener() -> None:
    ended: list[tuple[str, str]] = []
    async with running_server() as server:
        server.add_session_listener(lambda s, reason: ended.append((s.call_id, reason)))
        async with running_nvr(nvr_config(server)) as nvr:
            sock, port = await _udp_receiver()
            try:
                end = datetime.now(UTC) - timedelta(hours=1)
                req = PlayRequest(
                    nvr_id(1), nvr.channels[1], PlayMode.playback, end - timedelta(seconds=1), end
                )
                session = await server.play(req, MediaOffer("127.0.0.1", port, "1200000002"))
                packets = await _recv_udp(sock, 10)
                assert parse_rtp(packets[0])["ssrc"] == 1200000002
                await wait_until(lambda: ended, 5, "MediaStatus 121")
                assert ended == [(session.call_id, "media-status-121")]
                assert session.call_id in nvr.media.finished
                assert session.call_id not in server.sessions.dialogs
            finally:
                sock.close()


async def test_tcp_passive_device_connects_with_rfc4571_framing() -> None:
    async with running_server() as server:
        async with running_nvr(nvr_config(server)) as nvr:
            got: asyncio.Queue[bytes] = asyncio.Queue()

            async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                try:
                    while True:
                        (n,) = struct.unpack(">H", await reader.readexactly(2))
                        await got.put(await reader.readexactly(n))
                except (asyncio.IncompleteReadError, ConnectionError):
                    pass
                finally:
                    writer.close()

            listener = await asyncio.start_server(on_conn, "127.0.0.1", 0)
            port = listener.sockets[0].getsockname()[1]
            try:
                offer = MediaOffer("127.0.0.1", port, "0200000003", MediaTransport.tcp_passive)
                session = await server.play(PlayRequest(nvr_id(1), nvr.channels[2]), offer)
                assert session.extra["device_setup"] == "active"
                packets = [await asyncio.wait_for(got.get(), 5) for _ in range(30)]
                check_stream(packets, 200000003)
                await server.stop(session)
            finally:
                listener.close()
                await listener.wait_closed()


async def test_tcp_active_platform_connects_to_the_device() -> None:
    async with running_server() as server:
        async with running_nvr(nvr_config(server)) as nvr:
            offer = MediaOffer("127.0.0.1", 9, "0200000004", MediaTransport.tcp_active)
            session = await server.play(PlayRequest(nvr_id(1), nvr.channels[3]), offer)
            assert session.extra["device_setup"] == "passive"
            reader, writer = await asyncio.open_connection("127.0.0.1", session.answer.port)
            try:
                packets = []
                async with asyncio.timeout(5):
                    for _ in range(30):
                        (n,) = struct.unpack(">H", await reader.readexactly(2))
                        packets.append(await reader.readexactly(n))
                check_stream(packets, 200000004)
            finally:
                writer.close()
                await server.stop(session)


async def test_refusals_device_bye_and_offline_end_sessions() -> None:
    store = MemoryDeviceStore()
    ended: list[str] = []
    async with running_server(store) as server:
        server.add_session_listener(lambda s, reason: ended.append(reason))
        with pytest.raises(PlayError) as err:
            await server.play(PlayRequest(nvr_id(1), "x"), MediaOffer("127.0.0.1", 9, "0200000009"))
        assert err.value.status == 404  # device not registered
        async with running_nvr(nvr_config(server)) as nvr:
            unknown = PlayRequest(nvr_id(1), "34020000001310999999")
            with pytest.raises(PlayError) as err:
                await server.play(unknown, MediaOffer("127.0.0.1", 9, "0200000005"))
            assert err.value.status == 404
            sock, port = await _udp_receiver()
            try:
                s1 = await server.play(
                    PlayRequest(nvr_id(1), nvr.channels[0]),
                    MediaOffer("127.0.0.1", port, "0200000006"),
                )
                # the device hangs up itself
                d = server.sessions.dialogs[s1.call_id]
                from sip.message import SipRequest

                bye = SipRequest(method="BYE", uri=f"sip:{server.config.server_id}@127.0.0.1")
                bye.add("From", d.remote_to)
                bye.add("To", d.local_from)
                bye.add("Call-ID", s1.call_id)
                bye.add("CSeq", "5 BYE")
                resp = await nvr.endpoint.request(bye, await nvr.peer())
                assert resp.status == 200
                await wait_until(lambda: ended == ["bye"], what="device BYE")
                await server.play(
                    PlayRequest(nvr_id(1), nvr.channels[1]),
                    MediaOffer("127.0.0.1", port, "0200000007"),
                )
            finally:
                sock.close()
        await wait_until(lambda: len(ended) == 2, what="offline ends session")
        assert ended[1] == "device-unregister"


async def test_invite_timeout_cancels_and_control_playback_sends_info() -> None:
    async with running_server(invite_timeout_s=0.4) as server:
        async with running_nvr(nvr_config(server)) as nvr:

            async def never(stx):  # the device goes mute on INVITE
                return None

            nvr.media.on_invite = never  # type: ignore[method-assign]
            with pytest.raises(PlayError) as err:
                await server.play(
                    PlayRequest(nvr_id(1), nvr.channels[0]),
                    MediaOffer("127.0.0.1", 9, "0200000008"),
                )
            assert err.value.status == 408
        async with running_nvr(nvr_config(server, n=2)) as nvr2:
            sock, port = await _udp_receiver()
            try:
                end = datetime.now(UTC) - timedelta(hours=1)
                req = PlayRequest(
                    nvr_id(2), nvr2.channels[0], PlayMode.playback, end - timedelta(seconds=30), end
                )
                session = await server.play(req, MediaOffer("127.0.0.1", port, "1200000010"))
                await _recv_udp(sock, 5)
                await server.control_playback(session, pause=True)
                stream = nvr2.media.streams[session.call_id]
                assert not stream.streamer.paused.is_set()
                await server.control_playback(session, pause=False, scale=2.0)
                assert stream.streamer.paused.is_set() and stream.plan.speed == 2.0
                await server.stop(session)
            finally:
                sock.close()


def _write_h264_mp4(path, frames: int = 30) -> None:
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(frames):
            img = np.full((240, 320, 3), (i * 8) % 255, np.uint8)
            for pkt in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)


def test_video_files_become_annexb_clips(tmp_path) -> None:
    from pathlib import Path

    from simdevice.video_source import load_clip

    mp4 = tmp_path / "clip.mp4"
    _write_h264_mp4(mp4)
    clip = load_clip(mp4)
    assert clip.frames[0].keyframe and clip.fps == 25
    assert (
        clip.frames[0].data.startswith(b"\x00\x00\x00\x01") or clip.frames[0].data[:3] == b"\0\0\1"
    )
    assert (
        b"\x00\x00\x01\x67" in clip.frames[0].data or b"\x00\x00\x00\x01\x67" in clip.frames[0].data
    )
    ps = b"".join(mux_frame(f.data, i * 3600, f.keyframe) for i, f in enumerate(clip.frames))
    assert len(demux_ps(ps)) == len(clip.frames)
    vtest = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
    if vtest.exists():  # not H.264: re-encoded once with libx264
        other = load_clip(vtest, max_seconds=1.0)
        assert other.frames[0].keyframe and len(other.frames) >= 5


async def test_nvr_streams_a_given_file(tmp_path) -> None:
    mp4 = tmp_path / "clip.mp4"
    _write_h264_mp4(mp4, 50)
    async with running_server() as server:
        async with running_nvr(nvr_config(server, video=mp4)) as nvr:
            sock, port = await _udp_receiver()
            try:
                session = await server.play(
                    PlayRequest(nvr_id(1), nvr.channels[0]),
                    MediaOffer("127.0.0.1", port, "0200000011"),
                )
                packets = await _recv_udp(sock, 12)
                ps = b"".join(parse_rtp(p)["payload"] for p in packets)
                with av.open(io.BytesIO(ps), format="mpeg") as c:
                    frame = next(c.decode(video=0))
                    assert (frame.width, frame.height) == (320, 240)
                await server.stop(session)
            finally:
                sock.close()


def test_signalling_and_media_under_uvloop() -> None:
    """The production loop is uvloop: its transports are not asyncio's classes."""
    import uvloop

    async def scenario() -> None:
        async with running_server() as server:
            for transport in ("udp", "tcp"):
                n = 1 if transport == "udp" else 2
                async with running_nvr(nvr_config(server, n=n, transport=transport)) as nvr:
                    assert (await server.catalog(nvr_id(n))).complete
                    sock, port = await _udp_receiver()
                    try:
                        session = await server.play(
                            PlayRequest(nvr_id(n), nvr.channels[0]),
                            MediaOffer("127.0.0.1", port, "0200000012"),
                        )
                        check_stream(await _recv_udp(sock, 30), 200000012)
                        await server.stop(session)
                    finally:
                        sock.close()

    uvloop.run(scenario())


async def test_late_200_after_cancel_gets_ack_and_bye() -> None:
    async with running_server(invite_timeout_s=0.3) as server:
        async with running_nvr(nvr_config(server)) as nvr:
            original = nvr.media.on_invite
            answered: list[str] = []

            async def slow(stx):  # answers after the platform gave up
                await asyncio.sleep(0.6)
                await original(stx)
                answered.append(stx.request.call_id)

            nvr.media.on_invite = slow  # type: ignore[method-assign]
            sock, port = await _udp_receiver()
            try:
                with pytest.raises(PlayError):
                    await server.play(
                        PlayRequest(nvr_id(1), nvr.channels[0]),
                        MediaOffer("127.0.0.1", port, "0200000013"),
                    )
                await wait_until(lambda: answered, 3, "late answer")
                # the platform ACKs the stray 200 and hangs up: no stream is left running
                await wait_until(lambda: not nvr.media.streams, 3, "BYE for the late 200")
                assert not server.sessions.dialogs
            finally:
                sock.close()
