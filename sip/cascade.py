"""Cascade: our platform as a lower platform of a superior one (GB/T 28181 §6 notes).

Towards the superior we are a device: the :class:`~sip.user_agent.DeviceUserAgent`
registers with digest and keeps alive, on the platform's own socket.  This role answers
what the superior asks with what a :class:`~sip.cascade_source.CascadeSource` says it may
see — the catalog tree, DeviceInfo/DeviceStatus, RecordInfo — forwards its DeviceControl
(PTZ, RecordCmd, GuardCmd, AlarmCmd, TeleBoot, IFameCmd) to the device holding the
channel, and answers its INVITE (live, playback, download) with the media a
:class:`~sip.cascade_source.CascadeMedia` sends, MANSRTSP INFO applied, MediaStatus 121
sent up when a range has been sent to its end.  Without a media part the INVITE is
answered for signalling only.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Protocol

import structlog

from . import mansrtsp, ptz
from . import sdp as sdplib
from .cascade_source import CascadeMedia, CascadeSource, SendRequest
from .ids import is_gb_id
from .manscdp import (
    CatalogItem,
    DeviceInfo,
    DeviceStatusInfo,
    Manscdp,
    RecordItem,
    el,
    parse_time,
)
from .message import SipParseError, SipRequest, SipUri
from .settings import AgentConfig, UpstreamSettings
from .transaction import Endpoint, ServerTransaction, TransactionTimeout
from .transport import Peer
from .user_agent import DISCARD_PORT, DeviceUserAgent

log = structlog.get_logger("sip.cascade")

PS_RTPMAP = "PS/90000"
MODES = ("Play", "Playback", "Download")
# DeviceControl elements forwarded to the channel; the others go to the channel's device
CHANNEL_CONTROLS = ("PTZCmd", "RecordCmd", "IFameCmd")
DEVICE_CONTROLS = ("GuardCmd", "AlarmCmd", "TeleBoot")
ANSWERED_CONTROLS = ("RecordCmd", "GuardCmd", "AlarmCmd")  # the standard's Result responses
ENVELOPE = {"cmdtype", "sn", "deviceid"}


class DeviceControls(Protocol):
    """Controls sent on to our devices (``sip.queries.Queries``)."""

    async def device_control(self, device_id: str, target_id: str, inner: str) -> None: ...


@dataclass
class CascadeDialog:
    call_id: str
    channel_id: str
    mode: str
    acked: bool = False


def ps_payload_type(offer: sdplib.Sdp) -> int | None:
    """The payload type the offer maps to MPEG-PS (96 when it lists 96 without rtpmap)."""
    for pt in offer.payloads:
        enc = offer.rtpmap.get(pt, "")
        if enc.split("/", 1)[0].strip().upper() == "PS" and pt.isdigit():
            return int(pt)
    return 96 if "96" in offer.payloads and "96" not in offer.rtpmap else None


def inner_xml(control: Manscdp) -> str:
    """The body of a Control without its envelope (CmdType, SN, DeviceID), as received."""
    parts = []
    for child in control.element:
        if isinstance(child.tag, str) and child.tag.lower() not in ENVELOPE:
            child.tail = "\r\n"
            parts.append(ET.tostring(child, encoding="unicode"))
    return "".join(parts)


class Upstream:
    """One superior: its user agent and what we answer it."""

    def __init__(
        self,
        settings: UpstreamSettings,
        endpoint: Endpoint,
        *,
        local_id: str,
        contact_host: str,
        source: CascadeSource,
        controls: DeviceControls,
        media: CascadeMedia | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        self.settings = settings
        self.local_id = local_id
        self.source = source
        self.controls = controls
        self.media = media
        self.tz = tz
        self.dialogs: dict[str, CascadeDialog] = {}
        self.agent = DeviceUserAgent(
            AgentConfig(
                device_id=local_id,
                server_id=settings.server_id,
                server_domain=settings.domain,
                server_host=settings.host,
                server_port=settings.port,
                password=settings.password,
                transport=settings.transport,
                expires_s=settings.expires_s,
                keepalive_interval_s=settings.keepalive_interval_s,
                keepalive_misses=settings.keepalive_misses,
                retry_s=settings.retry_s,
                catalog_per_message=settings.catalog_group,
            ),
            self,
            endpoint=endpoint,
            contact_host=contact_host,
            tz=tz,
        )
        self._watcher: asyncio.Task[None] | None = None
        self._hosts: set[str] = {settings.host}  # the superior's addresses (resolved at start)

    @property
    def server_id(self) -> str:
        return self.settings.server_id

    @property
    def registered(self) -> asyncio.Event:
        return self.agent.state.registered

    async def start(self) -> None:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(self.settings.host, None)
            self._hosts |= {str(info[4][0]) for info in infos}
        except OSError as exc:
            log.warning("superior's address not resolved", host=self.settings.host, error=str(exc))
        self.agent.start()
        self._watcher = asyncio.create_task(self._end_dialogs_when_lost(), name="cascade-watch")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        await self.agent.stop()
        for call_id in list(self.dialogs):
            await self._end(call_id)

    async def register(self, expires: int | None = None) -> int:
        return await self.agent.register(expires)

    def handles(self, req: SipRequest) -> bool:
        """A request from this superior (while we run): the dispatcher hands it to our agent."""
        try:
            return self.agent.running and req.from_.user == self.settings.server_id
        except (SipParseError, ValueError):
            return False

    def sent_by(self, peer: Peer) -> bool:
        """Whether a request in the superior's name comes from it: its SIP address on UDP, a
        TCP connection from its host (ours to it, or one it opened)."""
        if peer.host not in self._hosts:
            return False
        return peer.stream or peer.port == self.settings.port

    async def _end_dialogs_when_lost(self) -> None:
        """A superior that lost our registration has forgotten its sessions: stop sending."""
        state = self.agent.state
        seen = state.losses
        while True:
            await asyncio.sleep(min(self.settings.keepalive_interval_s, 1.0))
            if state.losses == seen:
                continue
            seen = state.losses
            for call_id in list(self.dialogs):
                log.info("superior lost us: stream stopped", call_id=call_id)
                await self._end(call_id)

    # --- what this superior sees (also for subscriptions and NOTIFYs upward) ---------

    async def catalog(self) -> list[CatalogItem]:
        """The catalog as this superior sees it: regions, groups, shared channels."""
        return await self.source.catalog(self.settings, self.local_id)

    async def visible(self, channel_id: str) -> bool:
        """Whether this superior may see and use a channel (shared, not classified)."""
        return await self.source.owner(self.settings, channel_id) is not None

    async def media_ended(self, call_id: str) -> None:
        """MediaStatus 121 upward: a playback or download was sent to its end."""
        dialog = self.dialogs.get(call_id)
        if dialog is None:
            return
        try:
            await self.agent.notify(
                "MediaStatus", dialog.channel_id, el("NotifyType", 121), call_id
            )
        except (TransactionTimeout, OSError) as exc:
            log.info("MediaStatus not delivered", call_id=call_id, error=repr(exc))

    # --- DeviceRole: answers -------------------------------------------------------

    async def device_info(self) -> DeviceInfo:
        return await self.source.device_info(self.settings, self.local_id)

    async def device_status(self) -> DeviceStatusInfo:
        return await self.source.device_status(self.settings, self.local_id)

    async def record_info(self, query: Manscdp) -> list[RecordItem] | None:
        start = parse_time(query.text("StartTime"), self.tz)
        end = parse_time(query.text("EndTime"), self.tz)
        if start is None or end is None or end <= start:
            return []
        if start.tzinfo is None:  # no zone known: the times are UTC
            start, end = start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
        return await self.source.record_info(self.settings, query.device_id, start, end)

    async def device_control(self, control: Manscdp) -> bool:
        if control.cmd_type != "DeviceControl":
            return False
        names = {c.tag for c in control.element if isinstance(c.tag, str)}
        command = next((n for n in (*CHANNEL_CONTROLS, *DEVICE_CONTROLS) if n in names), None)
        if command is None:
            return False
        ok = await self._forward_control(control, command)
        if command in ANSWERED_CONTROLS:
            if ok:
                return True  # the agent answers Result OK
            await self.agent.respond(control, el("Result", "ERROR"))
        return False

    async def _forward_control(self, control: Manscdp, command: str) -> bool:
        target = control.device_id
        device_id = await self.source.owner(self.settings, target)
        if device_id is None:
            log.info("control for a channel not shared", target=target, command=command)
            return False
        if command == "PTZCmd":
            try:
                ptz.parse(control.text("PTZCmd"))
            except ValueError as exc:
                log.info("malformed PTZ command refused", target=target, error=str(exc))
                return False
        forward_to = target if command in CHANNEL_CONTROLS else device_id
        try:
            await self.controls.device_control(device_id, forward_to, inner_xml(control))
        except Exception as exc:  # noqa: BLE001 - the device is offline or refused it
            log.info("control not forwarded", target=target, command=command, error=repr(exc))
            return False
        log.info("control forwarded", target=target, device_id=device_id, command=command)
        return True

    # --- DeviceRole: dialogs -------------------------------------------------------

    @staticmethod
    def channel_of(req: SipRequest, offer: sdplib.Sdp) -> str:
        """The channel asked for: ``u=`` of a playback, else the Subject's, else the R-URI's."""
        if offer.uri and offer.session_name != "Play":
            channel = offer.uri.split(":", 1)[0].strip()
            if channel:
                return channel
        subject = req.get("Subject") or ""
        if subject:
            channel = subject.split(":", 1)[0].strip()
            if channel:
                return channel
        try:
            return SipUri.parse(req.uri).user
        except SipParseError:
            return ""

    async def on_invite(self, stx: ServerTransaction) -> None:
        req = stx.request
        try:
            offer = sdplib.parse(req.body)
        except sdplib.SdpError:
            stx.reply(400, "Bad SDP")
            return
        channel = self.channel_of(req, offer)
        # a channel id from the wire is looked up only once it is a 20-digit GB id
        device_id = await self.source.owner(self.settings, channel) if is_gb_id(channel) else None
        if device_id is None:
            stx.reply(404)
            return
        if offer.session_name not in MODES:
            stx.reply(488, f"s={offer.session_name[:16]} not supported")
            return
        if not offer.ssrc:
            stx.reply(400, "Missing SSRC")
            return
        if offer.session_name != "Play" and not 0 < offer.start < offer.end:
            stx.reply(488, f"s={offer.session_name} needs t=<start> <end>")
            return
        pt = ps_payload_type(offer)
        if pt is None:
            stx.reply(488, "only PS (MPEG-2 program stream) is sent")
            return
        stx.reply(100)
        ip, port, file_size = self.agent.contact_host, DISCARD_PORT, None
        dialog = CascadeDialog(req.call_id, channel, offer.session_name)
        self.dialogs[req.call_id] = dialog
        if self.media is not None:
            request = SendRequest(
                req.call_id, self.server_id, channel, device_id, offer, pt, self.settings.media_ip
            )
            try:
                sent = await self.media.start_send(request, self.media_ended)
            except Exception as exc:  # noqa: BLE001 - any media failure is a 500 to the superior
                log.warning("cascade media failed", channel=channel, error=repr(exc))
                self.dialogs.pop(req.call_id, None)
                stx.reply(500)
                return
            ip, port, file_size = sent.ip, sent.port, sent.file_size
            if req.call_id not in self.dialogs:  # CANCELled while the media was set up
                await self.media.stop_send(req.call_id)
                stx.reply(487)
                return
        answer = sdplib.sendonly_answer(offer, channel, ip, port, {str(pt): PS_RTPMAP})
        answer.file_size = file_size
        self.agent.answer_invite(stx, answer, channel)
        log.info(
            "superior invite accepted",
            channel=channel,
            mode=offer.session_name,
            tcp=offer.tcp,
            media=self.media is not None,
        )

    def on_ack(self, call_id: str) -> None:
        dialog = self.dialogs.get(call_id)
        if dialog is None or dialog.acked:
            return
        dialog.acked = True
        if self.media is not None:
            self.media.begin(call_id)

    def on_bye(self, call_id: str) -> bool:
        known = call_id in self.dialogs
        if known:
            self.agent.tasks.spawn(self._end(call_id), "cascade-bye")
        return known

    def on_info(self, call_id: str, body: str) -> None:
        if call_id not in self.dialogs or self.media is None:
            return
        try:
            command = mansrtsp.parse(body)
        except mansrtsp.MansrtspError as exc:
            log.info("bad MANSRTSP from superior", call_id=call_id, error=str(exc))
            return
        if command.method == "TEARDOWN":
            self.agent.tasks.spawn(self._end(call_id), "cascade-teardown")
            return
        self.agent.tasks.spawn(self.media.control(call_id, command), "cascade-control")

    def on_cancel(self, call_id: str) -> None:
        dialog = self.dialogs.get(call_id)
        if dialog is not None and not dialog.acked:
            self.agent.tasks.spawn(self._end(call_id), "cascade-cancel")

    async def _end(self, call_id: str) -> None:
        if self.dialogs.pop(call_id, None) is not None and self.media is not None:
            await self.media.stop_send(call_id)

    def describe(self) -> dict[str, object]:
        """State for the API: registration and the dialogs with this superior."""
        s, state = self.settings, self.agent.state
        return {
            "server_id": s.server_id,
            "domain": s.domain,
            "host": s.host,
            "port": s.port,
            "transport": s.transport,
            "local_id": self.local_id,
            "registered": state.registered.is_set(),
            "register_status": state.register_status,
            "keepalives_sent": state.keepalives_sent,
            "keepalive_failures": state.keepalive_failures,
            "dialogs": [
                {"call_id": d.call_id, "channel_id": d.channel_id, "mode": d.mode, "acked": d.acked}
                for d in self.dialogs.values()
            ],
        }
