"""The node's side of the cascade: what superiors see, and the streams sent to them.

:class:`CascadeService` is both halves the SIP cascade (``sip.cascade.Upstream``) asks
for: the :class:`~sip.cascade_source.CascadeSource` (catalog tree, selection, classified
channels left out, RecordInfo from our index or the NVR, DeviceInfo/DeviceStatus with
what the node really holds) and the :class:`~sip.cascade_source.CascadeMedia` (one
:class:`Forward` per superior INVITE: a source, an RTP sender, a task).  A replay comes
from our recordings when we hold any of the range, else from the device's own storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sip.cascade_source import (
    MANUFACTURER,
    MODEL,
    SendAnswer,
    SendEnded,
    SendRequest,
    firmware_version,
)
from sip.channel_ref import ChannelRef
from sip.manscdp import CatalogItem, DeviceInfo, DeviceStatusInfo, RecordItem, fmt_time
from sip.mansrtsp import RtspCommand
from sip.settings import UpstreamSettings
from sip.user_agent import DISCARD_PORT
from vms.logging import get_logger
from vms.services import Services

from . import catalog as tree
from .records import record_items
from .selection import selection_of
from .sender import Link, LinkClosed, RtpSender, TcpLink, TcpListener, UdpLink
from .sources import DeviceSource, LiveSource, RecordingSource, Source, has_recording
from .sources import recorded_bytes as _recorded_bytes

log = get_logger("vms.cascade")

PLATFORM_NAME = "VMS platform"
ACK_TIMEOUT_S = 32.0  # 64·T1: an answer never acknowledged is abandoned
KEPT_FINISHED = 64  # ended forwards kept for the API


@dataclass(eq=False)
class Forward:
    """One stream sent to a superior (one INVITE dialog)."""

    request: SendRequest
    transport: str  # our side: udp, tcp-active (we connect), tcp-passive (we listen)
    source: Source
    destination: str  # host:port of the superior's offer
    link: Link | None = None
    listener: TcpListener | None = None
    pool_port: int | None = None  # a media-range port held for a TCP listener
    sender: RtpSender | None = None
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    state: str = "answered"  # answered, sending, ended, stopped, failed
    error: str = ""
    created: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        r = self.request
        offer = r.offer
        out: dict[str, Any] = {
            "call_id": r.call_id,
            "upstream_id": r.upstream_id,
            "channel_id": r.channel_id,
            "device_id": r.device_id,
            "mode": offer.session_name,
            "source": self.source.kind,
            "transport": self.transport,
            "destination": self.destination,
            "ssrc": offer.ssrc,
            "state": self.state,
            "error": self.error,
            "created": self.created,
        }
        if offer.session_name != "Play":
            out["start"] = datetime.fromtimestamp(offer.start, UTC).isoformat()
            out["end"] = datetime.fromtimestamp(offer.end, UTC).isoformat()
        if self.sender is not None:
            out.update(self.sender.stats.as_dict())
        return out


def our_transport(offer_tcp: bool, offer_setup: str | None) -> str:
    """The superior passive (it listens) → we connect; it active → we listen."""
    if not offer_tcp:
        return "udp"
    return "tcp-active" if (offer_setup or "passive") == "passive" else "tcp-passive"


class CascadeService:
    """What this node offers its superiors; one per node (``services.cascade``)."""

    name = "cascade"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.tz = ZoneInfo(services.settings.server.timezone)
        self.forwards: dict[str, Forward] = {}
        self.finished: list[Forward] = []

    # --- CascadeSource ---------------------------------------------------------------

    async def catalog(self, upstream: UpstreamSettings, local_id: str) -> list[CatalogItem]:
        sid = upstream.server_id
        return await self.services.db.run(lambda s: tree.catalog_for(s, sid, local_id))

    async def owner(self, upstream: UpstreamSettings, channel_id: str) -> str | None:
        sid = upstream.server_id
        shared = await self.services.db.run(lambda s: tree.owner_for(s, sid, channel_id))
        return None if shared is None else shared.device_id

    async def record_info(
        self, upstream: UpstreamSettings, channel_id: str, start: datetime, end: datetime
    ) -> list[RecordItem]:
        sid = upstream.server_id
        shared = await self.services.db.run(lambda s: tree.owner_for(s, sid, channel_id))
        if shared is None:
            return []
        return await record_items(self.services, shared, start, end)

    async def device_info(self, upstream: UpstreamSettings, local_id: str) -> DeviceInfo:
        sid = upstream.server_id
        selection = await self.services.db.run(lambda s: selection_of(s, sid))
        shared = await self.services.db.run(lambda s: tree.shared_channels(s, selection))
        return DeviceInfo(
            local_id, PLATFORM_NAME, MANUFACTURER, MODEL, firmware_version(), len(shared)
        )

    async def device_status(self, upstream: UpstreamSettings, local_id: str) -> DeviceStatusInfo:
        recorder = self.services.recorder
        recording = bool(recorder is not None and recorder.channels)
        encoding = bool(self.services.media is not None and self.services.media.channels())
        return DeviceStatusInfo(
            local_id,
            online="ONLINE",
            status="OK",
            encode="ON" if encoding else "OFF",
            record="ON" if recording else "OFF",
            device_time=fmt_time(datetime.now(self.tz)),
        )

    # --- CascadeMedia ----------------------------------------------------------------

    async def start_send(self, request: SendRequest, ended: SendEnded) -> SendAnswer:
        hub = self.services.media
        if hub is None:
            raise RuntimeError("no media hub on this node")
        offer = request.offer
        ssrc = int(offer.ssrc or "0")
        if not 0 <= ssrc <= 0xFFFFFFFF:
            raise ValueError(f"SSRC {offer.ssrc} does not fit in 32 bits")
        media = self.services.settings.media
        transport = our_transport(offer.tcp, offer.setup)
        source, file_size = await self._source(request)
        forward = Forward(request, transport, source, f"{offer.ip}:{offer.port}")
        port = DISCARD_PORT  # tcp-active: we connect after the ACK (RFC 4145)
        try:
            if transport == "udp":
                forward.link = await UdpLink.open(media.bind_host, offer.ip, offer.port)
                port = forward.link.local_port  # type: ignore[attr-defined]
            elif transport == "tcp-passive":
                forward.listener = TcpListener()
                port = await self._listen(forward)
        except BaseException:
            self._cleanup(forward)
            raise
        self.forwards[request.call_id] = forward
        forward.task = asyncio.create_task(
            self._run(forward, ended), name=f"cascade-{request.channel_id}"
        )
        log.info(
            "forward answered",
            upstream=request.upstream_id,
            channel=request.channel_id,
            mode=offer.session_name,
            source=source.kind,
            transport=transport,
            to=forward.destination,
        )
        return SendAnswer(request.media_ip or media.sdp_ip, port, file_size)

    async def _listen(self, forward: Forward) -> int:
        hub, host = self.services.media, self.services.settings.media.bind_host
        assert forward.listener is not None
        for _ in range(20):  # ports of the range taken by other processes are skipped
            forward.pool_port = hub.ports.allocate()
            try:
                return await forward.listener.open(host, forward.pool_port)
            except OSError:
                hub.ports.release(forward.pool_port)
                forward.pool_port = None
        raise OSError("no free TCP port in the media range")

    async def _source(self, request: SendRequest) -> tuple[Source, int | None]:
        """Live from the hub; a replay from our recordings if we hold any of it, else the NVR."""
        hub, offer = self.services.media, request.offer
        name = f"cascade:{request.upstream_id}"
        camera = ChannelRef(request.device_id, request.channel_id)
        if offer.session_name == "Play":
            return LiveSource(hub, camera, name), None
        start = datetime.fromtimestamp(offer.start, UTC)
        end = datetime.fromtimestamp(offer.end, UTC)
        download = offer.session_name == "Download"
        speed = max(1, offer.download_speed or 1) if download else 1
        channel = camera
        db = self.services.db
        if await db.run(lambda s: has_recording(s, channel, start, end)):
            size = await db.run(lambda s: _recorded_bytes(s, channel, start, end))
            source = RecordingSource(db, self.services.objects, channel, start, end, speed)
            return source, (size if download else None)
        device = DeviceSource(hub, channel, start, end, name, offer.session_name, speed)
        try:
            await device.started(self.services.settings.sip.invite_timeout_s + 2)
        except BaseException:
            device.close()
            raise
        return device, None

    def begin(self, call_id: str) -> None:
        forward = self.forwards.get(call_id)
        if forward is not None:
            forward.acked.set()

    async def control(self, call_id: str, command: RtspCommand) -> None:
        forward = self.forwards.get(call_id)
        if forward is None:
            return
        try:
            await forward.source.control(command)
        except Exception as exc:  # noqa: BLE001 - the device refused it; the stream goes on
            log.info("playback control failed", call_id=call_id, error=repr(exc))

    async def stop_send(self, call_id: str) -> None:
        forward = self.forwards.pop(call_id, None)
        if forward is None:
            return
        if forward.state in ("answered", "sending"):
            forward.state = "stopped"
        task = forward.task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._cleanup(forward)

    async def close(self) -> None:
        for call_id in list(self.forwards):
            await self.stop_send(call_id)

    async def _run(self, forward: Forward, ended: SendEnded) -> None:
        offer = forward.request.offer
        try:
            await asyncio.wait_for(forward.acked.wait(), ACK_TIMEOUT_S)
            if forward.transport == "tcp-active":
                forward.link = await TcpLink.connect(offer.ip, offer.port)
            elif forward.transport == "tcp-passive":
                assert forward.listener is not None
                timeout = self.services.settings.media.stream_timeout_s
                forward.link = await forward.listener.wait(timeout)
            assert forward.link is not None
            sender = forward.sender = RtpSender(
                int(offer.ssrc or "0"), forward.request.payload_type, forward.link
            )
            forward.state = "sending"
            async for au, pts in forward.source.units():
                sender.send(au, pts)
                await sender.drain()
            if forward.source.finite:
                forward.state = "ended"
                log.info("forward range sent", call_id=forward.request.call_id)
                await ended(forward.request.call_id)
            else:
                forward.state, forward.error = "failed", "the live stream closed"
        except asyncio.CancelledError:
            raise
        except (LinkClosed, OSError, TimeoutError) as exc:
            forward.state, forward.error = "failed", f"{type(exc).__name__}: {exc}"
            log.info("forward stopped", call_id=forward.request.call_id, error=forward.error)
        except Exception as exc:  # a bad segment or a bug ends this stream only
            forward.state, forward.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("forward failed", call_id=forward.request.call_id)
        finally:
            self._cleanup(forward)

    def _cleanup(self, forward: Forward) -> None:
        forward.source.close()
        if forward.sender is not None:
            forward.sender.close()
        elif forward.link is not None:
            forward.link.close()
        if forward.listener is not None:
            forward.listener.close()
        if forward.pool_port is not None and self.services.media is not None:
            self.services.media.ports.release(forward.pool_port)
            forward.pool_port = None
        if forward not in self.finished and forward.state not in ("answered", "sending"):
            self.finished.append(forward)
            del self.finished[:-KEPT_FINISHED]

    def describe(self) -> list[dict[str, Any]]:
        """The streams being sent to superiors (and the last ones that ended)."""
        live = [f.describe() for f in self.forwards.values()]
        done = [f.describe() for f in self.finished if f not in self.forwards.values()]
        return live + done
