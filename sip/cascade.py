"""Cascade: our platform as a lower platform of a superior one (GB/T 28181 §6 notes).

Towards the superior we are a device: the :class:`~sip.user_agent.DeviceUserAgent`
registers with digest and keeps alive, on the platform's own socket.  This role answers
the superior's Catalog with our channels, DeviceInfo/DeviceStatus, forwards PTZ to the
owning device, and accepts its INVITE for a known channel (404 otherwise).  The media
half is a :class:`CascadeMedia` given by the application; without one the INVITE is
answered for signalling only.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import tzinfo
from typing import Protocol

import structlog

from . import sdp as sdplib
from .manscdp import CatalogItem, DeviceInfo, DeviceStatusInfo, Manscdp, RecordItem
from .message import SipParseError, SipRequest
from .settings import AgentConfig, UpstreamSettings
from .transaction import Endpoint, ServerTransaction
from .user_agent import DISCARD_PORT, DeviceUserAgent

log = structlog.get_logger("sip.cascade")

PS_RTPMAP = {"96": "PS/90000"}


class CascadeMedia(Protocol):
    """Sends one of our channels to the superior (PS over RTP); wired by the application."""

    async def start_send(
        self, call_id: str, channel_id: str, offer: sdplib.Sdp
    ) -> tuple[str, int]: ...

    def begin(self, call_id: str) -> None: ...

    async def stop_send(self, call_id: str) -> None: ...


class ChannelSource(Protocol):
    """Our channels, as the superior may see them (the device store)."""

    async def list_channels(self) -> list[CatalogItem]: ...


class DeviceControls(Protocol):
    """Controls sent on to our devices (``sip.queries.Queries``)."""

    async def ptz(self, device_id: str, channel_id: str, command: str) -> None: ...


class Upstream:
    """One superior: its user agent and what we answer it."""

    def __init__(
        self,
        settings: UpstreamSettings,
        endpoint: Endpoint,
        *,
        local_id: str,
        contact_host: str,
        channels: ChannelSource,
        controls: DeviceControls,
        media: CascadeMedia | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        self.settings = settings
        self.local_id = local_id
        self.channels = channels
        self.controls = controls
        self.media = media
        self.dialogs: dict[str, str] = {}  # call-id → channel id
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

    @property
    def registered(self) -> asyncio.Event:
        return self.agent.state.registered

    async def start(self) -> None:
        self.agent.start()

    async def stop(self) -> None:
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

    # --- DeviceRole: answers -------------------------------------------------------

    async def catalog(self) -> list[CatalogItem]:
        return [replace(i, parent_id=self.local_id) for i in await self.channels.list_channels()]

    async def device_info(self) -> DeviceInfo:
        n = len(await self.channels.list_channels())
        return DeviceInfo(self.local_id, "VMS platform", "vms-gb28181", "platform", "0.1", n)

    async def device_status(self) -> DeviceStatusInfo:
        return DeviceStatusInfo(self.local_id, online="ONLINE", status="OK")

    async def record_info(self, query: Manscdp) -> list[RecordItem] | None:
        return None  # not answered upward yet

    async def device_control(self, control: Manscdp) -> bool:
        command = control.text("PTZCmd")
        if command:
            owner = {c.device_id: c.parent_id for c in await self.channels.list_channels()}
            if control.device_id in owner:
                await self.controls.ptz(owner[control.device_id], control.device_id, command)
        return False  # the superior gets no Response (as before: it only needs the 200)

    # --- DeviceRole: dialogs -------------------------------------------------------

    async def on_invite(self, stx: ServerTransaction) -> None:
        req = stx.request
        subject = req.get("Subject") or ""
        channel = subject.split(":", 1)[0].strip() if subject else ""
        if not channel:
            try:
                channel = req.to.user
            except SipParseError:
                channel = ""
        try:
            offer = sdplib.parse(req.body)
        except sdplib.SdpError:
            stx.reply(400, "Bad SDP")
            return
        if offer.uri and offer.session_name != "Play":
            channel = offer.uri.split(":", 1)[0] or channel
        known = {c.device_id for c in await self.channels.list_channels()}
        if channel not in known:
            stx.reply(404)
            return
        if not offer.ssrc:
            stx.reply(400, "Missing SSRC")
            return
        stx.reply(100)
        ip, port = self.agent.contact_host, DISCARD_PORT
        if self.media is not None:
            try:
                ip, port = await self.media.start_send(req.call_id, channel, offer)
            except Exception as exc:  # noqa: BLE001 - any media failure is a 500 to the superior
                log.warning("cascade media failed", channel=channel, error=repr(exc))
                stx.reply(500)
                return
        answer = sdplib.sendonly_answer(offer, channel, ip, port, PS_RTPMAP)
        self.dialogs[req.call_id] = channel
        self.agent.answer_invite(stx, answer, self.local_id)
        log.info("superior invite accepted", channel=channel, media=self.media is not None)

    def on_ack(self, call_id: str) -> None:
        if call_id in self.dialogs and self.media is not None:
            self.media.begin(call_id)

    def on_bye(self, call_id: str) -> bool:
        known = call_id in self.dialogs
        if known:
            self.agent.tasks.spawn(self._end(call_id), "cascade-bye")
        return known

    def on_info(self, call_id: str, body: str) -> None:
        return None

    def on_cancel(self, call_id: str) -> None:
        return None

    async def _end(self, call_id: str) -> None:
        self.dialogs.pop(call_id, None)
        if self.media is not None:
            await self.media.stop_send(call_id)
