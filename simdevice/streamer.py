"""The simulated NVR's media: a clip as MPEG-PS over RTP (PT 96, 90 kHz), real-time paced,
with the camera's audio (G.711A/U or AAC) in its own packs when it has some.

Optionally raw H.264 (RFC 6184, PT 98) or H.265 (RFC 7798, PT 100 as GB/T 28181-2022
numbers it) instead, as some IPCs send when they answer ``a=rtpmap:98 H264/90000``.

Sinks: UDP datagrams, or RFC 4571 framing (2-byte length) over a TCP connection the
device opened (platform ``a=setup:passive``) or accepted (platform ``a=setup:active``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from rtp.h26x import h264_packets, h265_payloads, split_annexb
from rtp.packetizer import PT_PS, packetize, packetize_payloads, rfc4571
from rtp.ps_mux import STREAM_TYPE_H264, STREAM_TYPE_H265, mux_audio, mux_frame

from .audio_source import AudioClip
from .video_source import Clip

PT_H265_2022 = 100  # GB/T 28181-2022 C.2.5


class Sink:
    async def send(self, packets: list[bytes]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class UdpSink(Sink):
    def __init__(self, transport: asyncio.DatagramTransport, addr: tuple[str, int]) -> None:
        self.transport, self.addr = transport, addr

    @classmethod
    async def open(cls, host: str, port: int, local_host: str = "127.0.0.1") -> UdpSink:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(local_host, 0)
        )
        return cls(transport, (host, port))

    async def send(self, packets: list[bytes]) -> None:
        for p in packets:
            self.transport.sendto(p, self.addr)

    def close(self) -> None:
        self.transport.close()


class TcpSink(Sink):
    """RFC 4571: each RTP packet preceded by its 16-bit length."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 5.0) -> TcpSink:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(writer)

    async def send(self, packets: list[bytes]) -> None:
        self.writer.write(b"".join(rfc4571(p) for p in packets))
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


@dataclass
class StreamPlan:
    ssrc: int
    duration_s: float | None = None  # None → loop forever (live)
    speed: float = 1.0  # download speed / playback scale
    raw_h264: bool = False  # raw RTP (RFC 6184 H.264 / RFC 7798 H.265) instead of MPEG-PS
    audio: AudioClip | None = None  # in the PS next to the video (not with raw RTP)


class RtpStreamer:
    """Sends ``clip`` frames to ``sink`` in real time until stopped or the plan's end."""

    def __init__(self, clip: Clip, sink: Sink, plan: StreamPlan) -> None:
        self.clip, self.sink, self.plan = clip, sink, plan
        self.packets_sent = 0
        self.frames_sent = 0
        self.paused = asyncio.Event()
        self.paused.set()  # set → running
        self.position = 0  # the next frame's index in the recording: media time × fps
        self._seek_to: int | None = None
        self._repace = False  # speed, seek or resume: the pacing clock starts again

    # --- MANSRTSP (the NVR's INFO handling calls these) ----------------------------------

    def pause(self) -> None:
        self.paused.clear()

    def resume(self) -> None:
        if not self.paused.is_set():
            self.paused.set()
            self._repace = True

    def set_speed(self, speed: float) -> None:
        self.plan.speed = max(0.01, speed)
        self._repace = True

    def seek(self, seconds: float) -> None:
        """Jump to the keyframe at or before ``seconds`` from the start, as a recorder does."""
        frames = self.clip.frames
        n = max(0, int(seconds * self.clip.fps))
        for k in range(n, max(-1, n - len(frames)), -1):
            if frames[k % len(frames)].keyframe:
                n = k
                break
        self._seek_to = n

    async def run(self, on_end: Callable[[], None] | None = None) -> None:
        clip, plan = self.clip, self.plan
        ticks = clip.frame_ticks
        total = None if plan.duration_s is None else max(1, int(plan.duration_s * clip.fps))
        seq = 0
        start, base = time.monotonic(), 0  # pacing: frame ``base`` was due at ``start``
        try:
            while total is None or self.position < total:
                await self.paused.wait()
                if self._seek_to is not None:
                    self.position, self._seek_to = self._seek_to, None
                    self._repace = True
                if self._repace:
                    start, base, self._repace = time.monotonic(), self.position, False
                n = self.position
                if total is not None and n >= total:
                    break
                ts = n * ticks  # the PTS follows the position in the recording, as NVRs do
                frame = clip.frames[n % len(clip.frames)]
                if plan.raw_h264:
                    packets = self._raw(frame.data, ts, seq)
                else:
                    packets = self._ps(frame.data, frame.keyframe, ts, ts + ticks, seq)
                await self.sink.send(packets)
                seq += len(packets)
                self.packets_sent += len(packets)
                self.frames_sent += 1
                self.position = n + 1
                due = start + (self.position - base) / (clip.fps * max(plan.speed, 0.01))
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -1.0:  # fell far behind (starved): rebase the clock
                    start, base = time.monotonic(), self.position
        except (ConnectionError, OSError):
            return
        finally:
            self.sink.close()
        if on_end is not None:
            on_end()

    def _raw(self, data: bytes, ts: int, seq: int) -> list[bytes]:
        if self.clip.codec == "h265":
            payloads = h265_payloads(list(split_annexb(data)))
            return packetize_payloads([(ts, payloads)], self.plan.ssrc, seq, PT_H265_2022)
        return h264_packets(data, ts, self.plan.ssrc, seq)

    def _ps(self, data: bytes, keyframe: bool, ts: int, end: int, seq: int) -> list[bytes]:
        """The frame's PS (PSM on keyframes), then the audio frames of its time, each in its
        own pack and RTP packet(s) timestamped with the audio's PTS."""
        audio = self.plan.audio
        video_type = STREAM_TYPE_H265 if self.clip.codec == "h265" else STREAM_TYPE_H264
        audio_type = audio.stream_type if audio is not None else None
        frames = [(ts, mux_frame(data, ts, keyframe, video_type, audio_type))]
        if audio is not None:
            frames += [(pts, mux_audio(a, pts)) for pts, a in audio.frames_between(ts, end)]
        return packetize(frames, self.plan.ssrc, seq, PT_PS)
