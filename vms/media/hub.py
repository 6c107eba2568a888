"""The stream hub: one pulled stream per camera, fanned out to many subscriptions.

A camera is a :class:`ChannelRef` (its device and channel IDs), never the channel ID
alone: the INVITE goes to that device, so another device listing the same channel code
can never be pulled in its place.  Demand drives the pull: the first subscription of a
camera allocates a port and SSRC, asks the SIP server to INVITE the device
(``services.sip.play``) and receives; the last one leaving sends BYE after
``media.idle_close_s``.  A lost stream (no packets for ``media.stream_timeout_s``, device
BYE, TCP cut) gives every consumer a :class:`Gap`, publishes ``stream.lost`` and is
re-INVITEd with exponential backoff while anyone still subscribes; when its device
(re)connects (the SIP server's connect listeners) the wait is cut short and the
re-INVITE goes at once to the device's new contact.  The receive path never waits on a
consumer: :meth:`Subscription.offer` drops a slow one to the next keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from datetime import datetime
from typing import Any

from sqlalchemy import select

from sip.channel_ref import ChannelRef
from sip.media_api import (
    MediaOffer,
    MediaTransport,
    PlayError,
    PlayMode,
    PlayRequest,
    PlaySession,
)
from storage.models import Channel, Device
from vms.logging import get_logger
from vms.services import Services

from .frames import AccessUnit, Gap, Subscription
from .ports import PoolExhausted, PortPool, SsrcAllocator, ssrc_value
from .ps import PsDemuxer
from .receiver import RtpIngest, TcpActiveReceiver, TcpPassiveReceiver, UdpReceiver
from .source import SourceGate
from .stream import Stream, StreamKey

log = get_logger("vms.media.hub")

RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
BIND_ATTEMPTS = 20  # ports tried when some in the range are taken by other processes
WATCH_INTERVAL_S = 0.1
DRAIN_QUIET_S = 0.4  # after a playback's end: packets stopped this long → all arrived
DRAIN_MAX_S = 3.0
# GB28181-2016 A.2.3 spells it IFameCmd, 2022 IFrameCmd: both are sent, each side reads its own
IFRAME_COMMAND = "<IFameCmd>Send</IFameCmd>\r\n<IFrameCmd>Send</IFrameCmd>\r\n"


class StreamHub:
    name = "media"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings.media
        self.ports = PortPool(self.settings.rtp_port_min, self.settings.rtp_port_max)
        self.ssrcs = SsrcAllocator(services.settings.sip.domain)
        self._live: dict[ChannelRef, Stream] = {}
        self._playback: dict[StreamKey, Stream] = {}
        self._held: dict[ChannelRef, Subscription] = {}  # pulls started through the API
        self._serial = itertools.count(1)
        self._sip_listening: Any = None
        self._background: set[asyncio.Task[None]] = set()  # BYEs of closed streams, IFameCmds
        self._ticker_task: asyncio.Task[None] | None = None
        self.retry_min_s = RETRY_MIN_S  # re-INVITE backoff, doubled per failed attempt
        self.retry_max_s = RETRY_MAX_S

    # --- component -------------------------------------------------------------

    async def start(self) -> None:
        self.services.media = self
        self.services.frames = self  # the analyzers' frames too, in the node that pulls them
        self._listen_sip()
        self._ticker_task = asyncio.get_running_loop().create_task(
            self._ticker(), name="media-ticker"
        )

    async def stop(self) -> None:
        for stream in [*self._live.values(), *self._playback.values()]:
            self._close_stream(stream)
        tasks = list(self._background)
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        self._held.clear()
        if self._ticker_task is not None:
            self._ticker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker_task
            self._ticker_task = None

    # --- public API --------------------------------------------------------

    def subscribe(
        self, channel: ChannelRef, name: str, maxlen: int = 256, *, audio: bool = False
    ) -> Subscription:
        """Register demand for a camera's live stream; starts the pull if needed.

        ``audio=True``: the camera's audio units come too (``media.keep_audio``)."""
        _check_ref(channel)
        stream = self._live.get(channel)
        if stream is None:
            stream = self._live[channel] = Stream(StreamKey(channel))
            self._start_pull(stream)
        return self._attach(stream, name, maxlen, audio)

    def open_playback(
        self,
        channel: ChannelRef,
        start: datetime,
        end: datetime,
        name: str = "playback",
        maxlen: int = 1024,
        *,
        mode: PlayMode | str = PlayMode.playback,
        download_speed: int = 1,
        audio: bool = False,
    ) -> tuple[StreamKey, Subscription]:
        """Replay a range from the device's own storage (GB28181 Playback INVITE), or
        fetch it at ``download_speed`` × real time (``mode="download"``, s=Download).

        The subscription ends (iteration stops) when the device finishes the range;
        :meth:`playback_stream` tells how it ended.
        """
        _check_ref(channel)
        mode = PlayMode.parse(mode)
        if mode is PlayMode.live:
            raise ValueError("open_playback replays history: use subscribe() for live")
        if end <= start:
            raise ValueError("playback end must be after start")
        key = StreamKey(channel, mode, start, end, next(self._serial))
        stream = self._playback[key] = Stream(key, download_speed=max(1, download_speed))
        self._start_pull(stream)
        return key, self._attach(stream, name, maxlen, audio)

    def playback_stream(self, key: StreamKey) -> Stream | None:
        """An open playback or download stream (state, session, end reason); None once closed."""
        return self._playback.get(key)

    async def control_playback(
        self,
        key: StreamKey,
        *,
        scale: float | None = None,
        seek_s: float | None = None,
        pause: bool | None = None,
    ) -> None:
        """MANSRTSP to the device of a playback: pause, resume, Scale, seek (npt seconds from
        the range's start); see :meth:`Stream.control`.  LookupError: not running (yet)."""
        stream = self._playback.get(key)
        if stream is None:
            raise LookupError("the playback is not running")
        await stream.control(self.services.sip, scale=scale, seek_s=seek_s, pause=pause)

    def publish(self, channel: ChannelRef, item: AccessUnit | Gap) -> None:
        """Fan a unit out to the camera's live subscriptions (nodes without SIP, and tests)."""
        stream = self._live.get(channel)
        if stream is not None:
            stream.deliver(item)

    def channels(self) -> list[ChannelRef]:
        return sorted(self._live)

    def stats(self, channel: ChannelRef) -> dict[str, Any] | None:
        stream = self._live.get(channel)
        return None if stream is None else stream.describe(self.settings.transport)

    def playback_stats(self, key: StreamKey) -> dict[str, Any] | None:
        stream = self._playback.get(key)
        return None if stream is None else stream.describe(self.settings.transport)

    def request_keyframe(self, channel: ChannelRef) -> bool:
        """Ask the device for an IDR now (DeviceControl ``IFameCmd``), e.g. for a new viewer.

        Best effort and non-blocking; False when there is no live pull to ask for.
        """
        stream = self._live.get(channel)
        sip = self.services.sip
        if stream is None or sip is None:
            return False
        task = asyncio.get_running_loop().create_task(
            self._iframe(sip.device_control, channel.device_id, channel.channel_id),
            name="media-iframe",
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return True

    @staticmethod
    async def _iframe(control: Any, device_id: str, channel_id: str) -> None:
        try:
            await control(device_id, channel_id, IFRAME_COMMAND)
        except Exception as exc:  # noqa: BLE001 - a refused request only costs a GOP
            log.info("keyframe request failed", channel=channel_id, error=repr(exc))

    def hold(self, channel: ChannelRef) -> bool:
        """Keep a live pull running without a consumer (API "start"); False if already held."""
        if channel in self._held:
            return False
        self._held[channel] = self.subscribe(channel, "api-hold", maxlen=1)
        return True

    def release(self, channel: ChannelRef) -> bool:
        sub = self._held.pop(channel, None)
        if sub is None:
            return False
        sub.close()
        return True

    # --- subscriptions ---------------------------------------------------------

    def _attach(self, stream: Stream, name: str, maxlen: int, audio: bool = False) -> Subscription:
        if stream.idle_timer is not None:
            stream.idle_timer.cancel()
            stream.idle_timer = None
        sub = Subscription(
            stream.key.channel_id, name, maxlen, on_close=self._detach(stream), audio=audio
        )
        stream.subs.append(sub)
        return sub

    def _detach(self, stream: Stream) -> Any:
        def on_close(sub: Subscription) -> None:
            with contextlib.suppress(ValueError):
                stream.subs.remove(sub)
            if stream.subs or stream.closing:
                return
            if stream.key.mode is PlayMode.live and self.settings.idle_close_s > 0:
                loop = asyncio.get_running_loop()
                stream.idle_timer = loop.call_later(
                    self.settings.idle_close_s, self._close_stream, stream
                )
            else:
                self._close_stream(stream)

        return on_close

    def _close_stream(self, stream: Stream) -> None:
        if stream.closing:
            return
        stream.closing = True
        stream.state = "closed"
        if stream.idle_timer is not None:
            stream.idle_timer.cancel()
        if stream.key.mode is PlayMode.live:
            if self._live.get(stream.key.channel) is stream:
                del self._live[stream.key.channel]
        else:
            self._playback.pop(stream.key, None)
        for sub in list(stream.subs):
            sub.close()
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
            self._background.add(stream.task)
            stream.task.add_done_callback(self._background.discard)

    # --- pulling -------------------------------------------------------------

    def _listen_sip(self) -> Any:
        sip = self.services.sip
        if sip is not None and self._sip_listening is not sip:
            sip.add_session_listener(self._session_ended)
            add_connect = getattr(sip, "add_connect_listener", None)
            if callable(add_connect):  # controllers without one keep the plain backoff
                add_connect(self._device_connected)
            self._sip_listening = sip
        return sip

    def _start_pull(self, stream: Stream) -> None:
        if self._listen_sip() is None:
            stream.state = "no-sip"  # units arrive through publish() only
            return
        stream.task = asyncio.get_running_loop().create_task(
            self._run(stream), name=f"media-pull-{stream.key.channel}"
        )

    def _session_ended(self, session: PlaySession, reason: str) -> None:
        for stream in [*self._live.values(), *self._playback.values()]:
            if stream.session is not None and stream.session.call_id == session.call_id:
                stream.end_reason = f"device ended session: {reason}"
                stream.ended_by_device = True
                stream.ended.set()

    def _device_connected(self, device_id: str, reason: str) -> None:
        """Live pulls of a device that is back re-INVITE now, not after their backoff."""
        woken = 0
        for stream in self._live.values():
            if stream.device_id == device_id and not stream.closing:
                stream.wake.set()
                woken += 1
        if woken:
            log.info("device connected: pulls wake", device_id=device_id, reason=reason, n=woken)

    async def _run(self, stream: Stream) -> None:
        backoff = self.retry_min_s
        while not stream.closing:
            stream.attempts += 1
            got_data = False
            try:
                got_data = await self._pull_once(stream)
                reason = stream.end_reason or "stream-lost"
            except asyncio.CancelledError:
                raise
            except (PlayError, PoolExhausted, LookupError, OSError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a bad answer or a bug must not end the pull loop
                log.exception("stream pull failed", channel=str(stream.key.channel))
                reason = f"{type(exc).__name__}: {exc}"
            stream.last_error = reason
            if stream.closing:
                break
            self._lost(stream, reason, got_data)
            if stream.key.mode is not PlayMode.live:
                self._close_stream(stream)  # a finished or failed playback is not retried
                break
            if got_data:
                backoff = self.retry_min_s
            log.info("stream retry", channel=str(stream.key.channel), in_s=backoff, reason=reason)
            stream.retry_delays.append(backoff)
            if await stream.wait_retry(backoff):
                backoff = self.retry_min_s  # the device is back: a fresh start
                log.info(
                    "stream re-invite after device connection", channel=str(stream.key.channel)
                )
            else:
                backoff = min(backoff * 2, self.retry_max_s)

    def _lost(self, stream: Stream, reason: str, got_data: bool) -> None:
        """Tell consumers (a Gap, if they had frames) and the event bus; a playback or
        download the device ended (MediaStatus 121, BYE) is ``stream.ended``, not a loss."""
        invited = stream.state == "receiving"
        stream.state = "lost"
        finished = stream.key.mode is not PlayMode.live and stream.ended_by_device
        if got_data and not finished:
            stream.deliver(Gap(stream.key.channel_id, "stream-lost", time.time()))
        kind = "stream.lost" if invited or got_data else "stream.failed"
        kind = "stream.ended" if finished else kind
        key = stream.key
        self.services.events.publish(
            kind,
            device_id=key.device_id,
            channel_id=key.channel_id,
            mode=key.mode.value,
            reason=reason,
        )
        (log.info if finished else log.warning)(kind, channel=str(key.channel), reason=reason)

    async def _check_known(self, channel: ChannelRef) -> None:
        """The device must list the channel: nothing is INVITEd for a code it never gave us."""

        def query(s: Any) -> int | None:
            stmt = (
                select(Channel.id)
                .join(Device, Channel.device_pk == Device.id)
                .where(
                    Device.device_id == channel.device_id, Channel.channel_id == channel.channel_id
                )
            )
            return s.scalar(stmt)

        if await self.services.db.run(query) is None:
            raise LookupError(f"channel {channel} is not in the database")

    async def _device_hosts(self, device_id: str) -> list[str]:
        """Where the device signals from (its last registration): RTP may come from there."""

        def query(s: Any) -> str | None:
            return s.scalar(select(Device.remote_host).where(Device.device_id == device_id))

        host = await self.services.db.run(query)
        return [host] if host else []

    async def _bind(
        self, ingest: RtpIngest, transport: MediaTransport, gate: SourceGate
    ) -> tuple[int, Any]:
        host = self.settings.bind_host
        for _ in range(BIND_ATTEMPTS):
            port = self.ports.allocate()
            try:
                if transport is MediaTransport.udp:
                    return port, await UdpReceiver.open(ingest, host, port, gate)
                if transport is MediaTransport.tcp_passive:
                    return port, await TcpPassiveReceiver.open(ingest, host, port, gate)
                return port, None  # tcp-active: we connect after the answer
            except OSError:
                self.ports.release(port)  # taken by another process: try the next one
        raise PoolExhausted(f"no bindable RTP port after {BIND_ATTEMPTS} tries")

    async def _pull_once(self, stream: Stream) -> bool:
        key = stream.key
        sip = self.services.sip
        stream.state = "inviting"
        stream.ended.clear()
        stream.end_reason = ""
        stream.ended_by_device = False
        await self._check_known(key.channel)
        transport = MediaTransport(self.settings.transport)
        ssrc = self.ssrcs.allocate(history=key.mode is not PlayMode.live)
        demuxer = PsDemuxer(key.channel_id, keep_audio=self.settings.keep_audio)
        ingest = RtpIngest(
            demuxer,
            stream.deliver,
            ssrc_value(ssrc),
            stream.stats,
            reorder=transport is MediaTransport.udp,
        )
        port: int | None = None
        receiver: Any = None
        session: PlaySession | None = None
        packets_before = stream.stats.packets
        try:
            gate = SourceGate.waiting(
                self.settings.rtp_source, await self._device_hosts(stream.device_id)
            )
            port, receiver = await self._bind(ingest, transport, gate)
            stream.port, stream.ssrc, stream.ingest, stream.demuxer = port, ssrc, ingest, demuxer
            offer = MediaOffer(self.settings.sdp_ip, port, ssrc, transport)
            request = PlayRequest(
                stream.device_id,
                key.channel_id,
                key.mode,
                key.start,
                key.end,
                download_speed=stream.download_speed,
            )
            session = stream.session = await sip.play(request, offer)
            answer = session.answer
            if answer.ssrc and answer.ssrc != ssrc:
                ingest.rekey(ssrc_value(answer.ssrc))
                log.info("device re-keyed ssrc", channel=str(key.channel), ssrc=answer.ssrc)
            if answer.payload_types:
                ingest.set_payload_types(answer.payload_types)
            if receiver is not None:
                receiver.answered(answer.ip)  # held packets/connections are decided now
            if transport is MediaTransport.tcp_active:
                receiver = await TcpActiveReceiver.connect(ingest, answer.ip, answer.port)
            stream.state = "receiving"
            self.services.events.publish(
                "stream.started",
                device_id=key.device_id,
                channel_id=key.channel_id,
                mode=key.mode.value,
                port=port,
            )
            await self._watch(stream, ingest, receiver)
        finally:
            if receiver is not None:
                receiver.close()
            if port is not None:
                self.ports.release(port)
            self.ssrcs.release(ssrc)
            if key.mode is not PlayMode.live and stream.ended_by_device:
                for item in ingest.flush():
                    stream.deliver(item)
            done = stream.sequence_done
            seq = ingest.sequence
            done.received += seq.received
            done.lost += seq.lost
            done.duplicates += seq.duplicates
            done.late += seq.late
            done.restarts += seq.restarts
            stream.ingest = None
            stream.session = None
            if session is not None and not stream.ended_by_device:
                try:
                    await asyncio.wait_for(sip.stop(session), 5)
                except Exception as exc:  # noqa: BLE001 - BYE is best effort; the port is freed
                    log.warning("bye failed", channel=str(key.channel), error=repr(exc))
        return stream.stats.packets > packets_before

    async def _watch(self, stream: Stream, ingest: RtpIngest, receiver: Any) -> None:
        """Return when the stream ends: device BYE, timeout or a cut TCP-active link."""
        stream.invited_at = time.monotonic()
        stream.receiver = receiver
        try:
            await stream.ended.wait()
            if stream.ended_by_device and stream.key.mode is not PlayMode.live:
                await self._drain(stream)
        finally:
            stream.receiver = None

    @staticmethod
    async def _drain(stream: Stream) -> None:
        """The device said the file is over (MediaStatus 121, BYE), but the SIP message may
        overtake the media's last packets: receive until they have stopped coming."""
        ended = time.monotonic()
        while time.monotonic() - ended < DRAIN_MAX_S:
            last = max(stream.stats.last_packet_at or 0.0, ended)
            if time.monotonic() - last > DRAIN_QUIET_S:
                return
            await asyncio.sleep(WATCH_INTERVAL_S / 2)

    async def _ticker(self) -> None:
        """One timer for all streams: reorder holes, receive timeouts, cut TCP links."""
        timeout = self.settings.stream_timeout_s
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            now = time.monotonic()
            for stream in [*self._live.values(), *self._playback.values()]:
                ingest = stream.ingest
                if stream.state != "receiving" or ingest is None or stream.ended.is_set():
                    continue
                ingest.tick(now)
                last = max(stream.stats.last_packet_at or 0.0, stream.invited_at)
                if now - last > timeout and not stream.paused:  # paused: no RTP is expected
                    stream.end_reason = f"no RTP for {timeout:g} s"
                    stream.ended.set()
                elif (
                    isinstance(stream.receiver, TcpActiveReceiver) and stream.receiver.lost.is_set()
                ):
                    stream.end_reason = "tcp connection closed"
                    stream.ended.set()


def _check_ref(channel: object) -> None:
    """A camera is a ChannelRef: a bare channel id would be ambiguous across devices."""
    if not isinstance(channel, ChannelRef):
        raise TypeError(f"a camera is a ChannelRef (device, channel), not {channel!r}")


def create_hub(services: Services) -> StreamHub:
    """Component factory for ``vms.components``."""
    return StreamHub(services)
