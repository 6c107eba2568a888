"""The simulated NVR's INVITE side: answer the SDP, stream after ACK, stop on BYE.

Like a strict recorder it refuses (488) an offer whose ``s=``, ``u=``, ``t=``, ``y=`` or
``a=downloadspeed`` do not fit together, so every test that INVITEs it checks the offer.

TCP media follows the offer's ``a=setup``: platform ``passive`` → the device connects to
the offered port; platform ``active`` → the device listens and answers with its port.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from sip import mansrtsp
from sip import sdp as sdplib
from sip.message import SipParseError, SipUri
from sip.transaction import ServerTransaction
from sip.user_agent import DISCARD_PORT, DeviceUserAgent

from .audio_source import audio_clip
from .content import BYTES_PER_SECOND
from .streamer import RtpStreamer, Sink, StreamPlan, TcpSink, UdpSink
from .video_source import clip_for

if TYPE_CHECKING:
    from .nvr import DeviceState, NvrConfig

log = structlog.get_logger("simdevice.media")

PS_RTPMAP = {"96": "PS/90000"}
H264_RTPMAP = {"98": "H264/90000"}
H265_RTPMAP = {"100": "H265/90000"}  # GB/T 28181-2022 numbering
RAW_RTPMAPS = {"h264": H264_RTPMAP, "h265": H265_RTPMAP}


@dataclass
class DeviceStream:
    call_id: str
    channel_id: str
    offer: sdplib.Sdp
    plan: StreamPlan
    sink: Sink | None = None
    listener: asyncio.base_events.Server | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    streamer: RtpStreamer | None = None
    task: asyncio.Task[Any] | None = None
    acked: bool = False


HISTORY_MODES = ("Playback", "Download")


def offer_problem(offer: sdplib.Sdp, channel: str) -> str:
    """What a strict device finds wrong in an INVITE offer ("" when nothing)."""
    mode = offer.session_name
    if mode not in ("Play", *HISTORY_MODES):
        return f"unknown s={mode}"
    if offer.ssrc is not None:
        head = "1" if mode in HISTORY_MODES else "0"
        if len(offer.ssrc) != 10 or not offer.ssrc.isdigit() or offer.ssrc[0] != head:
            return f"s={mode} needs a 10-digit y= starting with {head}"
    if mode in HISTORY_MODES:
        if offer.uri != f"{channel}:0":
            return f"s={mode} needs u={channel}:0"
        if not 0 < offer.start < offer.end:
            return f"s={mode} needs t=<start> <end>"
    elif offer.uri is not None or (offer.start, offer.end) != (0, 0):
        return "s=Play takes no u= and t=0 0"
    if mode == "Download" and not offer.download_speed:
        return "s=Download needs a=downloadspeed"
    return ""


class DeviceMedia:
    """The NVR's streams, one per INVITE dialog."""

    def __init__(
        self,
        config: NvrConfig,
        agent: DeviceUserAgent,
        state: DeviceState,
        channels: Callable[[], list[str]],
        ended: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.config = config
        self.agent = agent
        self.state = state
        self.channels = channels  # the NVR's current channel ids (tests change them)
        self.ended = ended  # (call-id, channel): a playback or download ran to its end
        self.streams: dict[str, DeviceStream] = {}
        self.finished: list[str] = []  # call-ids whose playback ran to its end
        self.rtsp: deque[tuple[str, str]] = deque(maxlen=256)  # (call-id, MANSRTSP body) heard

    async def on_invite(self, stx: ServerTransaction) -> None:
        req = stx.request
        try:
            channel = SipUri.parse(req.uri).user
        except SipParseError:
            stx.reply(400)
            return
        if channel not in self.channels():
            stx.reply(404)
            return
        try:
            offer = sdplib.parse(req.body)
        except sdplib.SdpError:
            stx.reply(488)
            return
        self.state.invites.append(req)
        problem = offer_problem(offer, channel)
        if problem:  # a strict recorder: a wrong offer would replay the wrong thing
            log.warning("invite refused", channel=channel, problem=problem)
            stx.reply(488, problem)
            return
        stx.reply(100)
        head = "1" if offer.session_name in HISTORY_MODES else "0"
        ssrc_text = offer.ssrc or f"{head}{random.randint(0, 10**9 - 1):09d}"  # checked above
        ssrc = int(ssrc_text) & 0xFFFFFFFF
        mode = offer.session_name.lower()
        duration = None
        speed = 1.0
        if mode in ("playback", "download"):
            duration = float(offer.end - offer.start) if offer.end > offer.start else 10.0
            if mode == "download":
                speed = float(offer.download_speed or 1)
        raw = self.config.media_payload in RAW_RTPMAPS
        audio = audio_clip(self.config.audio) if self.config.audio and not raw else None
        plan = StreamPlan(ssrc, duration, speed, raw_h264=raw, audio=audio)
        stream = DeviceStream(req.call_id, channel, offer, plan)
        host = self.config.local_host
        answer = sdplib.sendonly_answer(
            offer,
            channel,
            host,
            DISCARD_PORT,
            RAW_RTPMAPS.get(self.config.media_payload, PS_RTPMAP),
        )
        answer.ssrc = ssrc_text
        try:
            if offer.tcp:
                if answer.setup == "passive":  # the platform connects to us
                    stream.listener = await asyncio.start_server(
                        lambda r, w: self._accepted(stream, w), host, 0
                    )
                    answer.port = stream.listener.sockets[0].getsockname()[1]
                # else we connect out; the port is not used (RFC 4145)
            else:
                stream.sink = await UdpSink.open(offer.ip, offer.port, host)
                answer.port = stream.sink.transport.get_extra_info("sockname")[1]  # type: ignore[attr-defined]
        except OSError as exc:
            log.warning("media setup failed", error=repr(exc))
            stx.reply(500)
            return
        if mode == "download":
            answer.file_size = int((duration or 0) * BYTES_PER_SECOND)
        self.streams[req.call_id] = stream
        self.agent.answer_invite(stx, answer, channel)
        log.info(
            "invite answered",
            channel=channel,
            mode=mode,
            tcp=offer.tcp,
            device_id=self.config.device_id,
        )

    def _accepted(self, stream: DeviceStream, writer: asyncio.StreamWriter) -> None:
        if stream.sink is None:
            stream.sink = TcpSink(writer)
            stream.connected.set()
        else:
            writer.close()

    def on_ack(self, call_id: str) -> None:
        stream = self.streams.get(call_id)
        if stream is None or stream.acked:
            return
        stream.acked = True
        stream.task = self.agent.tasks.spawn(self._stream(stream), f"nvr-rtp-{stream.channel_id}")

    async def _stream(self, stream: DeviceStream) -> None:
        offer = stream.offer
        try:
            if stream.sink is None and stream.listener is not None:
                await asyncio.wait_for(stream.connected.wait(), 10)
            elif stream.sink is None:
                stream.sink = await TcpSink.connect(offer.ip, offer.port)
        except (OSError, TimeoutError) as exc:
            log.warning("media connection failed", error=repr(exc))
            self._drop(stream.call_id)
            return
        assert stream.sink is not None
        clip = await asyncio.to_thread(clip_for, self.config.video, self.config.video_codec())
        stream.streamer = RtpStreamer(clip, stream.sink, stream.plan)
        ended = False

        def done() -> None:
            nonlocal ended
            ended = True

        await stream.streamer.run(done)
        if ended and stream.plan.duration_s is not None and stream.call_id in self.streams:
            self.finished.append(stream.call_id)
            await self.ended(stream.call_id, stream.channel_id)

    def _drop(self, call_id: str) -> DeviceStream | None:
        stream = self.streams.pop(call_id, None)
        if stream is None:
            return None
        if stream.task is not None and stream.task is not asyncio.current_task():
            stream.task.cancel()
        if stream.sink is not None:
            stream.sink.close()
        if stream.listener is not None:
            stream.listener.close()
        return stream

    def on_bye(self, call_id: str) -> bool:
        return self._drop(call_id) is not None

    def on_cancel(self, call_id: str) -> None:
        stream = self.streams.get(call_id)
        if stream is not None and not stream.acked:
            self._drop(call_id)

    def on_info(self, call_id: str, body: str) -> None:
        """MANSRTSP: PAUSE, PLAY (resume), PLAY with Scale (speed), PLAY with Range (seek)."""
        self.rtsp.append((call_id, body))
        stream = self.streams.get(call_id)
        if stream is None or stream.streamer is None:
            return
        try:
            command = mansrtsp.parse(body)
        except mansrtsp.MansrtspError as exc:
            log.warning("bad MANSRTSP ignored", error=str(exc))
            return
        streamer = stream.streamer
        if command.method == "PAUSE":
            streamer.pause()
        elif command.method == "PLAY":
            if command.scale is not None:
                streamer.set_speed(abs(command.scale))
            if command.range_start is not None:
                streamer.seek(command.range_start)
            streamer.resume()
        elif command.method == "TEARDOWN":
            self._drop(call_id)

    async def stop_all(self) -> None:
        for call_id in list(self.streams):
            self._drop(call_id)
